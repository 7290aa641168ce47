"""Network Dissection: the counting kernel against brute force, planted units, resume, bad input."""

import warnings

import numpy as np
import pytest
import torch

from unitscope.dissect.iou import count_batch


def bilinear_numpy(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Reference bilinear upsampling (half-pixel centres, edges clamped), written out by hand."""
    in_h, in_w = a.shape

    def axis(n_out, n_in):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, wy = axis(out_h, in_h)
    x0, x1, wx = axis(out_w, in_w)
    top = a[y0][:, x0] * (1 - wx) + a[y0][:, x1] * wx
    bottom = a[y1][:, x0] * (1 - wx) + a[y1][:, x1] * wx
    return top * (1 - wy)[:, None] + bottom * wy[:, None]


def brute_force_iou(acts, thresholds, labels, image_labels, present, label_category, num_labels):
    n, c = acts.shape[:2]
    s = labels.shape[-2:]
    inter = np.zeros((c, num_labels))
    unit_area = np.zeros((c, present.shape[1]))
    label_area = np.zeros(num_labels)
    for i in range(n):
        for lab in range(1, num_labels):
            lmask = (labels[i] == lab).any(0) | (image_labels[i] == lab).any()
            label_area[lab] += lmask.sum()
        for k in range(c):
            mask = bilinear_numpy(acts[i, k], *s) > thresholds[k]
            unit_area[k] += mask.sum() * present[i]
            for lab in range(1, num_labels):
                lmask = (labels[i] == lab).any(0) | (image_labels[i] == lab).any()
                inter[k, lab] += (mask & lmask).sum()
    union = unit_area[:, label_category] + label_area - inter
    return inter, unit_area, label_area, np.where(union > 0, inter / np.maximum(union, 1), 0)


def test_counts_equal_brute_force():
    rng = np.random.default_rng(0)
    n, c, L, G = 6, 5, 7, 3
    acts = rng.normal(size=(n, c, 3, 4)).astype(np.float32)
    # labels 1-4 are pixel labels on two planes (category 0 and 1), 5-6 image-level (category 2)
    labels = np.stack(
        [rng.integers(0, 3, size=(n, 9, 12)), rng.integers(0, 5, size=(n, 9, 12)) * (rng.random((n, 9, 12)) < 0.5)], 1
    )
    # labels 1 and 2 can stand on both planes at one pixel: they must count once
    image_labels = rng.integers(5, 7, size=(n, 1)) * (rng.random((n, 1)) < 0.7)
    present = rng.random((n, G)) < 0.8
    label_category = np.array([0, 0, 0, 1, 1, 2, 2])
    thresholds = np.quantile(acts.transpose(1, 0, 2, 3).reshape(c, -1), 0.8, axis=1).astype(np.float32)

    inter, unit_area, label_area = count_batch(
        torch.from_numpy(acts),
        torch.from_numpy(thresholds),
        torch.from_numpy(labels),
        torch.from_numpy(image_labels),
        torch.from_numpy(present),
        L,
    )
    ref_inter, ref_unit, ref_label, ref_iou = brute_force_iou(
        acts, thresholds, labels, image_labels, present, label_category, L
    )
    assert np.array_equal(inter.numpy(), ref_inter)
    assert np.array_equal(unit_area.numpy(), ref_unit)
    assert np.array_equal(label_area.numpy()[1:], ref_label[1:])
    union = unit_area.numpy()[:, label_category] + label_area.numpy() - inter.numpy()
    iou = np.where(union > 0, inter.numpy() / np.maximum(union, 1), 0)
    assert np.abs(iou[:, 1:] - ref_iou[:, 1:]).max() < 1e-6
    assert (ref_iou[:, 1:] > 0).sum() > 10  # the data really exercises the counts


def test_counts_equal_brute_force_with_overlapping_labels():
    """A label repeated in an image's cell, or given both image-level and in a pixel plane, is one
    region: the whole image, counted once."""
    rng = np.random.default_rng(5)
    n, c, L, G = 5, 4, 6, 2
    acts = rng.normal(size=(n, c, 3, 3)).astype(np.float32)
    labels = rng.integers(0, L, size=(n, 2, 6, 6))
    image_labels = np.array([[3, 3, 0], [4, 3, 4], [5, 0, 0], [1, 1, 1], [0, 0, 0]])
    assert (labels[1] == 3).any() and (labels[0] == 3).any()  # image-level labels also on pixels
    present = np.ones((n, G), dtype=bool)
    label_category = np.array([0, 0, 0, 1, 1, 1])
    thresholds = np.quantile(acts.transpose(1, 0, 2, 3).reshape(c, -1), 0.6, axis=1).astype(np.float32)
    inter, unit_area, label_area = count_batch(
        torch.from_numpy(acts),
        torch.from_numpy(thresholds),
        torch.from_numpy(labels),
        torch.from_numpy(image_labels),
        torch.from_numpy(present),
        L,
    )
    ref_inter, ref_unit, ref_label, _ = brute_force_iou(
        acts, thresholds, labels, image_labels, present, label_category, L
    )
    assert np.array_equal(inter.numpy(), ref_inter)
    assert np.array_equal(unit_area.numpy(), ref_unit)
    assert np.array_equal(label_area.numpy()[1:], ref_label[1:])
    # image 0 carries label 3 twice and on pixels: 36 labelled pixels there, not 72 or more
    one = count_batch(
        torch.from_numpy(acts[:1]),
        torch.from_numpy(thresholds),
        torch.from_numpy(labels[:1]),
        torch.from_numpy(image_labels[:1]),
        torch.from_numpy(present[:1]),
        L,
    )[2]
    assert int(one[3]) == 36


def test_counts_stream_equals_one_shot():
    rng = np.random.default_rng(1)
    acts = torch.from_numpy(rng.normal(size=(8, 3, 4, 4)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 4, size=(8, 1, 8, 8)))
    image_labels = torch.zeros(8, 0, dtype=torch.long)
    present = torch.ones(8, 1, dtype=torch.bool)
    t = torch.tensor([0.5, 1.0, 1.5])
    whole = count_batch(acts, t, labels, image_labels, present, 4)
    parts = [count_batch(acts[s], t, labels[s], image_labels[s], present[s], 4) for s in (slice(0, 3), slice(3, 8))]
    for w, a, b in zip(whole, *parts):
        assert torch.equal(w, a + b)


# -- end to end on a tiny probe world ---------------------------------------------------------------

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

PLANTED = str(Path(__file__).parents[1] / "helpers" / "planted.py")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from unitscope.world import make_world

    return make_world(tmp_path_factory.mktemp("world") / "w64", n=24, size=64, seed=3, workers=1, progress=False)


def planted(world):
    from unitscope.models import create_model

    return create_model(f"{PLANTED}:colour_units", world=str(world))


def dataset(world, model):
    from unitscope.data import BrodenDataset
    from unitscope.models import get_info

    return BrodenDataset(world, transform=get_info(model).transform())


def colour_fractions(ds, names):
    counts = {c: 0 for c in names}
    total = 0
    plane = int((ds.plane_category == ds.categories.index("color")).nonzero()[0, 0])
    for i in range(len(ds)):
        colour_plane = ds[i]["labels"][plane]
        total += colour_plane.numel()
        for c in names:
            counts[c] += int((colour_plane == ds.label_index(c)).sum())
    return {c: counts[c] / total for c in names}


def test_planted_units_get_their_concept(world, tmp_path):
    from tests.helpers.planted import COLOURS
    from unitscope.dissect import dissect

    model = planted(world)
    ds = dataset(world, model)
    fractions = colour_fractions(ds, COLOURS)
    assert min(fractions.values()) > 0.002, fractions
    # the top-q mask of each unit is then exactly its colour's pixels (T_k falls on the zeros)
    q = min(0.45, max(fractions.values()) * 1.2)
    result = dissect(model, ds, ["feat"], tmp_path / "run", quantile=q, topk=4, batch_size=8, progress=False)
    d = result.layers["feat"]
    assert [d.concept(u) for u in range(3)] == list(COLOURS)
    assert all(d.label_categories[int(d.best_label[u])] == "color" for u in range(3))
    assert d.best_iou.min() > 0.9, d.best_iou
    with sqlite3.connect(tmp_path / "run" / "catalog.sqlite") as db:
        rows = db.execute("SELECT unit, concept, category, is_detector FROM dissection ORDER BY unit").fetchall()
        assert rows == [(0, "red", "color", 1), (1, "green", "color", 1), (2, "blue", "color", 1)]
        per_cat = db.execute(
            "SELECT category, concept FROM dissection_category WHERE unit = 0 AND category = 'color'"
        ).fetchall()
        assert per_cat == [("color", "red")]
        n_ex = db.execute("SELECT COUNT(*) FROM exemplars WHERE unit = 0").fetchone()[0]
        assert n_ex == 4
    # exemplar strips exist, one per unit, and one with each unit's concept mask
    assert len(list((tmp_path / "run" / "images").rglob("unit000?.jpg"))) == 3
    assert len(list((tmp_path / "run" / "images").rglob("unit000?_concept.jpg"))) == 3
    # the report shows the same numbers
    from unitscope.report import write_report

    write_report(tmp_path / "run")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    (layer,) = report["layers"]
    summary, cards = layer["parts"]["dissection"], [c["parts"]["dissection"] for c in layer["cards"]]
    assert (summary["units"], summary["detectors"], summary["unique_concepts"]) == (3, 3, 3)
    assert sorted(card["concept"] for card in cards) == sorted(COLOURS)
    assert all((tmp_path / "run" / card["image"]).exists() for card in cards)
    assert all((tmp_path / "run" / card["mask_image"]).exists() for card in cards)
    # in a notebook, the result shows its summary and each unit's strip inline
    assert "feat: 3 of 3 units are detectors, covering 3 concepts" in repr(result)
    page = result._repr_html_()
    assert "feat: 3 of 3 units are detectors, 3 unique concepts" in page
    assert page.count("data:image/jpeg;base64,") == 3 and all(c in page for c in COLOURS)


def test_streaming_equals_one_shot_and_cache_equals_recompute(world, tmp_path):
    from unitscope.dissect import dissect

    model = planted(world)
    ds = dataset(world, model)
    runs = {}
    for name, kw in {
        "one-shot": dict(batch_size=len(ds)),
        "streamed": dict(batch_size=5),
        "no-cache": dict(batch_size=5, cache_gb=0),
    }.items():
        r = dissect(model, ds, ["feat"], tmp_path / name, quantile=0.05, topk=3, progress=False, **kw)
        runs[name] = r.layers["feat"]
    ref = runs["one-shot"]
    for name in ("streamed", "no-cache"):
        assert np.allclose(runs[name].iou, ref.iou, atol=1e-6), name
        assert np.array_equal(runs[name].best_label, ref.best_label)


def catalog_dump(path):
    from unitscope.catalog import Catalog

    with Catalog(path) as cat:
        return cat.dump()


def _batches_done(folder: Path) -> int:
    """How many batches this pass's checkpoint covers."""
    from unitscope.runs import load_arrays

    return int(load_arrays(folder / "tally.checkpoint.rank0.safetensors")["tally.batches"].reshape(-1)[0])


def _dissection_rows(run: Path) -> int:
    with sqlite3.connect(run / "catalog.sqlite") as con:
        return con.execute("SELECT COUNT(*) FROM dissection").fetchone()[0]


def _stopped_in_pass1_after(batches: int):
    def check(run: Path) -> None:
        assert _batches_done(run / "pass1") == batches and not (run / "pass1" / "tally.done.json").exists()
        assert not (run / "pass2").exists() and not (run / "catalog.sqlite").exists()

    return check


def _stopped_in_pass2_after(batches: int, cache: bool):
    def check(run: Path) -> None:
        assert (run / "pass1" / "tally.done.json").exists() and not (run / "pass2" / "tally.done.json").exists()
        assert _batches_done(run / "pass2") == batches and not (run / "catalog.sqlite").exists()
        assert (run / "cache" / "complete").exists() == cache

    return check


def _stopped_in_pass3_after(batches: int):
    def check(run: Path) -> None:
        assert (run / "pass2" / "tally.done.json").exists() and not (run / "pass3" / "tally.done.json").exists()
        assert _batches_done(run / "pass3") == batches and not (run / "catalog.sqlite").exists()

    return check


def _rows_recorded_for(images: int):
    """Killed after a cache write that no flush recorded: the record holds the checkpointed rows only."""

    def check(run: Path) -> None:
        from unitscope.runs import load_arrays

        _stopped_in_pass1_after(images // 2)(run)
        rows = load_arrays(run / "cache" / "rows.safetensors")["rows"]
        assert rows[:images].all() and not rows[images:].any()

    return check


def _stopped_at_the_catalog(run: Path) -> None:
    assert (run / "pass1" / "tally.done.json").exists() and (run / "pass2" / "tally.done.json").exists()
    assert _dissection_rows(run) == 0  # the transaction never committed: no half catalog


# 24 images in batches of 2, a checkpoint after every batch
KILLS = {
    "pass1.batch": ("pass1.batch=3:kill", [], _stopped_in_pass1_after(2)),  # batch 3 ran, never checkpointed
    "cache.write": ("cache.write=3:kill", [], _rows_recorded_for(4)),
    "pass2.checkpoint": ("pass2.checkpoint.after=2:kill", [], _stopped_in_pass2_after(2, cache=True)),
    "pass2.no-cache": ("pass2.checkpoint.before=4:kill", ["--cache-gb", "0"], _stopped_in_pass2_after(3, cache=False)),
    "pass3.checkpoint": ("pass3.checkpoint.after=1:kill", [], _stopped_in_pass3_after(1)),
    "catalog.commit": ("catalog.commit=1:kill", [], _stopped_at_the_catalog),
}


@pytest.mark.slow
@pytest.mark.parametrize("where", list(KILLS))
def test_killed_run_resumes_to_identical_catalog(world, tmp_path, where):
    """A run SIGKILLed at a fault point (no sleeps, no polling) stopped exactly there, and its rerun
    gives the catalog of an uninterrupted run."""
    spec, extra, stopped_there = KILLS[where]
    env = {**os.environ, "PLANTED_WORLD": str(world), "PYTHONPATH": str(Path(__file__).parents[2])}
    env.pop("UNITSCOPE_FAULT", None)
    cmd = [
        sys.executable,
        "-m",
        "unitscope.cli",
        "dissect",
        "--model",
        f"{PLANTED}:colour_units",
        "--data",
        str(world),
        "--layers",
        "feat",
        "--quantile",
        "0.05",
        "--topk",
        "3",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "1",
        "--no-progress",
        "--no-report",
        "--rotations",
        "1",
        *extra,
    ]
    ref = tmp_path / "ref"
    subprocess.run(cmd + ["--out", str(ref)], env=env, check=True, capture_output=True)

    run = tmp_path / "killed"
    killed = subprocess.run(
        cmd + ["--out", str(run)], env={**env, "UNITSCOPE_FAULT": spec}, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    point, hit = spec.split(":")[0].split("=")
    assert f"unitscope fault: {point} hit {hit} on rank 0: kill" in killed.stderr
    stopped_there(run)
    subprocess.run(cmd + ["--out", str(run)], env=env, check=True, capture_output=True)
    assert catalog_dump(run / "catalog.sqlite") == catalog_dump(ref / "catalog.sqlite")


def test_bad_input_fails_clearly(world, tmp_path):
    from unitscope.dissect import check_layers, dissect
    from unitscope.layers import LayerNotFoundError

    model = planted(world)
    ds = dataset(world, model)
    with pytest.raises(LayerNotFoundError, match="feat"):
        dissect(model, ds, ["fea"], tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="without a spatial map"):
        check_layers(model, ["head"], (3, 64, 64))

    nan_model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))
    with torch.no_grad():
        nan_model[0].bias[1] = float("nan")
    with pytest.raises(ValueError, match=r"layer '0' produced NaN/inf activations on images \[0, 1"):
        dissect(nan_model, ds, ["0"], tmp_path / "b", progress=False)

    from unitscope.data import BrodenDataset

    (tmp_path / "broken").mkdir()
    with pytest.raises((FileNotFoundError, ValueError), match="broken"):
        BrodenDataset(tmp_path / "broken")


def test_images_of_another_size_are_resized(world, tmp_path):
    """The world is 64 px; a model that wants 96 px gets resized images through its transform."""
    from unitscope.data import BrodenDataset
    from unitscope.dissect import dissect
    from unitscope.models import ModelInfo

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.ReLU())
    torch.manual_seed(0)
    object.__setattr__(conv, "unitscope_info", ModelInfo(name="conv", input_size=(3, 96, 96)))
    ds = BrodenDataset(world, transform=conv.unitscope_info.transform())
    assert ds[0]["image"].shape == (3, 96, 96)
    result = dissect(conv, ds, ["1"], tmp_path / "r", topk=2, progress=False)
    assert result.layers["1"].shape == (4, 48, 48) and result.layers["1"].iou.shape[0] == 4


