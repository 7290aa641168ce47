"""Layers by name: resolve and list them, and which have a privileged basis.

    from unitscope.layers import list_layers, resolve_layer, privileged_layers
    name, module = resolve_layer(model, "blocks.4")   # unknown names: LayerNotFoundError with close matches
    [info.name for info in list_layers(model) if info.kind == "map"]   # shapes, channels, stride, calls
    marks = privileged_layers(model)            # {"blocks.4.0.bn2": True, "blocks.4": False, ...}
    [name for name, ok in marks.items() if ok]  # the layers whose units are worth dissecting one by one
    dissection_values(model, "bn2")             # LayerValues: "pre", "pre-activation: input of ReLU6 at bn2.act, ..."

Layer names are dotted ``named_modules()`` paths (:mod:`unitscope.hooks` traces and edits them).

A unit of a layer is a coordinate axis of its output. Only an elementwise nonlinearity (ReLU,
ReLU6, GELU, SiLU, ...) applied along those axes makes that basis special: the output of a linear
map (a bottleneck projection, conv + batch norm) can be rotated without changing what the network
computes, so its units need not align with anything (Network Dissection's rotation experiment).

The answer comes from one dummy forward pass, not from names: every elementwise activation in
the graph (an activation module, or a functional call such as ``F.relu`` or ``torch.sigmoid``)
marks the tensor it returns; a module is privileged when the tensor it returns was so marked by
the time it returns. So timm's ``BatchNormAct2d`` is privileged when its ``act`` is ReLU6 and not
when it is Identity, a ``Sequential`` or residual block ending in a ReLU is, and a torchvision
``bn1`` followed by an in-place ``relu`` outside it is not (its hook sees the values before).

A bounded activation ties its output at the cap (ReLU6: 6), where a top-quantile threshold would
leave an empty mask; :func:`dissection_values` says when dissection reads the activation's input
instead (monotone non-decreasing, so the order below the cap is the same and ties break above it).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from unitscope.errors import UnitscopeError

# -- naming and listing layers ------------------------------------------------------------------------


class LayerNotFoundError(UnitscopeError, ValueError):
    """An unknown layer name; the message lists close matches and how to list all layers."""


def layer_names(model: nn.Module) -> list[str]:
    """Every addressable layer name, in registration order (the root module excluded)."""
    return [name for name, _ in model.named_modules() if name]


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """``(name, module)`` for a dotted layer name or a submodule of ``model``."""
    modules = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        raise LayerNotFoundError(f"the module {type(layer).__name__} given as a layer is not part of the model")
    if layer in modules and layer:
        return layer, modules[layer]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(layer, names, n=6, cutoff=0.6)
    if not close:  # a prefix typo such as "block.4" still deserves suggestions
        close = [n for n in names if n.startswith(layer.rsplit(".", 1)[0])][:6]
    model_name = getattr(getattr(model, "unitscope_info", None), "name", "MODEL")
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise LayerNotFoundError(
        f"unknown layer {layer!r}.{hint} List all layers with `unitscope layers {model_name}` "
        f"or unitscope.layers.list_layers(model)."
    )


@dataclass
class LayerInfo:
    name: str
    type: str
    shape: tuple[int, ...] | None  # output shape without the batch dimension
    channels: int | None
    stride: int | None  # input height / output height, for spatial outputs
    calls: int = 1  # times the module runs in one forward pass (more than 1: a reused module)
    kind: str | None = None  # "map": [C, H, W] over the image; "tokens": [T, D] on a square patch grid

    def __str__(self) -> str:
        shape = "x".join(map(str, self.shape)) if self.shape else "-"
        return f"{self.name:40s} {self.type:24s} {shape:16s} {self.channels or '-':>6} {self.stride or '-':>6}"


@torch.no_grad()
def list_layers(
    model: nn.Module, input_size: Sequence[int] | None = None, device: torch.device | str | None = None
) -> list[LayerInfo]:
    """Every named layer with its output shape, channel count and number of calls, from one dummy
    forward pass (shapes are those of the first call).

    ``input_size`` is ``[C, H, W]`` (default: the model's metadata, else 3x224x224).
    """
    if input_size is None:
        info = getattr(model, "unitscope_info", None)
        input_size = info.input_size if info is not None else (3, 224, 224)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    shapes: dict[str, Any] = {}
    calls: dict[str, int] = {}
    handles = []

    def make_hook(name: str):
        def hook(module, inputs, output):
            calls[name] = calls.get(name, 0) + 1
            if name not in shapes:
                shapes[name] = tuple(output.shape) if isinstance(output, torch.Tensor) else None

        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
    result = []
    for name, module in model.named_modules():
        if not name:
            continue
        shape = shapes.get(name)
        out = shape[1:] if shape else None
        channels = stride = None
        if out and shape:
            channels = out[-1] if len(out) == 2 else out[0]
            if len(out) == 3 and len(shape) == 4:
                stride = round(input_size[1] / out[1]) if out[1] else None
        kind = output_kind(out, input_size)
        result.append(
            LayerInfo(
                name, type(module).__name__, out, channels, stride if kind == "map" else None, calls.get(name, 0), kind
            )
        )
    return result


def output_kind(shape: Sequence[int] | None, input_size: Sequence[int]) -> str | None:
    """What a layer's output ``shape`` (no batch dimension) is over an input ``[C, H, W]``.

    ``"map"``: ``[C, h, w]`` whose two spatial sides shrink the input's by the same factor (within
    15%), as convolutions and pooling do; attention internals such as ``[heads, T, d]`` do not.
    ``"tokens"``: ``[T, D]`` where T, less 0 to 8 prefix tokens, is a square patch grid. Else None.
    """
    if not shape:
        return None
    if len(shape) == 3:
        h, w = shape[1], shape[2]
        if h > 0 and w > 0:
            fy, fx = input_size[1] / h, input_size[2] / w
            if 0.25 <= fy and abs(fy - fx) <= 0.15 * max(fy, fx):
                return "map"
        return None
    if len(shape) == 2:
        t = shape[0]
        if any(t - p >= 4 and math.isqrt(t - p) ** 2 == t - p for p in range(0, min(t, 9))):
            return "tokens"
    return None


# -- privileged bases -----------------------------------------------------------------------------------

ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.LogSigmoid,
    nn.Threshold,
)
_ACTIVATION_FUNCTIONS = {
    F.relu,
    F.relu_,
    F.relu6,
    F.leaky_relu,
    F.leaky_relu_,
    F.prelu,
    F.rrelu,
    F.elu,
    F.elu_,
    F.celu,
    F.selu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    F.hardtanh_,
    F.softplus,
    F.softsign,
    F.tanhshrink,
    F.logsigmoid,
    F.threshold,
    torch.relu,
    torch.relu_,
    torch.sigmoid,
    torch.sigmoid_,
    torch.tanh,
    torch.tanh_,
    torch.Tensor.relu,
    torch.Tensor.relu_,
    torch.Tensor.sigmoid,
    torch.Tensor.sigmoid_,
    torch.Tensor.tanh,
    torch.Tensor.tanh_,
}


class _MarkActivations(TorchFunctionMode):
    """Remembers every tensor an elementwise activation function returns (by identity)."""

    def __init__(self, marked: dict[int, torch.Tensor]):
        super().__init__()
        self.marked = marked

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in _ACTIVATION_FUNCTIONS and isinstance(out, torch.Tensor):
            self.marked[id(out)] = out  # kept alive so that its id is not reused during the pass
        return out


def _dummy_pass(
    model: nn.Module,
    hooks: list[tuple[nn.Module, Any]],
    marked: dict[int, torch.Tensor],
    input_size: Sequence[int] | None,
    device: torch.device | str | None,
) -> None:
    """One forward pass of a zero image with forward ``hooks`` (in order) and functional activations
    recorded in ``marked``; the hooks are removed after. ``input_size`` ``[C, H, W]`` defaults to the
    model's metadata (else 3x224x224), ``device`` to its parameters'."""
    if input_size is None:
        info = getattr(model, "unitscope_info", None)
        input_size = info.input_size if info is not None else (3, 224, 224)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook))
        with _MarkActivations(marked):
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def privileged_layers(
    model: nn.Module, input_size: Sequence[int] | None = None, device: torch.device | str | None = None
) -> dict[str, bool]:
    """``{layer name: output follows an elementwise nonlinearity}`` for every named module that ran.

    ``input_size`` is ``[C, H, W]`` of the dummy input (default: the model's metadata, else
    3x224x224). Modules that did not run in the forward pass, or return no tensor, are left out.
    """
    marked: dict[int, torch.Tensor] = {}
    result: dict[str, bool] = {}

    def make_hook(name: str, is_act: bool):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if not isinstance(output, torch.Tensor):
                return
            if is_act:
                marked[id(output)] = output
            result.setdefault(name, id(output) in marked)

        return hook

    _dummy_pass(
        model,
        [
            (module, make_hook(name, isinstance(module, ACTIVATION_MODULES)))
            for name, module in model.named_modules()
            if name
        ],
        marked,
        input_size,
        device,
    )
    order = [name for name, _ in model.named_modules() if name in result]
    return {name: result[name] for name in order}


@torch.no_grad()
def pre_activation(
    model: nn.Module, layer: str, input_size: Sequence[int] | None = None, device: torch.device | str | None = None
) -> tuple[str, int, nn.Module]:
    """The activation module whose output ``layer`` returns: ``(name, call, module)``, where
    ``call`` counts that module's earlier calls in the forward pass (torchvision's shared ``relu``).
    Its input is ``layer`` before the nonlinearity (Lucid's ``pre_relu`` layers): what feature
    visualisation maximises when a bounded activation (ReLU6's cap of 6) would stop the gradient.

    Raises a ``ValueError`` that says why when ``layer``'s output comes from no activation module
    (a linear layer, or a functional ``F.relu`` whose input no hook can see).
    """
    name, target = resolve_layer(model, layer)
    made: dict[int, tuple[str, int, nn.Module, torch.Tensor]] = {}  # id(output) -> the activation call
    calls: dict[str, int] = {}
    found: list[Any] = []  # what the layer's first call returned: an activation call, or why not
    marked: dict[int, torch.Tensor] = {}

    def act_hook(act_name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                made[id(output)] = (act_name, calls.get(act_name, 0), module, output)
            calls[act_name] = calls.get(act_name, 0) + 1

        return hook

    def layer_hook(module: nn.Module, inputs: Any, output: Any) -> None:
        if not found:
            key = id(output) if isinstance(output, torch.Tensor) else None
            found.append(made.get(key) or ("functional" if key in marked else "linear"))

    hooks = [
        (module, act_hook(mod_name))
        for mod_name, module in model.named_modules()
        if mod_name and isinstance(module, ACTIVATION_MODULES)
    ]
    _dummy_pass(model, hooks + [(target, layer_hook)], marked, input_size, device)  # layer after its activation
    if not found:
        raise ValueError(f"layer {name!r} did not run in a forward pass of the model, so it has no pre-activation")
    if found[0] == "functional":
        raise ValueError(
            f"layer {name!r} ends in a functional activation (F.relu and the like), whose input no "
            "hook can see: name the module that feeds it instead"
        )
    if found[0] == "linear":
        raise ValueError(
            f"layer {name!r} ends in no elementwise nonlinearity (a linear bottleneck, conv + batch "
            "norm, ...), so it has no pre-activation: visualise it as it is"
        )
    act_name, call, module, _ = found[0]
    return act_name, call, module


# -- which values a dissection reads: the layer's output, or its input to a bounded activation --------

#: monotone non-decreasing activations with a saturation value (ReLU6 is a Hardtanh from 0 to 6)
BOUNDED_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardsigmoid,
    nn.Softsign,
    nn.LogSigmoid,
)
VALUES = ("auto", "pre", "post")
_SPEC_ARGS = ("min_val", "max_val", "negative_slope", "alpha", "beta", "threshold", "value", "approximate")


@dataclass(frozen=True)
class LayerValues:
    """What a dissection of ``layer`` reads: ``values`` "pre" (the input of ``module``, at its
    ``call``-th call, a module whose ``spec`` :func:`apply_activation` rebuilds; raised to ``floor``
    when the activation is flat below it: ReLU6's 0, so only the cap is removed) or "post" (the
    layer's output); ``note`` says which in words, for the catalog and the report."""

    layer: str
    values: str
    note: str
    module: str = ""
    call: int = 0
    spec: dict | None = None
    floor: float | None = None

    def read(self, pre: torch.Tensor) -> torch.Tensor:
        """The values dissection uses from the activation module's input ``pre``."""
        return pre if self.floor is None else pre.clamp(min=self.floor)

    def post(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's output from the values read (the identity for "post")."""
        return x if self.values == "post" else apply_activation(self.spec, x)


def activation_spec(module: nn.Module) -> dict[str, Any]:
    """``{"type": class name, ...constructor arguments}`` of an activation module (JSON-able)."""
    import inspect

    params = inspect.signature(type(module).__init__).parameters
    spec: dict[str, Any] = {"type": type(module).__name__}
    spec.update({k: getattr(module, k) for k in _SPEC_ARGS if k in params and hasattr(module, k)})
    if any(True for _ in module.parameters()):
        spec["learned"] = True  # PReLU: its weights are not in the spec
    return spec


def apply_activation(spec: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
    """The activation described by :func:`activation_spec` applied to ``x`` (not in place)."""
    if spec.get("learned"):
        raise ValueError(f"{spec['type']} has learned parameters; its output cannot be rebuilt from its input")
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    return getattr(nn, spec["type"])(**kwargs)(x)


def dissection_values(
    model: nn.Module,
    layer: str,
    values: str = "auto",
    input_size: Sequence[int] | None = None,
    device: torch.device | str | None = None,
) -> LayerValues:
    """Which values dissection thresholds and ranks at ``layer``: ``values="auto"`` reads the input of
    a bounded activation (ReLU6, hardtanh, sigmoid, tanh, ...) that makes the layer's output, whose
    values do not tie at the cap, else the output itself; ``"pre"`` the input of any activation
    module (an error when there is none); ``"post"`` always the output."""
    if values not in VALUES:
        raise ValueError(f"values must be one of {', '.join(VALUES)}, got {values!r}")
    if values == "post":
        return LayerValues(layer, "post", "layer output (--values post)")
    try:
        name, call, module = pre_activation(model, layer, input_size, device)
    except ValueError as exc:
        if values == "pre":
            raise
        why = "a functional activation" if "functional" in str(exc) else "no activation module"
        return LayerValues(layer, "post", f"layer output ({why}: no pre-activation to read)")
    kind = type(module).__name__
    if values == "auto" and not isinstance(module, BOUNDED_ACTIVATIONS):
        return LayerValues(layer, "post", f"layer output (after {kind}, not bounded above)")
    at = f"{name}, call {call}" if call else name
    # Hardtanh / ReLU6 are the identity between their bounds: flooring the input at the lower bound
    # keeps the output itself wherever it is below the cap (masks upsample the same values there)
    floor = float(module.min_val) if isinstance(module, nn.Hardtanh) else None
    note = f"pre-activation: input of {kind} at {at}" + (
        f", floored at {floor:g} (the output without its cap)" if floor is not None else ""
    )
    return LayerValues(layer, "pre", note, name, call, activation_spec(module), floor)


def check_bases(model: nn.Module, layers: Sequence[str]) -> dict[str, bool]:
    """Whether each layer's units are a privileged basis; one warning line per layer that is not."""
    marks = privileged_layers(model)
    bases = {layer: bool(marks.get(layer, False)) for layer in layers}
    for layer, ok in bases.items():
        if not ok:
            print(
                f"warning: {layer} does not follow an elementwise nonlinearity: its units are not a privileged "
                f"basis, so a random rotation may align with concepts as well (see `unitscope layers --spatial`)"
            )
    return bases
