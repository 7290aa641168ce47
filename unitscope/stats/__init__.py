"""Streaming statistics that save, resume and merge.

    stat = CombinedStat(q=Quantile(), top=TopK(10), m=Moments())
    for index, x in batches:                      # x: activations [N, C, H, W]
        stat.q.add(x)                             # every spatial position is a sample
        stat.top.add(x, index)                    # index: global image numbers [N]
        stat.m.add(x)
    save_stat(run / "stats.safetensors", stat)    # plain arrays, no pickle
    stat = load_stat(run / "stats.safetensors")
    stat.q.quantiles(0.995)                       # [C]
    shard_a.merge(shard_b)                        # now shard_a summarises both streams

Every statistic has the same contract: ``add(...)``, read-outs, ``state_dict()`` (NumPy arrays,
scalars as 0-d arrays, with the constructor arguments and a type tag), ``load_state_dict(sd)``,
``Cls.from_state_dict(sd)`` / :func:`stat_from_state_dict`, ``merge(other)`` (in place) and
``to(device)``. Loading a state and adding more data gives bit-identical results to never having
stopped. Run statistics over a data set with :func:`unitscope.tally.tally`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from unitscope._stats_base import (
    Device,
    Stat,
    decode_str,
    encode_str,
    load_stat,
    save_stat,
    stat_from_state_dict,
)
from unitscope._stats_iou import IoUCounts
from unitscope._stats_quantile import Quantile
from unitscope._stats_simple import ClassMeans, Moments, TopK

__all__ = [
    "ClassMeans",
    "CombinedStat",
    "IoUCounts",
    "Moments",
    "Quantile",
    "Stat",
    "TopK",
    "load_stat",
    "save_stat",
    "stat_from_state_dict",
]


class CombinedStat(Stat):
    """Several named statistics that save, load, merge and move as one.

    Members are attributes (``stat.q``) and items (``stat["q"]``); the state dict prefixes each
    member's keys with ``"<name>."``.
    """

    def __init__(self, device: Device = None, **stats: Stat) -> None:
        for name, stat in stats.items():
            if not isinstance(stat, Stat):
                raise TypeError(f"{name}={stat!r} is not a statistic")
        self.stats: dict[str, Stat] = dict(stats)
        if device is not None:
            self.to(device)

    def __getattr__(self, name: str) -> Stat:
        stats = self.__dict__.get("stats", {})
        if name in stats:
            return stats[name]
        raise AttributeError(f"CombinedStat has no statistic {name!r}; it has {sorted(stats)}")

    def __getitem__(self, name: str) -> Stat:
        return self.stats[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.stats)

    def items(self) -> Iterator[tuple[str, Stat]]:
        return iter(self.stats.items())

    def state_dict(self) -> dict[str, np.ndarray]:
        sd = {"stat": encode_str("CombinedStat")}
        for name, stat in self.stats.items():
            sd.update({f"{name}.{k}": v for k, v in stat.state_dict().items()})
        return sd

    def load_state_dict(self, sd: Mapping[str, np.ndarray]) -> None:
        names = _member_names(sd)
        if names != set(self.stats):
            raise ValueError(
                f"state dict holds statistics {sorted(names)}, this CombinedStat has {sorted(self.stats)}"
            )
        for name, stat in self.stats.items():
            stat.load_state_dict(_member(sd, name))

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, np.ndarray], device: Device = None) -> CombinedStat:
        if decode_str(sd["stat"]) != "CombinedStat":
            raise ValueError(f"state dict holds a {decode_str(sd['stat'])}, not a CombinedStat")
        stats = {
            name: stat_from_state_dict(_member(sd, name), device=device)
            for name in sorted(_member_names(sd))
        }
        return cls(**stats)

    def merge(self, other: CombinedStat) -> CombinedStat:
        if not isinstance(other, CombinedStat) or set(other.stats) != set(self.stats):
            raise ValueError("can only merge a CombinedStat with the same member names")
        for name, stat in self.stats.items():
            stat.merge(other.stats[name])
        return self

    def to(self, device: Device) -> CombinedStat:
        for stat in self.stats.values():
            stat.to(device)
        return self

    def __repr__(self) -> str:
        return f"CombinedStat({', '.join(f'{k}={v!r}' for k, v in self.stats.items())})"


def _member_names(sd: Mapping[str, np.ndarray]) -> set[str]:
    return {k.split(".", 1)[0] for k in sd if "." in k}


def _member(sd: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    prefix = name + "."
    return {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