def test_rotations_rotate_the_basis(world, tmp_path):
    from unitscope.dissect import dissect, random_rotation, rotate

    r = random_rotation(5, seed=1)
    assert torch.allclose(r.t() @ r, torch.eye(5), atol=1e-5)
    assert torch.equal(r, random_rotation(5, seed=1)) and not torch.equal(r, random_rotation(5, seed=2))
    acts = torch.randn(2, 3, 4, 4)
    perm = torch.eye(3)[:, [2, 0, 1]]  # unit j of the rotated basis is old unit [2, 0, 1][j]
    assert torch.equal(rotate(acts, perm), acts[:, [2, 0, 1]])

    # planted units are axis-aligned detectors: a random rotation mixes them, and they lose IoU
    from tests.helpers.planted import COLOURS

    model = planted(world)
    ds = dataset(world, model)
    q = min(0.45, max(colour_fractions(ds, COLOURS).values()) * 1.2)
    result = dissect(
        model, ds, ["feat"], tmp_path / "run", quantile=q, topk=2, rotations=3, progress=False, exemplar_images=False
    )
    rows = result.rotations["feat"]
    d = result.layers["feat"]
    assert rows[0] == (3, 3) and d.best_iou.min() > 0.95
    assert len(rows) == 4 and len(result.rotated["feat"]) == 3
    for r, rd in enumerate(result.rotated["feat"], start=1):
        assert rd.best_iou.mean() < d.best_iou.mean() - 0.05, (r, rd.best_iou)  # measured: 0.81, 0.61, 0.91 vs 0.98
        assert rows[r] == (int(rd.detectors.sum()), rd.unique_concepts)
    assert min(uc for _, uc in rows[1:]) < 3  # some rotation no longer separates the three colours
    with sqlite3.connect(tmp_path / "run" / "catalog.sqlite") as db:
        got = db.execute("SELECT rotation, detectors, unique_concepts FROM rotations ORDER BY rotation").fetchall()
    assert got == [(i, det, uc) for i, (det, uc) in enumerate(rows)]


