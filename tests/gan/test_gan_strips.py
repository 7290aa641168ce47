"""A generator dissection through the sources alone: the segmenter's labels are cached in pass 1,
so pass 2 and 3 never run the generator (same tallies as without a cache), and its units get
exemplar strips of generated samples with the unit's region outlined (issue 23 item 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers.gan_models import door_segmenter, toy_generator  # noqa: E402
from unitscope.dissect import Options, dissect_sources
from unitscope.dissect.engine import _Run
from unitscope.gan import GeneratorActivations, SegmenterLabels

OPTS = dict(quantile=0.05, topk=3, batch_size=50, null_draws=4, exemplar_images=False, progress=False)


class Counting(GeneratorActivations):
    """Counts the batches the generator ran on."""

    calls = 0

    def activations(self, batch):
        self.calls += 1
        return super().activations(batch)


def _dissect(run_dir: Path, monkeypatch=None, **kw):
    acts = Counting(toy_generator(), ["feat"], n=200, seed=0)
    per_pass: dict[str, int] = {}
    if monkeypatch is not None:
        for name in ("pass2", "pass3"):

            def counted(self, thresholds, _name=name, _step=getattr(_Run, name)):
                before = acts.calls
                _step(self, thresholds)
                per_pass[_name] = acts.calls - before

            monkeypatch.setattr(_Run, name, counted)
    result = dissect_sources(acts, SegmenterLabels(door_segmenter()), run_dir, Options(**{**OPTS, **kw}))
    return result.layers["feat"], acts.calls, per_pass


def test_pass1_caches_the_segmenters_labels_so_pass2_never_runs_the_generator(tmp_path, monkeypatch):
    cached, calls, per_pass = _dissect(tmp_path / "cached", monkeypatch, keep_cache=True)
    assert per_pass == {"pass2": 0, "pass3": 0} and calls == 4  # 200 samples in batches of 50: pass 1 alone
    assert (tmp_path / "cached" / "cache" / "labels" / "complete").exists()
    monkeypatch.undo()
    plain, plain_calls, _ = _dissect(tmp_path / "plain", cache_gb=0.0)  # no cache: every pass runs the generator
    assert plain_calls == 12
    assert cached.concept(0) == "door" and cached.best_iou[0] == pytest.approx(1.0)
    assert np.array_equal(cached.iou, plain.iou) and np.array_equal(cached.thresholds, plain.thresholds)
    assert np.array_equal(cached.p_value, plain.p_value, equal_nan=True)
    # a rerun with another quantile redoes pass 2 from the kept caches: still no generator
    _, calls, per_pass = _dissect(tmp_path / "cached", monkeypatch, keep_cache=True, quantile=0.1)
    assert per_pass["pass2"] == 0 and calls == 0


def test_generator_units_get_strips_of_samples_with_their_region_outlined(tmp_path):
    from PIL import Image

    from unitscope.dissect.exemplars import _MIN_THUMB
    from unitscope.gan.sources import latents

    d, _, _ = _dissect(tmp_path / "run", exemplar_images=True, null_draws=0)
    strip = np.asarray(Image.open(tmp_path / "run" / "images" / "l0" / "unit0000.jpg"), dtype=np.float32)
    size = _MIN_THUMB  # the toy generator's 4x4 samples, drawn as 64 px tiles
    assert strip.shape == (size, 3 * (size + 2), 3)
    with __import__("sqlite3").connect(tmp_path / "run" / "catalog.sqlite") as db:
        rows = dict(db.execute("SELECT unit, path FROM unit_images").fetchall())
        top = [r[0] for r in db.execute("SELECT image FROM exemplars WHERE unit = 0 ORDER BY rank")]
        concept = db.execute("SELECT unit, path FROM concept_images").fetchall()
    assert rows == {0: "images/l0/unit0000.jpg", 1: "images/l0/unit0001.jpg"}
    assert concept == [(0, "images/l0/unit0000_concept.jpg")]  # the door detector's ground truth: the segmenter's
    # tile 0: sample top[0]; its door cells (z > 1.5 on a wall row) are inside the unit's region, drawn
    # as they are (red); the sky row far from them is dimmed; the region's edge is outlined in yellow
    a = latents(200, 0, (16, 1, 1))[top[0]].reshape(4, 4)
    cell = size // 4
    doors = [(y, x) for y in (2, 3) for x in range(4) if a[y, x] > 1.5]
    assert doors
    for y, x in doors:
        px = strip[y * cell + cell // 2, x * cell + cell // 2]
        assert px[0] > 150 and px[0] > px[1] + 60 and px[0] > px[2] + 60, (y, x, px)  # (blurred by the resize)
    sky = np.array([0.2, 0.4, 0.9]) * 255 * 0.3 + 20  # the sky colour through the dimming table
    for x in range(4):
        assert np.abs(strip[cell // 2, x * cell + cell // 2] - sky).max() < 15
    tile = strip[:, :size]
    outline = (tile[..., 0] > 190) & (tile[..., 1] > 190)  # yellow (JPEG halves its chroma): nothing else is as bright
    assert outline.sum() > 2 * cell and not outline[:cell].any()
    # the public exemplars: the run kept no cache, so the maps come from the generator (the source)
    import torch

    import unitscope

    acts = GeneratorActivations(toy_generator(), ["feat"], n=200, seed=0)
    with pytest.raises(ValueError, match="kept no activation cache"):
        unitscope.exemplars(tmp_path / "run", "feat", 0, k=3)
    ex = unitscope.exemplars(tmp_path / "run", "feat", 0, k=3, source=acts)
    assert ex.positions.tolist() == top  # pictures are 8-bit: the samples to the nearest 1/255
    assert torch.allclose(ex.images, (acts.images(top) * 255).round() / 255, atol=1e-6)
    doors = door_segmenter().segment(ex.images)["object"] == 3  # [3, 4, 4]: 4x4 samples, 4x4 maps
    assert ex.threshold == 0.0 and torch.equal(ex.masks, doors) and doors.any()
    # the same strips from the sources alone (no cache: the generator and segmenter run again)
    _dissect(tmp_path / "plain", exemplar_images=True, null_draws=0, cache_gb=0.0)
    for name in ("unit0000.jpg", "unit0001.jpg", "unit0000_concept.jpg"):
        assert (tmp_path / "plain/images/l0" / name).read_bytes() == (tmp_path / "run/images/l0" / name).read_bytes()
