"""The statistic contract shared by everything in :mod:`unitscope.stats`.

    class Count(Stat):                       # a new statistic: config, data, set, merge
        def __init__(self, device=None): self.device, self.n = as_device(device), torch.zeros(())
        def add(self, x): self.n += len(x)
        def _config(self): return {}
        def _data(self): return {"n": self.n}
        def _set_data(self, arrays): self.n = arrays["n"]
        def _merge(self, other): self.n += other.n

A statistic is described by its *config* (constructor arguments, e.g. ``resolution``) and its
*data* (tensors that grow with ``add``). Its state dict holds both as plain NumPy arrays plus a type
tag, so :func:`stat_from_state_dict` can rebuild any statistic from a file without pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import torch

Device = torch.device | str | None
S = TypeVar("S", bound="Stat")

_TYPE_KEY = "stat"
_CONFIG = "config."  # scalar constructor arguments
_CONFIG_ARRAY = "config_array."  # tensor constructor arguments


def encode_str(text: str) -> np.ndarray:
    """A string as a uint8 array (safetensors stores numbers only)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def decode_str(array: np.ndarray) -> str:
    return np.asarray(array, dtype=np.uint8).tobytes().decode("utf-8")


def to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    return np.asarray(value)


def as_device(device: Device) -> torch.device:
    """``device`` as a ``torch.device``; None means the CPU."""
    return torch.device(device) if device is not None else torch.device("cpu")


def units_first(x: torch.Tensor) -> torch.Tensor:
    """``[N, C]`` or ``[N, C, H, W]`` -> ``[C, M]`` (every sample and spatial position a column)."""
    if x.dim() == 2:
        return x.t()
    if x.dim() == 4:
        return x.transpose(0, 1).reshape(x.shape[1], -1)
    raise ValueError(f"expected a tensor [N, C] or [N, C, H, W], got shape {tuple(x.shape)}")


class Stat:
    """Base class: ``add`` (per subclass), read-outs, ``state_dict``/``load_state_dict``,
    ``from_state_dict``, ``merge``, ``to``.

    Subclasses implement ``_config()`` (constructor arguments), ``_data()`` (tensors to save),
    ``_set_data(arrays)`` and ``_merge(other)``; everything else is shared.
    """

    registry: ClassVar[dict[str, type[Stat]]] = {}
    _merge_ignores: ClassVar[tuple[str, ...]] = ()  # config that may differ between shards
    device: torch.device

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__ in Stat.registry:
            raise TypeError(f"a statistic named {cls.__name__!r} is already registered")
        Stat.registry[cls.__name__] = cls

    # -- subclass hooks -------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        raise NotImplementedError

    def _data(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _set_data(self, arrays: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def _merge(self, other: Self) -> None:
        raise NotImplementedError

    # -- shared behaviour -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Config and data as plain arrays (scalars as 0-d arrays), plus a type tag."""
        sd = {_TYPE_KEY: encode_str(type(self).__name__)}
        for k, v in self._config().items():
            sd[(_CONFIG_ARRAY if isinstance(v, torch.Tensor) else _CONFIG) + k] = to_numpy(v)
        sd.update({k: to_numpy(v) for k, v in self._data().items()})
        return sd

    def load_state_dict(self, sd: Mapping[str, np.ndarray]) -> None:
        """Replace this statistic's data with ``sd``; its type and config must match."""
        tag = decode_str(sd[_TYPE_KEY]) if _TYPE_KEY in sd else None
        if tag != type(self).__name__:
            raise ValueError(f"state dict holds a {tag}, not a {type(self).__name__}")
        mine, theirs = self._config(), _config_of(sd)
        for name, value in mine.items():
            if name not in theirs or not np.array_equal(to_numpy(value), to_numpy(theirs[name])):
                raise ValueError(
                    f"{type(self).__name__}: state dict has {name}={_short(theirs.get(name))}, "
                    f"this statistic has {name}={_short(value)}"
                )
        data = {
            k: torch.from_numpy(np.array(v)).to(self.device)
            for k, v in sd.items()
            if k != _TYPE_KEY and not k.startswith((_CONFIG, _CONFIG_ARRAY))
        }
        self._set_data(data)

    @classmethod
    def from_state_dict(cls: type[S], sd: Mapping[str, np.ndarray], device: Device = None) -> S:
        """Rebuild a statistic saved with :meth:`state_dict`."""
        stat = cls(**_config_of(sd), device=device)  # type: ignore[call-arg]  # every concrete Stat takes device
        stat.load_state_dict(sd)
        return stat

    def merge(self: S, other: S) -> S:
        """Fold ``other`` into ``self`` in place: afterwards ``self`` summarises both streams."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge a {type(other).__name__} into a {type(self).__name__}")
        for name, value in self._config().items():
            if name in self._merge_ignores:
                continue
            if not np.array_equal(to_numpy(value), to_numpy(other._config()[name])):
                raise ValueError(f"cannot merge {type(self).__name__}s with different {name}")
        self._merge(other)
        return self

    def to(self: S, device: Device) -> S:
        """Move every tensor to ``device`` (in place); returns self."""
        self.device = as_device(device)
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(self.device))
            elif isinstance(value, list) and all(isinstance(v, torch.Tensor) for v in value):
                setattr(self, name, [v.to(self.device) for v in value])
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items() if not isinstance(v, torch.Tensor))
        return f"{type(self).__name__}({args})"


def _config_of(sd: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Constructor arguments: Python scalars and tensors. Scalars are read by size, not shape,
    so a store that turns 0-d arrays into shape (1,) loses nothing."""
    config: dict[str, Any] = {}
    for k, v in sd.items():
        if k.startswith(_CONFIG):
            config[k[len(_CONFIG) :]] = np.asarray(v).reshape(-1)[0].item()
        elif k.startswith(_CONFIG_ARRAY):
            config[k[len(_CONFIG_ARRAY) :]] = torch.from_numpy(np.array(v))
    return config


def _short(value: Any) -> str:
    a = to_numpy(value) if value is not None else None
    return "missing" if a is None else (repr(a.item()) if a.ndim == 0 else f"array{a.shape}")


def stat_from_state_dict(sd: Mapping[str, np.ndarray], device: Device = None) -> Stat:
    """Rebuild whichever statistic ``sd`` holds, using its type tag."""
    if _TYPE_KEY not in sd:
        raise ValueError("not a statistic's state dict (no 'stat' type tag)")
    name = decode_str(sd[_TYPE_KEY])
    if name not in Stat.registry:
        raise ValueError(f"unknown statistic type {name!r}; known: {sorted(Stat.registry)}")
    return Stat.registry[name].from_state_dict(sd, device=device)


def save_stat(path: str | Path, stat: Stat) -> None:
    """Write ``stat`` to ``path`` (``.safetensors`` or ``.npz``), atomically."""
    from unitscope.runs import save_arrays

    save_arrays(path, stat.state_dict())


def load_stat(path: str | Path, device: Device = None) -> Stat:
    """Read a statistic written by :func:`save_stat`."""
    from unitscope.runs import load_arrays

    return stat_from_state_dict(load_arrays(path), device=device)
