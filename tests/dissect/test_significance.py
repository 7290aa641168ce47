"""Significance of dissection IoUs: the permutation null, p-values, BH, images needed; the two
denominator rules against a brute-force NumPy count."""

import numpy as np
import pytest
import torch

from unitscope.dissect.iou import count_batch, count_orders, in_batch_orders
from unitscope.dissect.results import summarise
from unitscope.dissect.significance import images_needed, significant, t_sf
from unitscope.stats import IoUCounts, NullIoUCounts


def blob_world(n: int, seed: int):
    """``n`` 16x16 label maps, each with one square of label 1 or 2 (category 0) at a random place."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, 1, 16, 16), dtype=np.int64)
    for i in range(n):
        y, x, s = rng.integers(0, 10), rng.integers(0, 10), rng.integers(3, 7)
        labels[i, 0, y : y + s, x : x + s] = rng.integers(1, 3)
    return labels


def dissect_blobs(n: int, draws: int = 8, batch: int = 30, seed: int = 0, noise_quantile: float = 0.95):
    """Unit 0 fires on label 1 (planted, 8x8 maps of the 16x16 labels), unit 1 is noise."""
    labels = torch.from_numpy(blob_world(n, seed))
    rng = np.random.default_rng(seed + 1)
    planted = torch.nn.functional.avg_pool2d((labels[:, :1] == 1).float(), 2)[:, 0]
    noise = torch.from_numpy(rng.random((n, 8, 8)).astype(np.float32))
    acts = torch.stack([planted, noise], 1)  # [N, 2, 8, 8]
    thresholds = torch.tensor([0.5, float(np.quantile(noise.numpy(), noise_quantile))])
    cats = torch.tensor([0, 0, 0])
    real, null = IoUCounts(2, cats, 1), NullIoUCounts(2, cats, 1, draws=draws)
    for s in range(0, n, batch):
        sl = slice(s, s + batch)
        orders = in_batch_orders(len(labels[sl]), draws, seed=1000 * seed + s)
        real_order = torch.arange(len(labels[sl]))
        inter, area, label_area = count_orders(
            acts[sl],
            thresholds,
            labels[sl],
            torch.zeros(len(labels[sl]), 0, dtype=torch.long),
            torch.ones(len(labels[sl]), 1, dtype=torch.bool),
            3,
            [real_order] + orders,
        )
        real.add_counts(inter[0], area[0], label_area)
        null.add_counts(inter[1:], area[1:], label_area)
    d = summarise("feat", (2, 8, 8), thresholds.numpy(), real.iou().numpy(), 0.04, ["-", "a", "b"], ["", "c", "c"])
    d.add_significance(null.iou().numpy(), n, 0.05)
    d.null_iou = null.iou().numpy()
    return d


def test_planted_unit_is_significant_and_noise_unit_is_not():
    d = dissect_blobs(300)
    assert d.concept(0) == "a" and d.best_iou[0] > 0.8
    assert d.p_value[0] < 1e-6
    assert d.p_value[1] > 0.05
    assert d.significant_detectors.tolist() == [True, False]
    assert "1 significant (p < 0.01, BH)" in d.summary()
    # at 30 images, masks of 40% of the pixels meet the blobs with IoU > 0.04 by chance: a
    # "detector" that is not significant
    small = dissect_blobs(30, noise_quantile=0.6)
    assert small.detectors[1] and not small.significant_detectors[1] and small.p_value[1] > 0.05


def test_noise_p_values_are_roughly_uniform():
    ps = np.array([dissect_blobs(60, seed=s).p_value[1] for s in range(12)])
    assert 0.15 < ps.mean() < 0.85 and (ps < 0.01).sum() <= 1


def test_images_needed_warns_small_runs():
    # the noise unit alone (unit 1), masks of a quarter of the pixels: chance IoUs around 0.027
    # stay below 0.04 only with enough images
    small, big = dissect_blobs(30, noise_quantile=0.75), dissect_blobs(300, noise_quantile=0.75)
    need_small = images_needed(small.null_iou[:, 1:], 30, 0.04)
    need_big = images_needed(big.null_iou[:, 1:], 300, 0.04)
    assert need_small > 30 and 0 < need_big < 300
    small.images_needed = need_small
    assert small.too_few_images and f"about {need_small} images are needed" in small.summary()
    # masks of 40%: chance IoU reaches 0.04 however many images there are
    loose = dissect_blobs(30, noise_quantile=0.6)
    assert images_needed(loose.null_iou[:, 1:], 30, 0.04) == -1
    loose.images_needed = -1
    assert "lower --quantile" in loose.summary()


def test_null_orders_are_derangements_and_reproducible():
    a, b = in_batch_orders(7, 3, seed=4), in_batch_orders(7, 3, seed=4)
    for o, p in zip(a, b):
        assert torch.equal(o, p) and not (o == torch.arange(7)).any() and sorted(o.tolist()) == list(range(7))
    assert in_batch_orders(1, 3, seed=0) == []


def test_null_counts_equal_brute_force_on_permuted_labels():
    rng = np.random.default_rng(2)
    acts = torch.from_numpy(rng.normal(size=(5, 3, 4, 4)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 4, size=(5, 1, 8, 8)))
    image_labels = torch.from_numpy(rng.integers(4, 6, size=(5, 1)))
    present = torch.from_numpy(rng.random((5, 2)) < 0.7)
    t = torch.tensor([0.5, 1.0, 0.8])
    order = in_batch_orders(5, 1, seed=3)[0]
    inter, area, _ = count_orders(acts, t, labels, image_labels, present, 6, [order])
    # the same as counting image i's map against image order[i]'s labels directly
    ref = [
        count_batch(
            acts[i : i + 1],
            t,
            labels[order[i] : order[i] + 1],
            image_labels[order[i] : order[i] + 1],
            present[order[i] : order[i] + 1],
            6,
        )
        for i in range(5)
    ]
    assert torch.equal(inter[0], sum(r[0] for r in ref))
    assert torch.equal(area[0], sum(r[1] for r in ref))


def test_t_distribution_and_benjamini_hochberg():
    scipy_stats = pytest.importorskip("scipy.stats")
    t = np.array([-2.0, 0.0, 1.5, 4.0, 12.0])
    for df in (1, 2, 7, 8):
        assert np.allclose(t_sf(t, df), scipy_stats.t.sf(t, df), rtol=1e-9, atol=1e-15)
    p = np.array([0.001, 0.004, 0.03, 0.0005, 0.9])
    # sorted: 0.0005 <= 0.002, 0.001 <= 0.004, 0.004 <= 0.006, 0.03 > 0.008
    assert significant(p, 0.01).tolist() == [True, True, False, True, False]


# -- the denominator rules against brute force ------------------------------------------------------


def brute_unit_area(acts, thresholds, labels, image_labels, present, label_category, rule):
    from tests.dissect.test_dissect import bilinear_numpy

    n, c = acts.shape[:2]
    G = present.shape[1]
    out = np.zeros((c, G), dtype=np.int64)
    for i in range(n):
        for k in range(c):
            mask = bilinear_numpy(acts[i, k], *labels.shape[-2:]) > thresholds[k]
            for g in range(G):
                if rule == "annotated":
                    on = present[i, g]
                else:  # a mask pixel carries a label of category g (image-level labels cover all pixels)
                    in_g = [lab for lab in range(1, len(label_category)) if label_category[lab] == g]
                    on = mask.any() and any(
                        ((labels[i] == lab).any(0) & mask).any() or (image_labels[i] == lab).any() for lab in in_g
                    )
                out[k, g] += mask.sum() * on
    return out


@pytest.mark.parametrize("rule", ["annotated", "overlap"])
def test_denominator_rules_equal_brute_force(rule):
    rng = np.random.default_rng(7)
    n, c, L, G = 6, 4, 7, 3
    acts = rng.normal(size=(n, c, 3, 4)).astype(np.float32)
    labels = np.stack(
        [
            rng.integers(0, 3, size=(n, 9, 12)) * (rng.random((n, 9, 12)) < 0.3),
            rng.integers(3, 5, size=(n, 9, 12)) * (rng.random((n, 9, 12)) < 0.05),
        ],
        1,
    )
    image_labels = rng.integers(5, 7, size=(n, 1)) * (rng.random((n, 1)) < 0.5)
    present = rng.random((n, G)) < 0.8
    label_category = np.array([0, 0, 0, 1, 1, 2, 2])
    thresholds = np.quantile(acts.transpose(1, 0, 2, 3).reshape(c, -1), 0.8, axis=1).astype(np.float32)
    _, unit_area, _ = count_batch(
        torch.from_numpy(acts),
        torch.from_numpy(thresholds),
        torch.from_numpy(labels),
        torch.from_numpy(image_labels),
        torch.from_numpy(present),
        L,
        denominator=rule,
        label_category=torch.from_numpy(label_category),
    )
    ref = brute_unit_area(acts, thresholds, labels, image_labels, present, label_category, rule)
    assert np.array_equal(unit_area.numpy(), ref)
    other = brute_unit_area(
        acts,
        thresholds,
        labels,
        image_labels,
        present,
        label_category,
        "overlap" if rule == "annotated" else "annotated",
    )
    assert not np.array_equal(ref, other)  # the data tells the rules apart


def test_iou_counts_overlap_rule_equals_kernel():
    rng = np.random.default_rng(8)
    masks = torch.from_numpy(rng.random((4, 3, 6, 6)) < 0.2)
    labels = torch.from_numpy(rng.integers(0, 5, size=(4, 1, 6, 6)) * (rng.random((4, 1, 6, 6)) < 0.1))
    cats = torch.tensor([0, 0, 0, 1, 1])
    present = torch.ones(4, 2, dtype=torch.bool)
    s = IoUCounts(3, cats, 2, overlap=True)
    s.add(masks, labels, present)
    # masks as 0/1 maps at label resolution: the kernel's bilinear step is then the identity
    _, ref, _ = count_batch(
        masks.float(),
        torch.full((3,), 0.5),
        labels,
        torch.zeros(4, 0, dtype=torch.long),
        present,
        5,
        denominator="overlap",
        label_category=cats,
    )
    assert torch.equal(s.unit_area, ref)
    assert (s.unit_area < IoUCounts(3, cats, 2).unit_area + 10**9).all()


# -- end to end: the catalog's p_value column and the layers row ---------------------------------------

from tests.dissect.test_dissect import dataset, planted, world  # noqa: E402,F401  (the module's world fixture)


def test_dissection_writes_p_values(world, tmp_path):  # noqa: F811
    import sqlite3

    from tests.dissect.test_dissect import colour_fractions
    from tests.helpers.planted import COLOURS
    from unitscope.dissect import dissect

    model = planted(world)
    q = min(0.45, max(colour_fractions(dataset(world, model), COLOURS).values()) * 1.2)  # masks = colours
    runs = {
        rule: dissect(
            model,
            dataset(world, model),
            ["feat"],
            tmp_path / rule,
            batch_size=8,
            progress=False,
            quantile=q,
            exemplar_images=False,
            denominator=rule,
        )
        for rule in ("annotated", "overlap")
    }
    d = runs["annotated"].layers["feat"]
    assert d.p_value is not None and (d.p_value[:3] < 1e-3).all()  # the three planted colour units
    assert d.significant_detectors[:3].all()
    con = sqlite3.connect(tmp_path / "annotated" / "catalog.sqlite")
    rows = con.execute("SELECT unit, p_value FROM dissection ORDER BY unit").fetchall()
    assert [u for u, _ in rows] == [0, 1, 2] and all(abs(p - d.p_value[u]) < 1e-12 for u, p in rows)
    assert con.execute("SELECT detectors_significant FROM layers").fetchone()[0] == 3
    # the overlap rule counts a unit's area on fewer images: never a lower IoU
    assert (runs["overlap"].layers["feat"].best_iou >= d.best_iou - 1e-12).all()


# -- the null drawn for candidates only (pass 3) equals the null of every unit -------------------------

from unitscope.dissect import (  # noqa: E402
    ActivationSource,
    LabelSource,
    Options,
    dissect_sources,
    significance,  # noqa: E402
)
from unitscope.dissect.significance import null_seed, null_units, unit_p_values  # noqa: E402


class TableActivations(ActivationSource):
    """Fixed maps ``[N, C, 4, 4]``: units 2-3 fire on label 1's square, 4 on label 2's, the rest are noise."""

    layers = ["feat"]
    model_name = "table"

    def __init__(self, maps):
        self.maps = maps

    def __len__(self):
        return len(self.maps)

    def shapes(self):
        return {"feat": tuple(self.maps.shape[1:])}

    def load(self, pos):
        return {"x": self.maps[pos]}

    def activations(self, batch):
        return {"feat": batch["x"]}

    def key(self):
        return {"model": "table", "images": len(self.maps)}


class TableLabels(LabelSource):
    label_names = ["-", "a", "b", "c", "scene-x"]
    label_category = torch.tensor([-1, 0, 0, 0, 1])
    categories = ["object", "scene"]

    def __init__(self, labels, image_labels, present):
        self.labels, self.image_labels, self.present = labels, image_labels, present

    def load(self, pos):
        return {
            "labels": self.labels[pos],
            "image_labels": self.image_labels[pos],
            "category_present": self.present[pos],
        }


def table_world(n=40, c=7, seed=5):
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, 1, 8, 8), dtype=np.int64)
    for i in range(n):
        for lab in (1, 2, 3):
            if rng.random() < 0.6:
                y, x, s = rng.integers(0, 6), rng.integers(0, 6), rng.integers(2, 4)
                labels[i, 0, y : y + s, x : x + s] = lab
    labels = torch.from_numpy(labels)
    pooled = torch.nn.functional.avg_pool2d(torch.stack([(labels[:, 0] == k).float() for k in (1, 2)], 1), 2)
    noise = torch.from_numpy(rng.random((n, c - 3, 4, 4)).astype(np.float32))
    maps = torch.cat(
        [noise[:, :2], pooled[:, :1], pooled[:, :1] * 0.5 + 0.5 * noise[:, 2:3], pooled[:, 1:], noise[:, 2:]], 1
    )
    image_labels = torch.from_numpy((rng.random((n, 1)) < 0.3) * 4)
    present = torch.from_numpy(rng.random((n, 2)) < 0.8)
    return maps, labels, image_labels, present


def full_null(maps, labels, image_labels, present, thresholds, batch, draws, seed, denominator):
    """The null of every unit, as pass 2 counted it before pass 3: every batch, every unit."""
    cats = TableLabels.label_category.clamp(min=0)
    null = NullIoUCounts(maps.shape[1], cats, 2, draws=draws, overlap=denominator == "overlap")
    for s in range(0, len(maps), batch):
        sl = slice(s, s + batch)
        orders = in_batch_orders(len(maps[sl]), draws, null_seed(seed, s))
        null.add_counts(
            *count_orders(
                maps[sl],
                thresholds,
                labels[sl],
                image_labels[sl],
                present[sl],
                5,
                orders,
                denominator=denominator,
                label_category=TableLabels.label_category,
            )
        )
    return null.iou().numpy()


@pytest.mark.parametrize("denominator", ["annotated", "overlap"])
def test_candidate_null_gives_the_full_null_p_values(tmp_path, monkeypatch, denominator):
    maps, labels, image_labels, present = table_world()
    monkeypatch.setattr(significance, "NULL_SAMPLE", 2)  # units 0 and 6 drawn whatever their IoU
    opts = Options(
        quantile=0.1,
        iou_threshold=0.1,
        topk=2,
        batch_size=8,
        seed=3,
        null_draws=6,
        exemplar_images=False,
        progress=False,
        denominator=denominator,
    )
    d = dissect_sources(
        TableActivations(maps), TableLabels(labels, image_labels, present), tmp_path / "run", opts
    ).layers["feat"]
    candidates = d.best_iou > 0.1
    assert np.nonzero(candidates)[0].tolist() == [2, 3, 4]  # the planted units, not the noise
    assert null_units(d.best_iou, 0.1).tolist() == sorted(set(np.nonzero(candidates)[0]) | {0, 6})
    ref = full_null(maps, labels, image_labels, present, torch.from_numpy(d.thresholds), 8, 6, 3, denominator)
    full_p = unit_p_values(d.best_iou, ref)
    assert np.array_equal(d.p_value[candidates], full_p[candidates])  # equal, not close
    assert np.isnan(d.p_value[~candidates]).all()
    assert (d.p_value[3:5] < 1e-4).all()
    # images_needed from the sample equals the full null's over the same units
    assert d.images_needed == images_needed(ref[:, [0, 6]], 40, 0.1) > 0
    # BH reads "not computed" as p = 1: a subset of the full null's significant units
    assert not (significant(d.p_value) & ~significant(full_p)).any()
    # the catalog stores NULL where no p-value was computed
    import sqlite3

    with sqlite3.connect(tmp_path / "run" / "catalog.sqlite") as db:
        rows = dict(db.execute("SELECT unit, p_value FROM dissection").fetchall())
    assert [u for u, p in rows.items() if p is None] == np.nonzero(~candidates)[0].tolist()
    assert all(rows[u] == d.p_value[u] for u in np.nonzero(candidates)[0])


def test_candidate_null_without_the_cache_and_on_resume(tmp_path):
    maps, labels, image_labels, present = table_world()
    labels_src = TableLabels(labels, image_labels, present)
    opts = dict(
        quantile=0.1,
        iou_threshold=0.1,
        topk=2,
        batch_size=8,
        null_draws=4,
        exemplar_images=False,
        progress=False,
        checkpoint_every=1,
    )
    cached = dissect_sources(TableActivations(maps), labels_src, tmp_path / "a", Options(**opts)).layers["feat"]
    uncached = dissect_sources(TableActivations(maps), labels_src, tmp_path / "b", Options(**opts, cache_gb=0)).layers[
        "feat"
    ]
    assert np.array_equal(cached.p_value, uncached.p_value, equal_nan=True)

    from unitscope.faults import FaultInjected, armed

    # stops pass 3 at its third batch (pass 3 reads its labels from the label cache, not label_batch)
    with armed("pass3.batch=3:raise"), pytest.raises(FaultInjected):
        dissect_sources(TableActivations(maps), labels_src, tmp_path / "c", Options(**opts))
    assert (tmp_path / "c" / "pass3" / "tally.checkpoint.rank0.safetensors").exists()
    resumed = dissect_sources(TableActivations(maps), labels_src, tmp_path / "c", Options(**opts)).layers["feat"]
    assert np.array_equal(resumed.p_value, cached.p_value, equal_nan=True)
    # another --iou changes the candidates: pass 3 is redone, pass 2 is not
    other = dissect_sources(
        TableActivations(maps), labels_src, tmp_path / "c", Options(**{**opts, "iou_threshold": 0.05})
    ).layers["feat"]
    assert (~np.isnan(other.p_value)).sum() >= (~np.isnan(cached.p_value)).sum()
    both = ~np.isnan(other.p_value) & ~np.isnan(cached.p_value)
    assert np.array_equal(other.p_value[both], cached.p_value[both])