def test_transformer_layer_is_dissected_as_a_map(world, tmp_path):
    import timm

    from unitscope.data import BrodenDataset
    from unitscope.dissect import dissect
    from unitscope.models import ModelInfo

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64).eval()
    object.__setattr__(vit, "unitscope_info", ModelInfo(name="vit", input_size=(3, 64, 64)))
    ds = BrodenDataset(world, transform=vit.unitscope_info.transform())
    result = dissect(vit, ds, ["blocks.1"], tmp_path / "run", topk=2, progress=False, exemplar_images=False)
    d = result.layers["blocks.1"]
    assert d.shape == (192, 4, 4) and d.iou.shape == (192, len(ds.label_names))
    # 24 images x 16 patches: a few units have no position strictly above their top-0.5% level
    assert (d.best_iou > 0).sum() > 150


def test_detector_rule_is_strictly_above_the_threshold():
    from unitscope.dissect import summarise as _summarise

    iou = np.array([[0, 0.04, 0.01], [0, 0.01, 0.0401], [0, 0.0, 0.0]])
    d = _summarise("l", (3, 1, 1), np.zeros(3), iou, 0.04, ["-", "a", "b"], ["", "x", "y"])
    assert d.detectors.tolist() == [False, True, False]  # IoU > 0.04, as in the paper and the report
    assert [d.concept(u) for u in range(3)] == ["a", "b", None]


