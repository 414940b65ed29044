"""Capture what each decoder layer is called with: layer 0's hidden states and every layer's own kwargs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# Where causal LMs keep their decoder layers, most common first.
LAYER_PATHS = ("model.layers", "model.language_model.layers", "language_model.model.layers", "transformer.h", "gpt_neox.layers")


class _StopForward(Exception):
    """Raised by the last recorder: nothing after the decoder layers is needed."""


@dataclass
class LayerCall:
    """The non-hidden arguments one decoder layer received for one calibration batch."""

    args: tuple
    kwargs: dict[str, Any]
    hidden_as_kwarg: bool = False


@dataclass
class LayerInputs:
    """Layer 0's hidden states per batch, and per layer the calls it received (position embeddings, masks, ...)."""

    hidden: list[torch.Tensor] = field(default_factory=list)
    calls: list[list[LayerCall]] = field(default_factory=list)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList of decoder layers of a causal LM (Llama, Qwen2/3, Gemma3, Mistral, ...)."""
    for path in LAYER_PATHS:
        node: Any = model
        for part in path.split("."):
            node = getattr(node, part, None)
        if isinstance(node, nn.ModuleList) and len(node) > 0:
            return node
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}: looked for {', '.join(LAYER_PATHS)}")


class _Recorder(nn.Module):
    """Stands in for one decoder layer: records its call and passes the hidden states through unchanged."""

    def __init__(self, layer: nn.Module, index: int, inputs: LayerInputs, last: bool) -> None:
        super().__init__()
        # Kept out of _modules so that moving the model to the device leaves the real layer where it is.
        self.__dict__["wrapped"] = layer
        self.index, self.inputs, self.last = index, inputs, last

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["wrapped"], name)  # e.g. a model loop reading `attention_type`

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        hidden_as_kwarg = not args
        hidden = kwargs.pop("hidden_states") if hidden_as_kwarg else args[0]
        self.inputs.calls[self.index].append(LayerCall(tuple(args[1:]), kwargs, hidden_as_kwarg))
        if self.index == 0:
            self.inputs.hidden.append(hidden)
        if self.last:
            raise _StopForward
        return hidden


def _home_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def capture_layer_inputs(
    model: nn.Module, layers: nn.ModuleList, calibration: torch.Tensor, device: torch.device, batch_size: int
) -> LayerInputs:
    """Run the calibration ids through the model's embeddings and mask logic only, recording every layer's call.

    Each layer gets its own kwargs (Gemma3 alternates sliding-window and full-attention masks and
    rotary tables), captured exactly as the model's own loop passes them.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, but is {batch_size}")
    inputs = LayerInputs(calls=[[] for _ in layers])
    originals = list(layers)
    home = _home_device(model)
    for i, layer in enumerate(originals):
        layers[i] = _Recorder(layer, i, inputs, last=i == len(originals) - 1)
    try:
        model.to(device)  # embeddings, rotary tables and norms only: the real layers are not registered here
        for batch in calibration.split(batch_size):
            try:
                model(input_ids=batch.to(device), use_cache=False)
            except _StopForward:
                pass
    finally:
        for i, layer in enumerate(originals):
            layers[i] = layer
        model.to(home)
    assert all(len(calls) == len(inputs.hidden) for calls in inputs.calls), "a layer was skipped by the model loop"
    return inputs


def call_layer(layer: nn.Module, hidden: torch.Tensor, call: LayerCall) -> torch.Tensor:
    """Run one decoder layer on `hidden` with the arguments it was captured with; return its hidden states."""
    if call.hidden_as_kwarg:
        out = layer(*call.args, hidden_states=hidden, **call.kwargs)
    else:
        out = layer(hidden, *call.args, **call.kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out
