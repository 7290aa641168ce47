"""Several statistics that save, load, merge and move as one.

from unitscope.stats import CombinedStat, Quantile, TopK
stat = CombinedStat(q=Quantile(), top=TopK(10))
stat.q.add(acts); stat["top"].add(acts, index)
stat.state_dict()                     # keys "q.<...>", "top.<...>"
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from unitscope.stats.base import Device, Stat, decode_str, encode_str, stat_from_state_dict


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
            raise ValueError(f"state dict holds statistics {sorted(names)}, this CombinedStat has {sorted(self.stats)}")
        for name, stat in self.stats.items():
            stat.load_state_dict(_member(sd, name))

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, np.ndarray], device: Device = None) -> CombinedStat:
        if decode_str(sd["stat"]) != "CombinedStat":
            raise ValueError(f"state dict holds a {decode_str(sd['stat'])}, not a CombinedStat")
        stats = {name: stat_from_state_dict(_member(sd, name), device=device) for name in sorted(_member_names(sd))}
        return cls(**stats)  # type: ignore[arg-type]  # members by name; device is keyword-only in spirit

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