def test_a_unit_that_never_fires_gets_no_concept(world, tmp_path):
    """Unit 1 is 0 everywhere, so its map never exceeds its threshold: no concept, NULL in the catalog."""
    from unitscope.dissect import dissect
    from unitscope.models import ModelInfo

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1))
    with torch.no_grad():
        conv[0].weight[:] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).view(2, 3, 1, 1)
        conv[0].bias.zero_()
    object.__setattr__(conv, "unitscope_info", ModelInfo(name="conv", input_size=(3, 64, 64)))
    from unitscope.data import BrodenDataset

    ds = BrodenDataset(world, transform=conv.unitscope_info.transform())
    d = dissect(conv, ds, ["0"], tmp_path / "run", quantile=0.2, topk=2, progress=False, exemplar_images=False).layers[
        "0"
    ]
    assert d.thresholds[1] == 0 and (d.iou[1] == 0).all()
    assert d.concept(0) is not None and d.concept(1) is None and not d.detectors[1]
    with sqlite3.connect(tmp_path / "run" / "catalog.sqlite") as db:
        rows = db.execute("SELECT unit, concept, category, iou, is_detector FROM dissection ORDER BY unit").fetchall()
        per_cat = db.execute(
            "SELECT COUNT(*) FROM dissection_category WHERE unit = 1 AND concept IS NOT NULL"
        ).fetchone()
    assert rows[0][1] is not None and rows[1] == (1, None, None, 0.0, 0)
    assert per_cat == (0,)


