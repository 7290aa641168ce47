"""Per-unit streaming quantiles: a KLL-style sketch vectorised across units.

    from unitscope.stats import Quantile
    q = Quantile(resolution=4096); q.add(acts)   # acts [N, C] or [N, C, H, W]
    q.quantiles(0.995)                           # [C]

Every unit receives the same number of samples, so all units share one compaction schedule and
each level is a single ``[C, n_h]`` tensor whose items weigh ``2**h``. Level capacities shrink
geometrically below the top level (KLL), so memory is at most ``3 * resolution`` items per unit
whatever the stream length.

A compaction sorts a level, keeps a quarter of its capacity at each end (REQ's idea: the tails,
where dissection thresholds live, stay several times more accurate than the middle), and from
the rest promotes every ``m``-th item (``m = 2**j``, random per-unit offset) ``j`` levels up.
Large batches are sorted once and promoted straight to the lowest level whose compaction rate
KLL would allow, so ``add`` costs about one sort of the batch (NumPy's SIMD sort on CPU, its
rows split over threads within :func:`sort_threads`; ``torch.sort`` elsewhere). Measured rank error
(std over units, 10**6-10**7 samples): about ``0.9 / resolution`` at the median and
``0.25 / resolution`` at q = 0.005 or 0.995.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from unitscope.stats.base import Device, Stat, as_device, units_first

_DECAY = 2.0 / 3.0  # KLL's capacity ratio between adjacent levels
_MIN_CAPACITY = 8
PROTECT = 0.25  # fraction of a level's capacity kept back at each end when it is compacted


_THREADS = threading.local()  # .n: this thread's sort_threads (1 when unset)
_POOL: list[tuple[int, ThreadPoolExecutor]] = []  # (its threads, the pool): one, grown when asked for more
_POOL_LOCK = threading.Lock()
_SPLIT_MIN = 1 << 16  # values below which a sort stays on one thread (a thread's hand-off costs more)


@contextmanager
def sort_threads(n: int) -> Iterator[None]:
    """Within the block, the sketches this thread feeds sort (and copy) their rows in ``n`` threads:
    NumPy's sort releases the GIL, so the units' rows sort side by side. For a caller whose other
    cores sit idle meanwhile: pass 1's statistics run inline between two forward passes whose torch
    threads hold every core (a ``[240, 156800]`` batch of Lite0's ``blocks.2.1``: 1.42 s on one
    thread, 0.77 s on two). The same sketch, bit for bit, at any ``n``."""
    before = getattr(_THREADS, "n", 1)
    _THREADS.n = max(1, int(n))
    try:
        yield
    finally:
        _THREADS.n = before


def _by_rows(fn: Callable[[int, int], None], rows: int, size: int) -> None:
    """``fn(lo, hi)`` over ``range(rows)`` cut into this thread's :func:`sort_threads` parts (the
    caller takes the first), or once where the array (``size`` values) is small."""
    n = min(getattr(_THREADS, "n", 1), rows)
    if n < 2 or size < _SPLIT_MIN:
        fn(0, rows)
        return
    with _POOL_LOCK:
        if not _POOL or _POOL[0][0] < n - 1:
            if _POOL:  # the smaller pool ends once its work is done (a caller may still be using it)
                _POOL[0][1].shutdown(wait=False)
            _POOL[:] = [(n - 1, ThreadPoolExecutor(n - 1, thread_name_prefix="quantile-sort"))]
        cuts = [rows * i // n for i in range(n + 1)]
        # submitted under the lock: no other caller shuts this pool down between its choice and its use
        futures = [_POOL[0][1].submit(fn, lo, hi) for lo, hi in zip(cuts[1:-1], cuts[2:])]
    try:
        fn(cuts[0], cuts[1])
    finally:
        for f in futures:
            f.result()


def _sort(x: torch.Tensor, runs: bool = False) -> torch.Tensor:
    """Rows of ``x`` ``[C, n]`` sorted; on CPU NumPy's SIMD sort is 5-10x faster than torch's.
    ``runs``: each row is a few sorted runs end to end (a level of the sketch: what was pushed onto
    it), which NumPy's stable sort (timsort) merges instead of sorting afresh: 2.3-2.6x faster than
    the SIMD sort there ([320, 6,000] of 2 runs 12.9 ms against 33.2), 4x slower on unsorted rows.
    The same values either way (only equal values, i.e. 0.0 and -0.0, may trade places)."""
    if x.device.type == "cpu":
        out = np.array(x.numpy(), order="C")  # always a copy: sorted in place, row parts side by side
        _by_rows(lambda lo, hi: out[lo:hi].sort(axis=1, kind="stable" if runs else None), len(out), out.size)
        return torch.from_numpy(out)
    return torch.sort(x, dim=1).values


def _sorted_units(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``[N, C]`` or ``[N, C, H, W]`` float32 -> ``[C, M]``: each unit's samples (in
    :func:`~.base.units_first` order), sorted. On CPU one copy into that order made by NumPy (about
    half the CPU time of torch's for ``[50, 240, 28, 28]``) and sorted in place: the same values as
    :func:`_sort` of the copy, without a second ``[C, M]`` array (37 MB for that batch)."""
    if x.device.type != "cpu":
        return _sort(units_first(x).contiguous())
    a = np.moveaxis(x.numpy(), 1, 0)  # [C, N, ...]: a view
    cols = np.empty(a.shape, a.dtype)  # always a copy: the caller's data stay

    def part(lo: int, hi: int) -> None:
        np.copyto(cols[lo:hi], a[lo:hi])
        cols[lo:hi].reshape(hi - lo, -1).sort(axis=1)

    _by_rows(part, len(cols), cols.size)
    return torch.from_numpy(cols.reshape(len(cols), -1))


