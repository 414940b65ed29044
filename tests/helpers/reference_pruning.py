"""Straight re-implementations of the reference pruning algorithms, written from their public descriptions.

Wanda: locuslab/wanda lib/prune.py (prune_wanda, prune_magnitude) and lib/layerwrapper.py (WrappedGPT).
SparseGPT: IST-DASLab/sparsegpt sparsegpt.py (SparseGPT.add_batch, SparseGPT.fasterprune).
They run one calibration sequence at a time, as the reference repositories do, and capture each
decoder layer's kwargs with forward pre-hooks during a dense forward: a different mechanism from
the library's recorder, so the two can check each other.

Deliberate difference, shared with the library and documented there: where the references keep
`metric <= kth_value` (pruning k + 1 weights, and one even at sparsity 0), these prune exactly k.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class WrappedGPT:
    """Wanda's running mean of ||x_j||^2 / nsamples per input column j."""

    def __init__(self, layer: nn.Linear) -> None:
        self.layer = layer
        self.scaler_row = torch.zeros(layer.weight.shape[1])
        self.nsamples = 0

    def add_batch(self, inp: torch.Tensor) -> None:
        if inp.dim() == 2:
            inp = inp.unsqueeze(0)
        tmp = inp.shape[0]
        inp = inp.reshape(-1, inp.shape[-1]).t()
        self.scaler_row *= self.nsamples / (self.nsamples + tmp)
        self.nsamples += tmp
        inp = inp.type(torch.float32)
        self.scaler_row += torch.norm(inp, p=2, dim=1) ** 2 / self.nsamples


class SparseGPTRef:
    """SparseGPT's running Hessian 2/n sum X X^T and fasterprune."""

    def __init__(self, layer: nn.Linear) -> None:
        self.layer = layer
        self.rows, self.columns = layer.weight.shape
        self.H = torch.zeros(self.columns, self.columns)
        self.nsamples = 0

    def add_batch(self, inp: torch.Tensor) -> None:
        if inp.dim() == 2:
            inp = inp.unsqueeze(0)
        tmp = inp.shape[0]
        inp = inp.reshape(-1, inp.shape[-1]).t()
        self.H *= self.nsamples / (self.nsamples + tmp)
        self.nsamples += tmp
        inp = math.sqrt(2 / self.nsamples) * inp.float()
        self.H += inp.matmul(inp.t())

    def fasterprune(self, sparsity: float, prunen: int = 0, prunem: int = 0, blocksize: int = 128, percdamp: float = 0.01):
        W = fasterprune(self.layer.weight.data, self.H, sparsity, prunen, prunem, blocksize, percdamp)
        self.layer.weight.data = W.to(self.layer.weight.dtype)


def fasterprune(W, H, sparsity, prunen=0, prunem=0, blocksize=128, percdamp=0.01):
    """The reference fasterprune on a weight W [rows, columns] and Hessian H; returns the pruned W."""
    W = W.clone().float()
    H = H.clone()
    columns = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    diag = torch.arange(columns)
    H[diag, diag] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H
    for i1 in range(0, columns, blocksize):
        i2 = min(i1 + blocksize, columns)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        if prunen == 0:
            tmp = W1**2 / (torch.diag(Hinv1).reshape((1, -1))) ** 2
            k = int(tmp.numel() * sparsity)  # reference: tmp <= sorted[k], i.e. k + 1 weights
            mask1 = torch.zeros(tmp.numel(), dtype=torch.bool)
            mask1[torch.sort(tmp.flatten(), stable=True)[1][:k]] = True
            mask1 = mask1.reshape(tmp.shape)
        else:
            mask1 = torch.zeros_like(W1) == 1
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if prunen != 0 and i % prunem == 0:
                tmp = W1[:, i : (i + prunem)] ** 2 / (torch.diag(Hinv1)[i : (i + prunem)].reshape((1, -1))) ** 2
                mask1.scatter_(1, i + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    return W


def find_linears(module: nn.Module) -> dict[str, nn.Linear]:
    return {name: m for name, m in module.named_modules() if isinstance(m, nn.Linear)}


@torch.no_grad()
def capture_with_prehooks(model: nn.Module, calibration: torch.Tensor):
    """Layer-0 inputs per sequence, and every layer's kwargs per sequence, from dense forwards of one sequence each."""
    layers = model.model.layers
    hidden, kwargs = [], [[] for _ in layers]
    handles = []
    for i, layer in enumerate(layers):
        def hook(module, args, kw, i=i):
            if i == 0:
                hidden.append(args[0])
            kwargs[i].append(dict(kw))
        handles.append(layer.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        for j in range(calibration.shape[0]):
            model(calibration[j : j + 1], use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return hidden, kwargs


def _layer_out(layer, h, kw):
    out = layer(h, **kw)
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def reference_prune_calibrated(model: nn.Module, calibration: torch.Tensor, method: str, sparsity: float,
                               prunen: int = 0, prunem: int = 0) -> None:
    """prune_wanda or prune_sparsegpt: per layer, hooks on a dense pass, prune, re-run the pruned layer."""
    layers = model.model.layers
    inps, kwargs = capture_with_prehooks(model, calibration)
    for i, layer in enumerate(layers):
        subset = find_linears(layer)
        wrapped = {name: (WrappedGPT if method == "wanda" else SparseGPTRef)(subset[name]) for name in subset}
        handles = [
            subset[name].register_forward_hook(lambda _, inp, out, name=name: wrapped[name].add_batch(inp[0].data))
            for name in subset
        ]
        for j in range(len(inps)):
            _layer_out(layer, inps[j], kwargs[i][j])
        for handle in handles:
            handle.remove()
        for name in subset:
            if method == "sparsegpt":
                wrapped[name].fasterprune(sparsity, prunen=prunen, prunem=prunem, percdamp=0.01, blocksize=128)
                continue
            W = subset[name].weight.data
            W_metric = torch.abs(W) * torch.sqrt(wrapped[name].scaler_row.reshape((1, -1)))
            W_mask = torch.zeros_like(W_metric) == 1
            if prunen != 0:
                for ii in range(W_metric.shape[1]):
                    if ii % prunem == 0:
                        tmp = W_metric[:, ii : (ii + prunem)].float()
                        W_mask.scatter_(1, ii + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
            else:
                sort_res = torch.sort(W_metric, dim=-1, stable=True)
                indices = sort_res[1][:, : int(W_metric.shape[1] * sparsity)]
                W_mask.scatter_(1, indices, True)
            W[W_mask] = 0
        inps = [_layer_out(layer, inps[j], kwargs[i][j]) for j in range(len(inps))]


@torch.no_grad()
def reference_magnitude_masks(model: nn.Module, sparsity: float, prunen: int = 0, prunem: int = 0):
    """prune_magnitude's masks, without applying them (it keeps |W| <= the k-th smallest, so k + 1 weights)."""
    masks = {}
    for i, layer in enumerate(model.model.layers):
        for name, linear in find_linears(layer).items():
            W = linear.weight.data
            W_metric = torch.abs(W)
            if prunen != 0:
                W_mask = torch.zeros_like(W) == 1
                for ii in range(W_metric.shape[1]):
                    if ii % prunem == 0:
                        tmp = W_metric[:, ii : (ii + prunem)].float()
                        W_mask.scatter_(1, ii + torch.topk(tmp, prunen, dim=1, largest=False)[1], True)
            else:
                thresh = torch.sort(W_metric.flatten())[0][int(W.numel() * sparsity)]
                W_mask = W_metric <= thresh
            masks[f"layers.{i}.{name}"] = W_mask
    return masks
