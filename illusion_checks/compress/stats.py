"""Accumulate per-Linear input statistics (Wanda's squared norms, SparseGPT's Hessian) through forward hooks."""

from __future__ import annotations

import torch
from torch import nn


class InputStats:
    """Sums over calibration tokens, in fp32, of x^2 (kind="sq") or x x^T (kind="hessian") per Linear input.

    Linears fed the same tensor (q/k/v, gate/up) share one accumulator: the Hessian is the costly part.
    Each sequence is added on its own, in order, so the sums do not depend on the batch size.
    """

    def __init__(self, linears: dict[str, nn.Linear], kind: str) -> None:
        assert kind in ("sq", "hessian"), kind
        self.kind = kind
        self.linears = linears
        self.sums: dict[str, torch.Tensor] = {}
        self.tokens: dict[str, int] = {}
        self.owner: dict[str, str] = {}  # Linear name -> name of the accumulator it reads
        self._last: tuple[torch.Tensor, str] | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> "InputStats":
        for name, linear in self.linears.items():
            self._handles.append(linear.register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._last = None

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            self.observe(name, args[0])

        return hook

    @torch.no_grad()
    def observe(self, name: str, x: torch.Tensor) -> None:
        """Add one Linear input [batch, ..., in_features] to the accumulator of `name`."""
        if self._last is not None and self._last[0] is x:
            owner = self._last[1]  # same tensor as the previous Linear: already counted
        else:
            owner = self.owner.get(name, name)
            self._accumulate(owner, x)
            self._last = (x, owner)
        assert self.owner.setdefault(name, owner) == owner, f"{name} changed input sharing between batches"

    def _accumulate(self, key: str, x: torch.Tensor) -> None:
        columns = x.shape[-1]
        seqs = x.reshape(x.shape[0], -1, columns) if x.dim() > 2 else x.reshape(1, -1, columns)
        if key not in self.sums:
            shape = (columns,) if self.kind == "sq" else (columns, columns)
            self.sums[key] = torch.zeros(shape, dtype=torch.float32, device=x.device)
            self.tokens[key] = 0
        total = self.sums[key]
        for seq in seqs:
            seq = seq.float()
            if self.kind == "sq":
                total += seq.pow(2).sum(dim=0)
            else:
                total.addmm_(seq.t(), seq)
        self.tokens[key] += seqs.shape[0] * seqs.shape[1]

    def sq_mean(self, name: str) -> torch.Tensor:
        """Mean over calibration tokens of x_j^2 for each input feature j of `name`."""
        assert self.kind == "sq"
        owner = self.owner[name]
        return self.sums[owner] / self.tokens[owner]

    def hessian(self, name: str) -> torch.Tensor:
        """SparseGPT's H = 2 X X^T / N over the calibration tokens seen by `name` (a fresh tensor)."""
        assert self.kind == "hessian"
        owner = self.owner[name]
        return self.sums[owner] * (2.0 / self.tokens[owner])
