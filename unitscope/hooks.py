"""Read and edit what a layer computes; layers are dotted ``named_modules()`` names.

    with Trace(model, "blocks.4", stop=True) as t:   # stop: skip the rest of the network
        model(x)
    acts = t.output                                   # [N, C, H, W]

    with TraceDict(model, ["blocks.2", "blocks.6"]) as td:
        model(x)
    td["blocks.6"].output

    with Trace(model, "blocks.6", edit_output=ablation([3, 7], mode="zero")):
        logits = model(x)                             # units 3 and 7 switched off

Hooks exist only inside a ``with`` block and are removed on exit, also after an exception.
A module that runs more than once in one forward pass (torchvision ResNet's shared ``relu``) is
traced at one call, the first unless ``call=`` says otherwise, with or without ``stop``; a reused
module warns when the pass ends, and :func:`unitscope.layers.list_layers` reports each layer's ``calls``.
Units are channels: dim 1 of ``[N, C, H, W]`` and ``[N, C]`` outputs, the last dim of a
transformer's ``[N, T, D]`` tokens; ``as_map=True`` shows tokens as ``[N, D, h, w]`` maps.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from unitscope.edits import MODES, Edits, unit_mask
from unitscope.layers import resolve_layer

EditFn = Callable[[Any, str], Any]


class StopForward(Exception):
    """Raised inside a hook to end the forward pass after the last traced layer."""


def tokens_to_map(x: torch.Tensor, prefix_tokens: int | None = None) -> torch.Tensor:
    """Transformer tokens ``[N, T, D]`` -> ``[N, D, h, w]`` over the square patch grid.

    ``prefix_tokens`` (class / register tokens) are dropped; by default the smallest count in
    0..8 that leaves a square number of patches (1 for a ViT's class token + 14x14 patches).
    """
    if x.dim() != 3:
        raise ValueError(f"expected tokens [N, T, D], got shape {tuple(x.shape)}")
    n, t, d = x.shape
    candidates = [prefix_tokens] if prefix_tokens is not None else range(0, min(t, 9))
    for p in candidates:
        side = math.isqrt(t - p)
        if side * side == t - p and side > 0:
            return x[:, p:, :].transpose(1, 2).reshape(n, d, side, side)
    raise ValueError(
        f"cannot view {t} tokens as a square patch grid (tried dropping {list(candidates)} prefix tokens); "
        "pass prefix_tokens= explicitly"
    )


def unit_dim(output: torch.Tensor) -> int:
    """The dimension that indexes units: 1, or 2 for transformer tokens ``[N, T, D]``."""
    return 2 if output.dim() == 3 else 1


class Trace:
    """Hook one layer: keep its output (and input), optionally edit it or stop after it.

    ``edit_output(output, layer_name)`` returns the replacement output; it runs (on every call)
    before the output is retained, so ``.output`` shows the edited value. ``call``: which call of
    the module within one forward pass to retain (0 = the first) and, with ``stop``, to stop
    after; ``.calls`` counts the module's calls in the last forward pass.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module,
        *,
        retain_output: bool = True,
        retain_input: bool = False,
        detach: bool = True,
        stop: bool = False,
        edit_output: EditFn | None = None,
        as_map: bool = False,
        prefix_tokens: int | None = None,
        call: int = 0,
        _on_fire: Callable[[str], None] | None = None,
    ):
        if call < 0:
            raise ValueError(f"call must be 0 (the first call) or more, got {call}")
        self.model = model
        self.layer, self.module = resolve_layer(model, layer)
        self.retain_output, self.retain_input = retain_output, retain_input
        self.detach, self.stop, self.edit_output = detach, stop, edit_output
        self.as_map, self.prefix_tokens = as_map, prefix_tokens
        self._on_fire = _on_fire
        self.call, self.calls = call, 0
        self.output: Any = None
        self.input: Any = None
        self._handles: list[Any] = []
        self._warned = False
        self._in_pass = False  # inside a forward pass of ``model``, where calls are counted
        self._pre_input: tuple | None = None

    def _start(self, module: nn.Module, inputs: tuple) -> None:
        self.calls, self._in_pass = 0, True

    def _end(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        self._in_pass = False
        if self.calls > 1 and not self._warned:
            self._warned = True
            warnings.warn(
                f"layer {self.layer!r} ran {self.calls} times in one forward pass (a module reused in "
                f"forward); .output holds call {self.call} of 0..{self.calls - 1}, with or without stop. "
                "Pass call=N for another, or trace a module that runs once.",
                stacklevel=2,
            )

    def _hook(self, module: nn.Module, inputs: tuple, output: Any) -> Any:
        if self._in_pass:
            index, self.calls = self.calls, self.calls + 1
        else:  # the layer run on its own, outside ``model``: every call is the one to keep
            index = self.call
        if self.edit_output is not None:
            output = self.edit_output(output, self.layer)
        if index != self.call:
            return output
        if self.retain_input:
            if self._pre_input is not None:  # an in-place module overwrote its input: the copy taken before
                inputs, self._pre_input = self._pre_input, None
            self.input = _keep(inputs[0] if len(inputs) == 1 else inputs, self.detach)
        if self.retain_output:
            kept = _keep(output, self.detach)
            if self.as_map and isinstance(kept, torch.Tensor) and kept.dim() == 3:
                kept = tokens_to_map(kept, self.prefix_tokens)
            self.output = kept
        if self._on_fire is not None:
            self._on_fire(self.layer)
        elif self.stop:
            self._in_pass = False
            raise StopForward
        return output

    def _keep_input(self, module: nn.Module, inputs: tuple) -> None:
        """Before an in-place module (``ReLU6(inplace=True)``) runs: a copy of its input."""
        self._pre_input = tuple(x.clone() if isinstance(x, torch.Tensor) else x for x in inputs)

    def __enter__(self) -> Trace:
        self._handles = [
            self.model.register_forward_pre_hook(self._start),
            self.module.register_forward_hook(self._hook),
            self.model.register_forward_hook(self._end),
        ]
        if self.retain_input and getattr(self.module, "inplace", False):
            self._handles.append(self.module.register_forward_pre_hook(self._keep_input))
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        return exc_type is not None and issubclass(exc_type, StopForward)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class TraceDict(OrderedDict):
    """Hook several layers at once; ``td[name]`` is each layer's :class:`Trace`.

    With ``stop=True`` the forward pass ends as soon as every traced layer has run.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Iterable[str | nn.Module],
        *,
        stop: bool = False,
        edit_output: EditFn | None = None,
        **trace_kw: Any,
    ):
        super().__init__()
        self.stop = stop
        self._fired: set[str] = set()
        self._trace_kw = {k: v for k, v in trace_kw.items() if k == "detach"}
        for layer in layers:
            name, _ = resolve_layer(model, layer)
            if name in self:
                raise ValueError(f"layer {name!r} is listed twice")
            self[name] = Trace(model, name, edit_output=edit_output, _on_fire=partial(self._fire, name), **trace_kw)

    def add_input(self, key: str, model: nn.Module, layer: str, call: int = 0) -> Trace:
        """Also keep the input of ``layer`` (at its ``call``-th call) as ``self[key].input``, e.g. an
        activation module's input: its layer before the nonlinearity. Call before entering."""
        if key in self:
            raise ValueError(f"{key!r} is traced twice")
        self[key] = Trace(
            model,
            layer,
            retain_input=True,
            retain_output=False,
            call=call,
            _on_fire=partial(self._fire, key),
            **self._trace_kw,
        )
        return self[key]

    def _fire(self, key: str, layer: str) -> None:
        self._fired.add(key)
        if self.stop and len(self._fired) == len(self):
            self._fired.clear()
            for trace in self.values():
                trace._in_pass = False
            raise StopForward

    def __enter__(self) -> TraceDict:
        self._fired.clear()
        try:
            for trace in self.values():
                trace.__enter__()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        return exc_type is not None and issubclass(exc_type, StopForward)

    def close(self) -> None:
        for trace in self.values():
            trace.close()


def _keep(value: Any, detach: bool) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach() if detach else value
    if isinstance(value, (tuple, list)):
        return type(value)(_keep(v, detach) for v in value)
    return value


# -- ablation: one edit primitive (unitscope.edits) on a live model -------------------------------


def ablation(
    units: Sequence[int] | torch.Tensor,
    mode: str = "zero",
    value: float | torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    region: torch.Tensor | None = None,
) -> EditFn:
    """An ``edit_output`` function that replaces the chosen units (one :class:`~unitscope.edits.Edits`).

    ``mode``: ``"zero"``; ``"constant"`` (``value`` a number or a per-unit tensor ``[len(units)]``);
    ``"mean"`` (``value`` the per-unit means of the whole layer ``[C]``, e.g. from
    ``stats.Moments``); ``"noise"``: Gaussian noise with each unit's mean ``value`` ``[C]`` and
    standard deviation ``std`` ``[C]``, drawn per element (``generator`` for repeatable draws);
    ``"quantile"`` (``value`` each unit's level ``[C]``, to switch units on). ``region`` (bool
    ``[H, W]``): edit only there. ``[N, C, H, W]``, ``[N, C]`` and ``[N, T, D]`` outputs work alike.
    """
    if mode not in MODES:
        raise ValueError(f"unknown ablation mode {mode!r}; choose {', '.join(MODES[:-1])} or {MODES[-1]}")
    if mode != "zero" and value is None:
        raise ValueError(
            f"ablation mode {mode!r} needs value= (per-unit means for 'mean' and 'noise', "
            "a number for 'constant', per-unit levels for 'quantile')"
        )
    if mode == "noise" and std is None:
        raise ValueError("ablation mode 'noise' needs std= (each unit's standard deviation [C])")
    chosen = list(units) if not isinstance(units, torch.Tensor) else units.tolist()

    def edit(output: Any, layer: str) -> Any:
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"cannot ablate layer {layer!r}: its output is {type(output).__name__}, not a tensor")
        dim = unit_dim(output)
        n_units = output.shape[dim]
        mask = unit_mask(chosen, n_units, f"layer {layer!r}")
        if mode == "constant" and torch.as_tensor(value).dim() > 0:  # one value per chosen unit
            full = torch.zeros(n_units)
            full[chosen] = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
            edits = Edits.ablate(mask, "constant", value=full)
        elif mode in ("mean", "noise", "quantile"):
            if torch.as_tensor(value).numel() != n_units:
                raise ValueError(
                    f"{mode} ablation of {layer!r} needs {n_units} per-unit values, "
                    f"got {torch.as_tensor(value).numel()}"
                )
            edits = Edits.ablate(mask, mode, mean=torch.as_tensor(value), std=std, value=value)
        else:
            edits = Edits.ablate(mask, mode, value=value)
        if region is not None:
            edits = edits.within(region)
        return edits.apply(output, generator, dim=dim).to(output.dtype)

    return edit


class Ablate(Trace):
    """Context manager: ``with Ablate(model, "blocks.6", [3, 7]): model(x)`` (see :func:`ablation`)."""

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module,
        units: Sequence[int],
        mode: str = "zero",
        value: float | torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        region: torch.Tensor | None = None,
    ):
        super().__init__(
            model, layer, retain_output=False, edit_output=ablation(units, mode, value, std, region=region)
        )