def small_run(model, ds, run_dir, **settings):
    """A quick dissection of the tiny conv net's two layers: no strips, no p-values."""
    from unitscope.dissect import dissect

    return dissect(
        model,
        ds,
        ["relu1", "relu2"],
        run_dir,
        quantile=0.02,
        topk=3,
        batch_size=8,
        progress=False,
        exemplar_images=False,
        null_draws=0,
        **settings,
    )


def test_mixed_precision_keeps_the_labels_and_float32_statistics(world, tmp_path):
    """bfloat16 / float16 autocast of the forward pass: the maps reach the statistics as float32,
    really differ from float32 (autocast ran), and every unit keeps its label and detector verdict.
    The same run folder switches precision by redoing both passes (not refused as another run)."""
    from tests.helpers.tiny_conv import tiny_conv
    from unitscope.dissect import ModelActivations, label_agreement

    model = tiny_conv()
    ds = dataset(world, model)
    batch = {"image": torch.stack([ds[i]["image"] for i in range(4)]), "index": torch.arange(4), "pos": torch.arange(4)}
    ref_maps = ModelActivations(model, ds, ["relu2"]).activations(batch)["relu2"]
    runs = {}
    for precision in ("float32", "bfloat16", "float16"):
        maps = ModelActivations(model, ds, ["relu2"], precision=precision).activations(batch)["relu2"]
        assert maps.dtype == torch.float32
        err = float((maps - ref_maps).abs().max() / ref_maps.abs().max())
        assert (err == 0) == (precision == "float32") and err < 0.02, (precision, err)
        runs[precision] = small_run(model, ds, tmp_path / "run", precision=precision)
    for precision in ("bfloat16", "float16"):
        for layer in ("relu1", "relu2"):
            agree = label_agreement(runs["float32"].layers[layer], runs[precision].layers[layer])
            assert agree["same_label"] == 1.0 and agree["same_detectors"] == 1.0, (precision, layer, agree)
            assert 0 < agree["max_threshold_rel"] < 0.01 and agree["max_iou_diff"] < 0.02, (precision, layer, agree)
    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16, float16, got 'half'"):
        ModelActivations(model, ds, ["relu2"], precision="half")