class Quantile(Stat):
    """Streaming per-unit quantiles with bounded memory, mergeable across shards.

    ``add(x)`` takes ``x`` of shape ``[N, C]`` (N samples of C units) or ``[N, C, H, W]`` (every
    spatial position is a sample). Values are kept as float32; NaNs are not supported.
    Randomness comes from a ``torch.Generator`` seeded with ``seed`` whose state is saved, so a
    resumed run is bit-identical to an uninterrupted one.
    """

    _merge_ignores = ("seed",)  # shards use different seeds; the merged sketch keeps its own

    def __init__(self, resolution: int = 4096, seed: int = 0, device: Device = None) -> None:
        if resolution < 2 * _MIN_CAPACITY:
            raise ValueError(f"resolution must be at least {2 * _MIN_CAPACITY}, got {resolution}")
        self.resolution = int(resolution)
        self.seed = int(seed)
        self.device = as_device(device)
        self.count = 0
        self.num_units: int | None = None
        self._levels: list[torch.Tensor] = []
        self._min: torch.Tensor | None = None
        self._max: torch.Tensor | None = None
        self._rng = torch.Generator().manual_seed(self.seed)
        self._points: tuple[torch.Tensor, torch.Tensor] | None = None  # _cdf_points until the sketch changes

    # -- adding ---------------------------------------------------------------------------------
    def add(self, x: torch.Tensor) -> None:
        """Add samples ``x``: ``[N, C]`` or ``[N, C, H, W]``."""
        # one copy to [C, M]: sorting contiguous rows is ~2x faster than sorting [N, C] columns
        x = x.detach().to(self.device, torch.float32)
        c = units_first(x[:0]).shape[0]  # the shape's check and its error, before any state changes
        m = x.numel() // max(1, c)
        self._init_units(c)
        if m == 0:
            return
        self._points = None
        ordered = _sorted_units(x)
        self._min = torch.minimum(self._min, ordered[:, 0])
        self._max = torch.maximum(self._max, ordered[:, -1])
        self.count += m
        if m <= self._capacities()[0]:
            self._push(0, ordered)
        else:  # a large batch is compacted straight away: one sort instead of two
            self._push(0, self._compact(0, ordered))
        self._compress()

    def _init_units(self, c: int) -> None:
        if self.num_units is None:
            self.num_units = c
            self._min = torch.full((c,), math.inf, device=self.device)
            self._max = torch.full((c,), -math.inf, device=self.device)
            self._levels = [torch.empty(c, 0, device=self.device)]
        elif c != self.num_units:
            raise ValueError(f"Quantile holds {self.num_units} units, got a batch of {c}")

    def _capacities(self) -> list[int]:
        top = len(self._levels) - 1
        return [max(_MIN_CAPACITY, int(self.resolution * _DECAY ** (top - h))) for h in range(len(self._levels))]

    def _compact(self, h: int, ordered: torch.Tensor) -> torch.Tensor:
        """Compact sorted items ``ordered`` ``[C, n]`` of level ``h``; return those that stay.

        A fraction ``PROTECT`` of the level's capacity at each end stays (as in the REQ sketch,
        this makes the tails several times more accurate than the middle); from the rest, every
        ``m``-th item from a random per-unit offset rises ``log2(m)`` levels (weight ``m`` times
        larger), and the ``rest % m`` largest stay.
        """
        size, cap = ordered.shape[1], self._capacities()[h]
        low = high = int(cap * PROTECT)
        middle = size - low - high
        jump = self._jump(h, middle)
        m = 1 << jump
        kept = middle // m
        offset = self._offsets(m, ordered.shape[0]).to(ordered.device)
        index = low + offset[:, None] + m * torch.arange(kept, device=ordered.device)
        self._push(h + jump, ordered.gather(1, index))
        return torch.cat([ordered[:, :low], ordered[:, low + kept * m :]], dim=1)

    def _offsets(self, m: int, units: int) -> torch.Tensor:
        """A random start in ``[0, m)`` for each of ``units`` units: ``[units]``."""
        return torch.randint(m, (units,), generator=self._rng)

    def _jump(self, h: int, middle: int) -> int:
        """How many levels ``middle`` items compacted at level ``h`` rise: at least one, and as
        many as keep the promoted items at least half the target level's capacity. A larger
        stride would add one high-weight (large-error) compaction per batch, which KLL's
        schedule makes rare; this keeps the rate of compactions per level as in KLL."""
        caps = self._capacities()
        jump = 1
        while True:
            nxt = jump + 1
            target_cap = caps[h + nxt] if h + nxt < len(caps) else self.resolution
            if (middle >> nxt) < target_cap // 2:
                return jump
            jump = nxt

    def _push(self, level: int, items: torch.Tensor) -> None:
        self._points = None
        while len(self._levels) <= level:
            self._levels.append(self._levels[0].new_empty(self.num_units, 0))
        self._levels[level] = torch.cat([self._levels[level], items], dim=1)

    def _compress(self) -> None:
        h = 0
        while h < len(self._levels):
            if self._levels[h].shape[1] <= self._capacities()[h]:
                h += 1
            else:
                self._levels[h] = self._compact(h, _sort(self._levels[h], runs=True))

    # -- read-outs ------------------------------------------------------------------------------
    def _require_data(self) -> None:
        if self.count == 0:
            raise ValueError("Quantile has no data yet: call add() first")

    def minmax(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact per-unit minimum and maximum, each ``[C]``."""
        self._require_data()
        return self._min.clone(), self._max.clone()

    def _cdf_points(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sorted sketch values ``[C, M + 2]`` and their mid-ranks in [0, 1] (min and max added); kept
        until the sketch changes (a dissection reads its thresholds, then the report's levels: one sort)."""
        if self._points is None or self._points[0].device != self._min.device:
            self._points = self._sorted_points()
        return self._points

    def _sorted_points(self) -> tuple[torch.Tensor, torch.Tensor]:
        values = torch.cat(self._levels, dim=1)
        weights = torch.cat(
            [torch.full((lv.shape[1],), 2.0**h, dtype=torch.float64) for h, lv in enumerate(self._levels)]
        ).to(values.device)
        values, order = torch.sort(values, dim=1)
        w = weights[order]
        cum = torch.cumsum(w, dim=1)
        ranks = (cum - w / 2) / cum[:, -1:]
        c = values.shape[0]
        zeros, ones = ranks.new_zeros(c, 1), ranks.new_ones(c, 1)
        values = torch.cat([self._min[:, None], values, self._max[:, None]], dim=1)
        return values, torch.cat([zeros, ranks, ones], dim=1)

    def quantiles(self, q: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
        """Per-unit quantiles: ``[C]`` for a scalar ``q``, else ``[C, len(q)]``; q in [0, 1]."""
        self._require_data()
        qt = torch.as_tensor(q, dtype=torch.float64)
        scalar = qt.dim() == 0
        qt = qt.reshape(-1)
        if ((qt < 0) | (qt > 1)).any():
            raise ValueError(f"quantiles must lie in [0, 1], got {qt.tolist()}")
        values, ranks = self._cdf_points()
        qq = qt.to(ranks.device).expand(ranks.shape[0], -1).contiguous()
        hi = torch.searchsorted(ranks, qq, right=True).clamp(1, ranks.shape[1] - 1)
        lo = hi - 1
        r_lo, r_hi = ranks.gather(1, lo), ranks.gather(1, hi)
        v_lo, v_hi = values.gather(1, lo).double(), values.gather(1, hi).double()
        frac = ((qq - r_lo) / (r_hi - r_lo).clamp_min(1e-300)).clamp(0, 1)
        out = (v_lo + frac * (v_hi - v_lo)).to(torch.float32)
        return out[:, 0] if scalar else out

    def cdf(self, values: torch.Tensor) -> torch.Tensor:
        """Estimated fraction of samples <= ``values`` per unit: ``[C]`` or ``[C, V]`` -> same."""
        self._require_data()
        points, ranks = self._cdf_points()
        v = values.to(points.device, torch.float32)
        vv = (v[:, None] if v.dim() == 1 else v).contiguous()
        hi = torch.searchsorted(points, vv, right=True).clamp(1, points.shape[1] - 1)
        lo = hi - 1
        p_lo, p_hi = points.gather(1, lo).double(), points.gather(1, hi).double()
        frac = ((vv.double() - p_lo) / (p_hi - p_lo).clamp_min(1e-300)).clamp(0, 1)
        out = ranks.gather(1, lo) + frac * (ranks.gather(1, hi) - ranks.gather(1, lo))
        out = torch.where(vv < points[:, :1], torch.zeros_like(out), out)
        out = torch.where(vv >= points[:, -1:], torch.ones_like(out), out)
        return out[:, 0] if v.dim() == 1 else out

    # -- contract -------------------------------------------------------------------------------
    def _config(self) -> dict[str, int]:
        return {"resolution": self.resolution, "seed": self.seed}

    def _data(self) -> dict[str, torch.Tensor]:
        data = {
            "count": torch.tensor(self.count, dtype=torch.int64),
            "rng": self._rng.get_state(),
        }
        if self.num_units is not None:
            data.update(min=self._min, max=self._max)
            data.update({f"level.{h}": lv for h, lv in enumerate(self._levels)})
        return data

    def _set_data(self, arrays: dict[str, torch.Tensor]) -> None:
        self._points = None
        self.count = int(arrays["count"])
        self._rng.set_state(arrays["rng"].cpu().to(torch.uint8))
        if "min" not in arrays:
            self.num_units, self._levels, self._min, self._max = None, [], None, None
            return
        self._min, self._max = arrays["min"], arrays["max"]
        self.num_units = self._min.shape[0]
        n = sum(1 for k in arrays if k.startswith("level."))
        self._levels = [arrays[f"level.{h}"].float() for h in range(n)]

    def _merge(self, other: Quantile) -> None:
        if other.num_units is None:
            return
        self._points = None
        self._init_units(other.num_units)
        self.count += other.count
        self._min = torch.minimum(self._min, other._min.to(self.device))
        self._max = torch.maximum(self._max, other._max.to(self.device))
        for h, lv in enumerate(other._levels):
            self._push(h, lv.to(self.device))
        self._compress()


class QuantileSlice(Quantile):
    """The part of a :class:`Quantile` sketch that covers units ``[start, stop)`` of ``units``.

        parts = [QuantileSlice(512, a, b) for a, b in [(0, 256), (256, 512)]]  # e.g. one per rank
        for x in batches: [p.add(x) for p in parts]    # x [N, 512, H, W]: every part sees all units
        whole = QuantileSlice.join(parts)              # == Quantile() fed the same batches, bit for bit

    Every unit of a sketch compacts on the same schedule and draws its random offset from one
    generator, so a slice that draws the offsets of all ``units`` and keeps its own is exactly that
    part of the whole sketch: processes can share the sorting of one layer's units and still get
    the single-process sketch (a :meth:`~Quantile.merge` of sketches of different images cannot).
    """

    def __init__(
        self, units: int, start: int, stop: int, resolution: int = 4096, seed: int = 0, device: Device = None
    ) -> None:
        if not 0 <= start < stop <= units:
            raise ValueError(f"need 0 <= start < stop <= units, got {start}, {stop}, {units}")
        super().__init__(resolution, seed, device)
        self.units, self.start, self.stop = units, start, stop

    def add(self, x: torch.Tensor) -> None:
        """Add samples of all units, ``[N, units]`` or ``[N, units, H, W]``; this slice keeps its own."""
        if x.shape[1] != self.units:
            raise ValueError(f"QuantileSlice of {self.units} units got a batch of {x.shape[1]}")
        super().add(x[:, self.start : self.stop])

    def _offsets(self, m: int, units: int) -> torch.Tensor:
        return torch.randint(m, (self.units,), generator=self._rng)[self.start : self.stop]

    def _config(self) -> dict[str, int]:
        return {"units": self.units, "start": self.start, "stop": self.stop, **super()._config()}

    @staticmethod
    def join(parts: Sequence[Quantile]) -> Quantile:
        """One :class:`Quantile` of all units from slices in unit order (as ``QuantileSlice`` or
        loaded from one's state); they must have seen the same batches."""
        first = parts[0]
        whole = Quantile(first.resolution, first.seed, first.device)
        whole.count, whole.num_units = first.count, sum(p.num_units or 0 for p in parts)
        if any(p.count != first.count or len(p._levels) != len(first._levels) for p in parts):
            raise ValueError("slices saw different data: counts or levels differ")
        whole._rng.set_state(first._rng.get_state())
        if first.count:
            whole._min = torch.cat([p._min for p in parts])
            whole._max = torch.cat([p._max for p in parts])
            whole._levels = [torch.cat([p._levels[h] for p in parts]) for h in range(len(first._levels))]
        return whole
