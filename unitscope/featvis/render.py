"""Render images that maximise an objective (Lucid's ``render_vis``), many units in one batch.

    model = create_model("efficientnet_lite0")
    result = render(model, channel("blocks.2.0.bn1", list(range(8))), batch=8)   # image i: unit i
    result.images                                  # [8, 3, 128, 128] in [0, 1], on the CPU
    for units, images in render_units(model, "blocks.2.0.bn1", range(64), steps=512): ...

Defaults follow Lucid: 512 steps of Adam (lr 0.05) on a 128 px Fourier image with decorrelated
colour, the standard random transforms, the image upsampled to the model's input size and
normalised with the model's own mean and std, and ReLU gradients redirected for the first 16
steps. Hooks (tracing, ReLU redirection) live only inside ``with`` blocks and are removed even
when a step raises; the model's ``requires_grad`` flags and in-place ReLUs are restored too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from unitscope.featvis import param as param_mod
from unitscope.featvis.objectives import IMAGE, OUTPUT, PRE, Objective, channel
from unitscope.featvis.transforms import Transform, standard_transforms
from unitscope.hooks import StopForward, TraceDict


class _RedirectedReLU(torch.autograd.Function):
    """Clamp to [0, upper]; where an image's true gradient is all zero, let gradients through that
    would move a dead unit back into its active range (Lucid's ``redirected_relu_grad``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, upper: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.upper = upper
        return x.clamp(0, upper)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (x,) = ctx.saved_tensors
        inside = (x > 0) & (x < ctx.upper)
        normal = g * inside
        # g is d(loss)/d(out); a descent step moves x by -g: allow it where that enters the range.
        redirected = g * (inside | ((x <= 0) & (g < 0)) | ((x >= ctx.upper) & (g > 0)))
        dead = normal.flatten(1).abs().sum(1) == 0
        dead = dead.view(-1, *([1] * (g.dim() - 1)))
        return torch.where(dead, redirected, normal), None


@contextlib.contextmanager
def redirected_relu(model: nn.Module, active: Callable[[], bool] = lambda: True) -> Iterator[int]:
    """Redirect the gradients of every ``nn.ReLU``/``nn.ReLU6`` module while ``active()``; yields
    how many modules are hooked. In-place flags are switched off inside and restored on exit."""
    handles, inplace = [], {}

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor):
        if not active() or not torch.is_grad_enabled():
            return output
        upper = 6.0 if isinstance(module, nn.ReLU6) else float("inf")
        return _RedirectedReLU.apply(inputs[0], upper)

    try:
        for module in model.modules():
            if isinstance(module, (nn.ReLU, nn.ReLU6)):
                inplace[module] = module.inplace
                module.inplace = False  # the hook needs the pre-activation input intact
                handles.append(module.register_forward_hook(hook))
        yield len(handles)
    finally:
        for h in handles:
            h.remove()
        for module, flag in inplace.items():
            module.inplace = flag


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """No gradients for the model's own parameters inside (saves work); flags restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass
class RenderResult:
    """What :func:`render` made: ``summary()`` in a line, ``_repr_html_()`` the images in a notebook."""

    images: torch.Tensor  # [N, 3, H, W] in [0, 1], CPU
    values: torch.Tensor  # [N] objective per image at the last step
    history: list[float] = field(default_factory=list)  # mean objective per step
    objective: str = ""

    def summary(self) -> str:
        """E.g. ``"4 images of 128x128 px after 512 steps; objective Channel [l, 0..3]: 12.5 mean (3.1 .. 20.4)"``."""
        n, (h, w) = len(self.images), tuple(self.images.shape[-2:])
        text = f"{n} image{'s' if n != 1 else ''} of {w}x{h} px after {len(self.history)} steps"
        if len(self.values):
            v = self.values.float()
            text += (
                f"; objective {self.objective or '?'}: {v.mean().item():.4g} mean "
                f"({v.min().item():.4g} .. {v.max().item():.4g})"
            )
        return text

    def _repr_html_(self) -> str:
        """The summary and each image inline (PNG), captioned with its objective value."""
        import base64
        import html
        import io

        from unitscope.featvis.images import to_pil

        cells = []
        for img, value in zip(self.images, self.values.tolist()):
            buf = io.BytesIO()
            to_pil(img).save(buf, format="PNG")
            data = base64.b64encode(buf.getvalue()).decode("ascii")
            cells.append(
                f"<figure style='display:inline-block;margin:2px'><img src='data:image/png;base64,{data}' "
                f"style='height:96px'><figcaption>{value:.4g}</figcaption></figure>"
            )
        return f"<div class='unitscope-render'><b>{html.escape(self.summary())}</b><br>{''.join(cells)}</div>"


class ModelInput:
    """Image ``[N, 3, h, w]`` in [0, 1] -> the model's input: transforms, resize, normalise."""

    def __init__(self, model: nn.Module, transforms: Transform | None, upsample: bool = True):
        from unitscope.models import get_info

        info = get_info(model)
        self.size = tuple(info.input_size[1:]) if upsample else None
        self.mean = torch.tensor(info.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(info.std).view(1, 3, 1, 1)
        self.transforms = transforms

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        x = self.transforms(img) if self.transforms is not None else img
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return (x - self.mean.to(x)) / self.std.to(x)


def _forward(model: nn.Module, x: torch.Tensor, traces: TraceDict | None, needs_output: bool) -> dict:
    acts: dict[str, torch.Tensor] = {}
    if traces is None and not needs_output:
        return acts
    try:
        out = model(x)
    except StopForward:
        out = None
    if traces is not None:
        acts.update({name: t.output if t.retain_output else t.input for name, t in traces.items()})
    if needs_output:
        acts[OUTPUT] = out
    return acts


@contextlib.contextmanager
def objective_hooks(model: nn.Module, objective: Objective) -> Iterator[Callable[[torch.Tensor], dict]]:
    """Yields ``acts_fn(x) -> acts`` tracing what ``objective`` reads (stopping early when it can).
    A layer named ``"<layer>:pre"`` is ``<layer>`` before its nonlinearity: the input of the
    activation module that makes its output (:func:`unitscope.layers.pre_activation`)."""
    from unitscope.layers import pre_activation

    layers = sorted(objective.layers - {IMAGE, OUTPUT})
    needs_output = OUTPUT in objective.layers
    if not layers:
        yield lambda x: _forward(model, x, None, needs_output)
        return
    traces = TraceDict(model, [name for name in layers if not name.endswith(PRE)], stop=not needs_output, detach=False)
    for name in layers:
        if name.endswith(PRE):
            act, call, _ = pre_activation(model, name[: -len(PRE)])
            traces.add_input(name, model, act, call)
    with traces:
        yield lambda x: _forward(model, x, traces, needs_output)


def _device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def render(
    model: nn.Module,
    objective: Objective,
    *,
    batch: int = 1,
    size: int = 128,
    param: str = "fft",
    image_param: tuple[list[torch.Tensor], Callable[[], torch.Tensor]] | None = None,
    steps: int = 512,
    lr: float = 0.05,
    transforms: Transform | str | None = "standard",
    upsample: bool = True,
    redirect_steps: int = 16,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> RenderResult:
    """Optimise ``batch`` images of ``size`` px to maximise ``objective``; see the module docstring.

    ``image_param``: your own ``(params, image_fn)`` instead of ``param``/``size``/``batch``.
    ``transforms``: ``"standard"``, a callable, or None. ``upsample=False`` feeds the rendered size.
    """
    device = _device(model, device)
    gen = torch.Generator().manual_seed(seed)
    if image_param is None:
        image_param = param_mod.image((batch, 3, size, size), param, device=device, generator=gen)
    params, image_fn = image_param
    tf = standard_transforms(gen) if transforms == "standard" else transforms
    if isinstance(tf, str):
        raise ValueError(f"transforms must be 'standard', a callable or None, got {tf!r}")
    to_input = ModelInput(model, tf, upsample)
    opt = torch.optim.Adam(params, lr=lr)
    history: list[float] = []
    values = torch.zeros(0)
    step = 0
    bar = _progress(steps, progress, desc or str(objective))
    # The redirect hooks go first so that traced outputs are the redirected ones.
    with (
        frozen(model),
        redirected_relu(model, lambda: step < redirect_steps),
        objective_hooks(model, objective) as acts_fn,
    ):
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            img = image_fn()
            acts = acts_fn(to_input(img))
            acts[IMAGE] = img
            value = objective(acts)
            (-value.sum()).backward()
            opt.step()
            values = value.detach().cpu()
            history.append(float(values.mean()))
            bar.update(1)
            bar.set_postfix(objective=f"{history[-1]:.3g}", refresh=False)
    bar.close()
    with torch.no_grad():
        images = image_fn().detach().cpu()
    return RenderResult(images, values, history, str(objective))


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc[:60], leave=False)


@torch.no_grad()
def evaluate(model: nn.Module, objective: Objective, images: torch.Tensor, upsample: bool = True) -> torch.Tensor:
    """The objective ``[N]`` on fixed images ``[N, 3, H, W]`` in [0, 1] (no random transforms)."""
    device = _device(model, None)
    images = images.to(device)
    # redirected_relu(inactive) only switches in-place ReLUs off, so traced inputs stay intact.
    with redirected_relu(model, lambda: False), objective_hooks(model, objective) as acts_fn:
        acts = acts_fn(ModelInput(model, None, upsample)(images))
    acts[IMAGE] = images
    return objective(acts).cpu()


def render_units(
    model: nn.Module,
    layer: str,
    units: Iterable[int],
    *,
    batch_size: int = 64,
    make_objective: Callable[[str, Sequence[int]], Objective] = channel,
    **render_kw,
) -> Iterator[tuple[list[int], RenderResult]]:
    """Render ``units`` of ``layer`` ``batch_size`` at a time (image i serves unit i); yields
    ``(units, result)`` per batch so the caller can save each batch before the next starts."""
    units = list(units)
    for start in range(0, len(units), batch_size):
        chunk = units[start : start + batch_size]
        obj = make_objective(layer, chunk)
        yield chunk, render(model, obj, batch=len(chunk), **render_kw)