def test_channels_last_gives_the_same_maps_and_falls_back_where_the_model_needs_contiguous(
    world, tmp_path, monkeypatch
):
    """memory_format: "auto" feeds a convolutional model channels_last on the CPU (the convolutions
    really see that layout) and hands back contiguous maps equal to the contiguous layout's (integer
    weights and images: sums exact in any order); a model without 2-D convolutions stays contiguous,
    and one whose forward pass needs contiguous input (a ``view`` of a 4-D map) falls back with a
    warning, as does one that fails there on its own check of the strides or silently reads a
    channels_last map as contiguous (other maps on the probe's images); forcing channels_last on
    any of them fails clearly, and a model that fails in both layouts gets no word on the layout.
    The run's key names the layout, and a run folder switches layout by redoing its passes, with
    the same labels."""
    from tests.helpers.tiny_conv import tiny_conv
    from unitscope.dissect import ModelActivations, label_agreement

    model = tiny_conv()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.round(p * 4))
    ds = dataset(world, model)
    seen = []
    hook = model.conv1.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    images = torch.randint(-3, 4, (4, 3, 64, 64)).float()  # integers: every sum exact
    batch = {"image": images, "index": torch.arange(4), "pos": torch.arange(4)}
    maps = {}
    # auto: channels_last where oneDNN runs the convolutions (torch.backends.mkldnn; a build without it: contiguous)
    auto = "channels_last" if torch.backends.mkldnn.is_available() else "contiguous"
    for rule in ("auto", "channels_last", "contiguous"):
        acts = ModelActivations(model, ds, ["relu1", "relu2"], memory_format=rule)
        got = auto if rule == "auto" else rule
        assert acts.memory_format() == got
        acts.values()  # its own forward passes (the layers' shapes and values) before the batch's
        seen.clear()
        maps[rule] = acts.activations(batch)
        assert seen == [got == "channels_last"]
        assert all(m.is_contiguous() for m in maps[rule].values())
        assert ("memory_format" in acts.key()) == (got == "channels_last")
    hook.remove()
    for rule in ("auto", "channels_last"):
        for layer in ("relu1", "relu2"):
            assert torch.equal(maps[rule][layer], maps["contiguous"][layer]), (rule, layer)

    pooled = torch.nn.Sequential(torch.nn.AvgPool2d(2), torch.nn.ReLU())
    object.__setattr__(pooled, "unitscope_info", model.unitscope_info)
    assert ModelActivations(pooled, ds, ["1"]).memory_format() == "contiguous"
    with monkeypatch.context() as m:  # convolutions not run by oneDNN: not measured, left as they are
        m.setattr(torch.backends.mkldnn, "is_available", lambda: False)
        assert ModelActivations(model, ds, ["relu2"]).memory_format() == "contiguous"

    class Flattens(torch.nn.Module):  # a view of a 4-D map: not possible on channels_last strides
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(4, 4, 1)

        def forward(self, x):
            y = self.conv1(x)
            return self.conv2(y.view(len(y), -1).view(y.shape))

    class Asserts(Flattens):  # a check of the strides: an AssertionError, not torch's RuntimeError
        def forward(self, x):
            if not x.is_contiguous():  # a plain raise: pytest rewrites a test module's asserts
                raise AssertionError("contiguous input expected")
            return self.conv2(self.conv1(x))

    class Misreads(Flattens):  # a kernel that reads the storage as if contiguous: other maps, no error
        def forward(self, x):
            y = self.conv1(x)
            return self.conv2(y.new_empty(0).set_(y.untyped_storage(), y.storage_offset(), y.shape))

    class Fails(Flattens):  # on a batch, in either layout (the layers' check runs one image): not
        def forward(self, x):  # the layout's doing, and the passes raise it
            if len(x) > 1:
                raise KeyError("no batches here")
            return self.conv2(self.conv1(x))

    for cls, problem in [
        (Flattens, r"fails on channels_last input \(RuntimeError: view size"),
        (Asserts, r"fails on channels_last input \(AssertionError: contiguous input expected\)"),
        (Misreads, r"gives other maps on channels_last input \(at conv2\)"),
    ]:
        odd = cls().eval()
        object.__setattr__(odd, "unitscope_info", model.unitscope_info)
        with pytest.warns(UserWarning, match=problem + ".*, so it runs on contiguous input"):
            acts = ModelActivations(odd, ds, ["conv2"])
            assert acts.memory_format() == "contiguous"
        plain = ModelActivations(odd, ds, ["conv2"], memory_format="contiguous").activations(batch)["conv2"]
        assert torch.equal(acts.activations(batch)["conv2"], plain), cls.__name__
        with pytest.raises(ValueError, match=problem + ".*memory_format='contiguous'"):
            ModelActivations(odd, ds, ["conv2"], memory_format="channels_last").memory_format()
    fails = Fails().eval()
    object.__setattr__(fails, "unitscope_info", model.unitscope_info)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no word on the layout: the model's own error comes from the passes
        for rule in ("auto", "channels_last"):
            acts = ModelActivations(fails, ds, ["conv2"], memory_format=rule)
            assert acts.memory_format() == ("contiguous" if rule == "auto" else rule)
            with pytest.raises(KeyError, match="no batches here"):
                acts.activations(batch)
    with pytest.raises(ValueError, match="memory_format must be one of auto, channels_last, contiguous, got 'nhwc'"):
        ModelActivations(model, ds, ["relu2"], memory_format="nhwc")

    runs = {}
    for rule in ("channels_last", "contiguous"):  # one folder: the second redoes the passes, not refused
        runs[rule] = small_run(model, ds, tmp_path / "run", memory_format=rule)
    for layer in ("relu1", "relu2"):
        agree = label_agreement(runs["channels_last"].layers[layer], runs["contiguous"].layers[layer])
        assert agree["same_label"] == 1.0 and agree["same_detectors"] == 1.0, (layer, agree)
        assert agree["max_threshold_rel"] < 1e-5 and agree["max_iou_diff"] < 1e-3, (layer, agree)


def test_label_agreement_counts_units():
    from unitscope.dissect import LayerDissection, label_agreement

    def layer(best_label, best_iou, thresholds):
        c = len(best_label)
        return LayerDissection(
            "l",
            (c, 1, 1),
            np.array(thresholds, float),
            np.zeros((c, 5)),
            np.array(best_label),
            np.array(best_iou),
            0.04,
            [str(i) for i in range(5)],
            ["c"] * 5,
        )

    a = layer([1, 2, 3, 4], [0.10, 0.05, 0.01, 0.20], [1.0, 2.0, 4.0, 1.0])
    b = layer([1, 3, 3, 2], [0.12, 0.05, 0.06, 0.02], [1.0, 2.0, 5.0, 1.5])
    # unit 0 agrees; 1 changes label as a detector; 2 becomes a detector; 3 stops being one
    assert label_agreement(a, b) == {
        "units": 4,
        "same_label": 0.5,
        "same_detectors": 0.25,
        "detectors_a": 3,
        "detectors_b": 3,
        "max_iou_diff": pytest.approx(0.18),
        "max_threshold_rel": pytest.approx(0.5),
    }
