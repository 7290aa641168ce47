"""Streaming statistics: equal to one-shot NumPy, round-trip through state dicts and files, merge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from unitscope.bases.pca import Covariance
from unitscope.stats import (
    ClassMeans,
    CombinedStat,
    IoUCounts,
    Moments,
    NullIoUCounts,
    Quantile,
    QuantileSlice,
    Stat,
    TopK,
    load_stat,
    save_stat,
    stat_from_state_dict,
)

LABEL_CATEGORY = torch.tensor([0, 1, 1, 1, 2, 2, 3])  # label 0 = none; 6 labels in 3 categories
NUM_CATEGORIES = 4
UNITS = 5


def batch(i: int, n: int = 6) -> dict[str, torch.Tensor]:
    """Batch ``i`` of a deterministic stream: activations, indices, labels, segmentations."""
    g = torch.Generator().manual_seed(1000 + i)
    # values on a grid of 1/8 so sums are exact in any order, with many ties for TopK
    acts = torch.randint(-16, 17, (n, UNITS, 4, 5), generator=g).float() / 8
    return {
        "acts": acts,
        "index": torch.arange(i * n, (i + 1) * n),
        "y": torch.randint(0, 3, (n,), generator=g),
        "seg": torch.randint(0, len(LABEL_CATEGORY), (n, 2, 4, 5), generator=g),
        "present": torch.rand(n, NUM_CATEGORIES, generator=g) > 0.3,
    }


@dataclass
class Case:
    make: Callable[[], Stat]
    feed: Callable[[Stat, dict[str, torch.Tensor]], None]
    readout: Callable[[Stat], list[torch.Tensor]]
    exact_merge: bool = True


def _feed_iou(s: IoUCounts, b: dict[str, torch.Tensor]) -> None:
    s.add(b["acts"] > 0.5, b["seg"], b["present"])


def _feed_null(s: Stat, b: dict[str, torch.Tensor]) -> None:
    from unitscope.dissect.iou import count_orders, in_batch_orders

    n = len(b["acts"])
    no_image_labels = torch.zeros(n, 0, dtype=torch.long)
    inter, area, label_area = count_orders(
        b["acts"],
        torch.full((UNITS,), 0.5),
        b["seg"],
        no_image_labels,
        b["present"],
        len(LABEL_CATEGORY),
        in_batch_orders(n, 3, int(b["index"][0])),
        denominator="overlap",
        label_category=LABEL_CATEGORY,
    )
    s.add_counts(inter, area, label_area)


CASES: dict[str, Case] = {
    "Quantile": Case(
        lambda: Quantile(resolution=32, seed=7),
        lambda s, b: s.add(b["acts"]),
        lambda s: [s.quantiles([0.1, 0.5, 0.9]), *s.minmax()],
        exact_merge=False,
    ),
    "QuantileSlice": Case(  # units 1-3 of 5: a rank's share of a layer (the join is tested in test_dissect_torchrun)
        lambda: QuantileSlice(UNITS, 1, 4, resolution=32, seed=7),
        lambda s, b: s.add(b["acts"]),
        lambda s: [s.quantiles([0.1, 0.5, 0.9]), *s.minmax()],
        exact_merge=False,
    ),
    "TopK": Case(lambda: TopK(4), lambda s, b: s.add(b["acts"], b["index"]), lambda s: list(s.result())),
    "Moments": Case(Moments, lambda s, b: s.add(b["acts"]), lambda s: [s.mean(), s.variance()], exact_merge=False),
    "IoUCounts": Case(
        lambda: IoUCounts(UNITS, LABEL_CATEGORY, NUM_CATEGORIES),
        _feed_iou,
        lambda s: [s.intersection, s.unit_area, s.label_area, s.iou()],
    ),
    "NullIoUCounts": Case(
        lambda: NullIoUCounts(UNITS, LABEL_CATEGORY, NUM_CATEGORIES, draws=3, overlap=True),
        lambda s, b: _feed_null(s, b),
        lambda s: [s.intersection, s.unit_area, s.label_area, s.iou()],
    ),
    "ClassMeans": Case(
        lambda: ClassMeans(3),
        lambda s, b: s.add(b["acts"].mean(dim=(2, 3)), b["y"]),
        lambda s: [s.mean(), s.count],
    ),
    "Covariance": Case(  # registered by unitscope.bases (imported at the top of this file)
        Covariance, lambda s, b: s.add(b["acts"]), lambda s: [s.mean(), s.covariance()], exact_merge=False
    ),
    "CombinedStat": Case(
        lambda: CombinedStat(top=TopK(2), m=Moments(), q=Quantile(resolution=16)),
        lambda s, b: (s.top.add(b["acts"], b["index"]), s.m.add(b["acts"]), s.q.add(b["acts"])),
        lambda s: [*s.top.result(), s.m.mean(), s.q.quantiles(0.5)],
        exact_merge=False,
    ),
}


def run(case: Case, batches: range) -> Stat:
    stat = case.make()
    for i in batches:
        case.feed(stat, batch(i))
    return stat


def assert_same_state(a: Stat, b: Stat) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert np.array_equal(sa[k].reshape(-1), sb[k].reshape(-1)), k


def test_every_statistic_is_covered() -> None:
    assert set(Stat.registry) == set(CASES)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("how", ["state_dict", "safetensors", "npz"])
def test_round_trip_then_continue_identically(name: str, how: str, tmp_path) -> None:
    case = CASES[name]
    stat = run(case, range(3))
    if how == "state_dict":
        restored = type(stat).from_state_dict(stat.state_dict())
    else:
        save_stat(tmp_path / f"s.{how}", stat)
        restored = load_stat(tmp_path / f"s.{how}")
    assert type(restored) is type(stat)
    assert_same_state(stat, restored)
    for i in range(3, 6):
        case.feed(stat, batch(i))
        case.feed(restored, batch(i))
    assert_same_state(stat, restored)
    for x, y in zip(case.readout(stat), case.readout(restored)):
        assert torch.equal(x, y)


def all_samples(batches: range) -> np.ndarray:
    """Every activation of ``batches`` as samples ``[M, C]`` (each spatial position a sample)."""
    return torch.cat([batch(i)["acts"] for i in batches]).permute(0, 2, 3, 1).reshape(-1, UNITS).numpy()


@pytest.mark.parametrize("name", CASES)
def test_merge_of_shards_equals_one_pass(name: str) -> None:
    case = CASES[name]
    whole = run(case, range(6))
    merged = run(case, range(0, 2)).merge(run(case, range(2, 5))).merge(run(case, range(5, 6)))
    if case.exact_merge:
        for x, y in zip(case.readout(whole), case.readout(merged)):
            assert torch.equal(x, y)
        return
    if name in ("Moments", "Covariance"):  # Chan's merge: equal to float64 rounding
        for x, y in zip(case.readout(whole), case.readout(merged)):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
        return
    # sketches: exact counts and extremes; quantiles within 2 / resolution in rank of the truth
    # (measured: 0.043 at resolution 32, 0.085 at 16, over 720 samples with heavy ties)
    if name == "CombinedStat":
        for x, y in zip(case.readout(whole)[:4], case.readout(merged)[:4]):  # TopK: exact
            assert torch.equal(x, y)
        torch.testing.assert_close(whole.m.mean(), merged.m.mean(), rtol=1e-12, atol=1e-12)
    samples, qs = all_samples(range(6)), [0.1, 0.5, 0.9]
    for stat in (whole, merged):
        q = stat.q if name == "CombinedStat" else stat
        mine = samples[:, q.start : q.stop] if isinstance(q, QuantileSlice) else samples
        assert q.count == 6 * 6 * 20
        lo, hi = q.minmax()
        assert np.array_equal(lo.numpy(), mine.min(0)) and np.array_equal(hi.numpy(), mine.max(0))
        est = q.quantiles(qs)
        for j, level in enumerate(qs):
            assert rank_error(mine, est[:, j].numpy(), level).max() <= 2 / q.resolution, (level, q.resolution)


@pytest.mark.parametrize("name", CASES)
def test_merge_with_an_empty_statistic(name: str) -> None:
    case = CASES[name]
    full = run(case, range(2))
    into_full = run(case, range(2)).merge(case.make())
    into_empty = case.make().merge(run(case, range(2)))
    for a, b, c in zip(case.readout(full), case.readout(into_full), case.readout(into_empty)):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_load_rejects_other_types_and_configs() -> None:
    sd = TopK(3).state_dict()
    with pytest.raises(ValueError, match="k=3"):
        TopK(5).load_state_dict(sd)
    with pytest.raises(ValueError, match="TopK, not a Moments"):
        Moments().load_state_dict(sd)
    with pytest.raises(ValueError, match="different resolution"):
        Quantile(32).merge(Quantile(64))
    assert isinstance(stat_from_state_dict(sd), TopK)


# -- Quantile ---------------------------------------------------------------------------------


def rank_error(samples: np.ndarray, estimate: np.ndarray, q: float) -> np.ndarray:
    """Distance of q from the interval [fraction < estimate, fraction <= estimate], per column."""
    below = (samples < estimate).mean(axis=0)
    at_or_below = (samples <= estimate).mean(axis=0)
    return np.maximum(0.0, np.maximum(below - q, q - at_or_below))


def test_quantile_matches_numpy_within_rank_bound() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(200_000, 2, generator=g), torch.rand(200_000, 2, generator=g) ** 3], 1)
    x[:, 3] = (x[:, 3] * 10).round()  # a discrete unit with heavy ties
    stat = Quantile(resolution=1024)
    for chunk in x.split(7_000):
        stat.add(chunk)
    qs = [0.0, 0.005, 0.25, 0.5, 0.9, 0.995, 1.0]
    # rank error allowed at each q, from the documented accuracy (std ~0.25 / resolution in the
    # tails, ~0.9 / resolution in the middle) and what was measured (max over units: 1.4e-4 at
    # 0.005, 2.8e-4 at 0.995, 1.4e-3 at 0.5 in one pass; 6.4e-4 at 0.5 merged)
    bound = [0.0, 4e-4, 2e-3, 2e-3, 2e-3, 4e-4, 0.0]
    est = stat.quantiles(qs)
    assert est.shape == (4, len(qs))
    for j, q in enumerate(qs):
        assert rank_error(x.numpy(), est[:, j].numpy(), q).max() <= bound[j], q
    lo, hi = stat.minmax()
    assert torch.equal(lo, x.min(0).values) and torch.equal(hi, x.max(0).values)
    assert torch.equal(est[:, 0], lo) and torch.equal(est[:, -1], hi)
    assert stat.quantiles(0.5).shape == (4,)
    assert torch.equal(stat.quantiles(torch.tensor([0.5]))[:, 0], stat.quantiles(0.5))
    # cdf inverts quantiles on the continuous units
    assert (stat.cdf(stat.quantiles(0.9))[:3] - 0.9).abs().max() < 1e-6  # measured 5e-9
    # memory stays bounded: about 3 * resolution items per unit however long the stream
    assert sum(level.shape[1] for level in stat._levels) < 3.5 * 1024
    # three shards merged are as accurate as one pass
    shards = [Quantile(resolution=1024, seed=s) for s in range(3)]
    for i, chunk in enumerate(x.split(7_000)):
        shards[i % 3].add(chunk)
    merged = shards[0].merge(shards[1]).merge(shards[2])
    assert merged.count == x.shape[0]
    est = merged.quantiles(qs)
    for j, q in enumerate(qs):
        assert rank_error(x.numpy(), est[:, j].numpy(), q).max() <= bound[j], q


def test_quantile_is_deterministic_given_its_seed() -> None:
    x = torch.randn(50_000, 3, generator=torch.Generator().manual_seed(1))
    a, b, c = Quantile(64, seed=1), Quantile(64, seed=1), Quantile(64, seed=2)
    for s in (a, b, c):
        for chunk in x.split(999):
            s.add(chunk)
    assert_same_state(a, b)
    assert not torch.equal(a.quantiles(0.5), c.quantiles(0.5))


def test_quantile_accepts_nchw_as_samples_per_position() -> None:
    x = torch.randn(10, 3, 4, 4)
    a, b = Quantile(64), Quantile(64)
    a.add(x)
    b.add(x.permute(0, 2, 3, 1).reshape(-1, 3))
    assert torch.equal(a.quantiles([0.2, 0.7]), b.quantiles([0.2, 0.7]))
    with pytest.raises(ValueError, match="holds 3 units"):
        a.add(torch.randn(5, 4))
    with pytest.raises(ValueError, match="no data"):
        Quantile().quantiles(0.5)


def test_quantile_sorts_a_copy_of_each_batch_as_torch_sorts_its_units(monkeypatch) -> None:
    """Each batch is copied to units-first order and sorted in place (NumPy on CPU): the values torch
    sorts, the caller's batch untouched (also where the units-first view needs no copy), and the
    sketch bit for bit the one of sorting ``units_first(x)`` out of place."""
    from unitscope.stats import quantile
    from unitscope.stats.base import units_first

    g = torch.Generator().manual_seed(4)
    batches = [
        torch.randn(7, 3, generator=g),
        torch.randn(5, 4, 3, 2, generator=g),
        torch.randn(1, 4, 3, 3, generator=g),  # units_first is a view of it
        torch.randn(6, 8, 3, 3, generator=g)[:, 2:6],  # not contiguous
        torch.randn(2, 4, 5, 5, generator=g).to(memory_format=torch.channels_last),
        torch.randn(3, 4, 5, 5, generator=g).relu(),  # ties at 0
    ]
    for x in batches:
        before = x.clone()
        assert torch.equal(quantile._sorted_units(x), torch.sort(units_first(x), dim=1).values)
        assert torch.equal(x, before)
    new, old = Quantile(64, seed=3), Quantile(64, seed=3)
    for x in batches[1:]:
        new.add(x)
    monkeypatch.setattr(quantile, "_sorted_units", lambda x: quantile._sort(units_first(x).contiguous()))
    for x in batches[1:]:
        old.add(x)
    assert_same_state(new, old)


def test_quantile_merges_its_levels_runs_to_the_state_a_full_sort_gives(monkeypatch) -> None:
    """A level is a few sorted runs end to end, merged by NumPy's stable sort: the same rows as the
    SIMD sort of them, and a sketch fed many batches bit for bit the one that sorts its levels afresh."""
    from unitscope.stats import quantile

    g = torch.Generator().manual_seed(5)
    runs = torch.cat([torch.sort(torch.randn(6, n, generator=g), dim=1).values for n in (40, 25, 33)], dim=1)
    assert torch.equal(quantile._sort(runs, runs=True), torch.sort(runs, dim=1).values)
    batches = [torch.randn(50, 6, 4, 4, generator=g).relu() for _ in range(12)]  # ties at 0; levels compact
    merged, fresh = Quantile(64, seed=2), Quantile(64, seed=2)
    for x in batches:
        merged.add(x)
    monkeypatch.setattr(quantile, "_sort", lambda x, runs=False: torch.sort(x, dim=1).values)
    for x in batches:
        fresh.add(x)
    assert_same_state(merged, fresh)


def test_quantile_sorts_its_rows_in_threads_to_the_same_sketch(monkeypatch) -> None:
    """Within ``sort_threads(3)`` the batch copies and the levels' sorts run in three parts on three
    threads; the sketch is bit for bit the one sorted on one thread, and the setting ends with the block."""
    import threading

    from unitscope.stats import quantile

    monkeypatch.setattr(quantile, "_SPLIT_MIN", 1)  # split even these small arrays
    threads: set[int] = set()
    real = quantile._by_rows

    def spy(fn, rows, size):
        real(lambda lo, hi: (threads.add(threading.get_ident()), fn(lo, hi)), rows, size)

    monkeypatch.setattr(quantile, "_by_rows", spy)
    g = torch.Generator().manual_seed(6)
    batches = [torch.randn(20, 6, 5, 5, generator=g).relu() for _ in range(10)]  # ties at 0; levels compact
    split, one = Quantile(64, seed=1), Quantile(64, seed=1)
    with quantile.sort_threads(3):
        for x in batches:
            split.add(x)
    assert len(threads) == 3
    threads.clear()
    for x in batches:
        one.add(x)
    assert threads == {threading.get_ident()}  # back to this thread alone after the block
    assert_same_state(split, one)


def test_quantile_read_outs_are_kept_until_the_sketch_changes() -> None:
    """The sorted sketch behind ``quantiles`` and ``cdf`` is made once and made again after an
    ``add``, a ``merge`` or a load: every read-out equals a fresh sketch's."""
    g = torch.Generator().manual_seed(5)
    xs = [torch.randn(400, 3, generator=g) * (i + 1) for i in range(3)]
    q, levels = Quantile(32), [0.1, 0.5, 0.995]
    q.add(xs[0])
    first = q.quantiles(levels)
    assert torch.equal(q.quantiles(levels), first) and q._points is not None
    q.add(xs[1])
    other = Quantile(32, seed=7)
    other.add(xs[2])
    q.merge(other)
    fresh = Quantile(32)
    fresh.load_state_dict(q.state_dict())
    assert not torch.equal(q.quantiles(levels), first)
    for s in (q, fresh):
        values, ranks = s._sorted_points()
        assert torch.equal(s._cdf_points()[0], values) and torch.equal(s._cdf_points()[1], ranks)
    assert torch.equal(q.quantiles(levels), fresh.quantiles(levels))
    assert torch.equal(q.cdf(first[:, 1]), fresh.cdf(first[:, 1]))
    again = Quantile(32)
    again.add(xs[2])
    fresh.load_state_dict(again.state_dict())  # another sketch loaded over a read one: its own read-outs
    assert torch.equal(fresh.quantiles(levels), again.quantiles(levels))


