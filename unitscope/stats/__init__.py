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

One module per statistic: ``quantile.py``, ``topk.py``, ``moments.py`` (Moments, ClassMeans),
``iou.py`` (IoUCounts and the counting primitives the dissection kernel shares), ``combined.py``;
``base.py`` holds the contract and the array (de)serialisation.
"""

from __future__ import annotations

from unitscope.stats.base import Stat, load_stat, save_stat, stat_from_state_dict
from unitscope.stats.combined import CombinedStat
from unitscope.stats.iou import IoUCounts, NullIoUCounts
from unitscope.stats.moments import ClassMeans, Moments
from unitscope.stats.quantile import Quantile, QuantileSlice
from unitscope.stats.topk import TopK

__all__ = [
    "ClassMeans",
    "CombinedStat",
    "IoUCounts",
    "NullIoUCounts",
    "Moments",
    "Quantile",
    "QuantileSlice",
    "Stat",
    "TopK",
    "load_stat",
    "save_stat",
    "stat_from_state_dict",
]