@pytest.mark.slow
def test_quantile_rank_error_at_0995_over_ten_million_samples() -> None:
    """The dissection threshold: rank error <= 1.5e-4 at q = 0.995 over 10**7 samples per unit,
    also when the stream is sketched in two shards and merged (documented std 0.25 / 4096 = 6e-5;
    measured at most 7.5e-5 over these four distributions)."""

    def chunk(i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(i)
        z = torch.randn(100_000, 4, generator=g)
        return torch.stack([z[:, 0], z[:, 1].exp(), z[:, 2].abs() ** 3, -torch.rand(100_000, generator=g).log()], 1)

    whole, shards = Quantile(), [Quantile(seed=1), Quantile(seed=2)]
    for i in range(100):
        x = chunk(i)
        whole.add(x)
        shards[i % 2].add(x)
    merged = shards[0].merge(shards[1])
    estimates = torch.stack([whole.quantiles(0.995), merged.quantiles(0.995)])  # [2, 4]
    at_or_below = torch.zeros(2, 4, dtype=torch.int64)
    for i in range(100):  # regenerate the stream instead of holding 160 MB
        x = chunk(i)
        at_or_below += (x[None] <= estimates[:, None, :]).sum(dim=1)
    error = (at_or_below.double() / 10**7 - 0.995).abs()
    assert error.max() <= 1.5e-4, error


# -- exact statistics against brute force ------------------------------------------------------


def test_topk_matches_argsort_with_locations_and_ties() -> None:
    batches = [batch(i) for i in range(5)]
    stat = TopK(7)
    for b in batches:
        stat.add(b["acts"], b["index"])
    values, image, y, x = stat.result()
    acts = torch.cat([b["acts"] for b in batches]).numpy()  # [N, C, H, W], many ties
    n = acts.shape[0]
    per_image = acts.reshape(n, UNITS, -1).max(axis=2)
    for c in range(UNITS):
        order = np.lexsort((np.arange(n), -per_image[:, c]))[:7]  # value desc, then index asc
        assert np.array_equal(image[c].numpy(), order)
        assert np.array_equal(values[c].numpy(), per_image[order, c])
        for j, img in enumerate(order):
            flat = acts[img, c].reshape(-1)
            pos = int(np.argmax(flat))  # first maximum in row-major order
            assert (y[c, j].item(), x[c, j].item()) == divmod(pos, acts.shape[3])
    assert values.shape == (UNITS, 7)
    two_d = TopK(3)
    two_d.add(torch.tensor([[1.0, 5.0], [3.0, 5.0]]), torch.tensor([10, 4]))
    vals, img, _, _ = two_d.result()
    assert vals.tolist() == [[3.0, 1.0], [5.0, 5.0]] and img.tolist() == [[4, 10], [4, 10]]


def test_topk_first_maximum_of_capped_maps_and_nans() -> None:
    """Maps capped at 6 (plateaus: many positions at the maximum, rows long enough for the vector
    kernels) and maps with NaNs: the value and first position of each image's maximum are argmax's
    (a NaN counts as the maximum, its first position recorded)."""
    g = torch.Generator().manual_seed(4)
    for h, w in [(28, 28), (14, 14), (7, 7), (1, 33)]:
        acts = (torch.randn(6, 5, h, w, generator=g) * 4).clamp(0, 6)
        acts[0, 0] = 6.0  # the whole map at the cap: position (0, 0)
        acts[1, 1, -1, -1] = float("nan")
        acts[2, 1, h // 2, 0] = float("nan")
        acts[2, 1, -1, -1] = float("nan")
        stat = TopK(6)
        stat.add(acts, torch.arange(6))
        values, image, y, x = stat.result()
        flat = acts.flatten(2)
        pos = flat.argmax(dim=2)  # [N, C]: the first maximum (NaN first)
        want = flat.gather(2, pos[..., None])[..., 0]
        for c in range(5):
            for j in range(6):
                i = int(image[c, j])
                assert (int(y[c, j]), int(x[c, j])) == divmod(int(pos[i, c]), w), (h, w, c, i)
                assert torch.equal(values[c, j], want[i, c]) or (values[c, j].isnan() and want[i, c].isnan())
        assert (int(y[0, list(image[0]).index(0)]), int(x[0, list(image[0]).index(0)])) == (0, 0)


def test_moments_match_numpy() -> None:
    x = torch.randn(3000, 4, dtype=torch.float64) * torch.tensor([1.0, 10.0, 1e-3, 5.0]) + 1e4
    stat = Moments()
    for chunk in x.split(701):
        stat.add(chunk)
    assert stat.count == 3000
    np.testing.assert_allclose(stat.mean().numpy(), x.numpy().mean(0), rtol=1e-13)
    np.testing.assert_allclose(stat.variance().numpy(), x.numpy().var(0, ddof=1), rtol=1e-9)
    np.testing.assert_allclose(stat.variance(unbiased=False).numpy(), x.numpy().var(0), rtol=1e-9)
    np.testing.assert_allclose(stat.std().numpy(), x.numpy().std(0, ddof=1), rtol=1e-9)


def test_iou_counts_match_brute_force() -> None:
    batches = [batch(i) for i in range(3)]
    stat = IoUCounts(UNITS, LABEL_CATEGORY, NUM_CATEGORIES)
    for b in batches:
        _feed_iou(stat, b)
    masks = torch.cat([b["acts"] > 0.5 for b in batches]).numpy()
    seg = torch.cat([b["seg"] for b in batches]).numpy()
    present = torch.cat([b["present"] for b in batches]).numpy()
    num_labels = len(LABEL_CATEGORY)
    inter = np.zeros((UNITS, num_labels), np.int64)
    unit_area = np.zeros((UNITS, NUM_CATEGORIES), np.int64)
    label_area = np.zeros(num_labels, np.int64)
    for n in range(masks.shape[0]):
        for label in range(1, num_labels):
            has = (seg[n] == label).any(axis=0)  # [H, W], a label in two planes counts once
            label_area[label] += has.sum()
            for c in range(UNITS):
                inter[c, label] += (masks[n, c] & has).sum()
        for c in range(UNITS):
            unit_area[c] += masks[n, c].sum() * present[n]
    assert np.array_equal(stat.intersection.numpy(), inter)
    assert np.array_equal(stat.unit_area.numpy(), unit_area)
    assert np.array_equal(stat.label_area.numpy(), label_area)
    union = unit_area[:, LABEL_CATEGORY.numpy()] + label_area - inter
    expected = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    np.testing.assert_allclose(stat.iou().numpy(), expected, rtol=1e-15)
    assert (stat.iou()[:, 0] == 0).all() and inter.sum() > 0
    again = IoUCounts(UNITS, LABEL_CATEGORY, NUM_CATEGORIES)
    again.add_counts(torch.from_numpy(inter), torch.from_numpy(unit_area), torch.from_numpy(label_area))
    assert torch.equal(again.iou(), stat.iou())
    with pytest.raises(ValueError, match=r"\[N, K, H, W\]"):
        stat.add(
            torch.zeros(2, UNITS, 4, 5, dtype=torch.bool), torch.zeros(2, 1, 3, 3).long(), torch.zeros(2, 4).bool()
        )


def test_class_means_match_numpy() -> None:
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(500, 6, generator=g), torch.randint(0, 4, (500,), generator=g)
    stat = ClassMeans(5)  # class 4 never appears
    for xs, ys in zip(x.split(64), y.split(64)):
        stat.add(xs, ys)
    mean = stat.mean().numpy()
    for k in range(4):
        np.testing.assert_allclose(mean[k], x.double().numpy()[y.numpy() == k].mean(0), rtol=1e-12)
    assert np.isnan(mean[4]).all()
    assert stat.count.tolist() == np.bincount(y.numpy(), minlength=5).tolist()
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        stat.add(x[:2], torch.tensor([0, 5]))


def test_combined_stat_prefixes_keys_and_rebuilds() -> None:
    stat = CombinedStat(a=TopK(2), b=Moments())
    stat.a.add(torch.ones(2, 3), torch.arange(2))
    stat["b"].add(torch.ones(2, 3))
    sd = stat.state_dict()
    assert {"a.config.k", "a.values", "b.mean", "stat"} <= set(sd)
    rebuilt = stat_from_state_dict(sd)
    assert isinstance(rebuilt, CombinedStat) and set(rebuilt) == {"a", "b"}
    with pytest.raises(ValueError, match="statistics"):
        CombinedStat(a=TopK(2)).load_state_dict(sd)
    with pytest.raises(AttributeError, match="has no statistic 'c'"):
        stat.c
