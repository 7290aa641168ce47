"""The label cache: pass 3 reads the planes pass 2 wrote, bit-identical to reading the data set."""

import numpy as np
import pytest

from tests.dissect.test_significance import TableActivations, TableLabels, table_world
from unitscope.dissect import Options, dissect_sources
from unitscope.faults import FaultInjected, armed

ACTS_BYTES = 40 * 7 * 4 * 4 * 4  # table_world's activation cache
OPTS = dict(
    quantile=0.1, iou_threshold=0.1, topk=2, batch_size=8, seed=3, null_draws=6, exemplar_images=False, progress=False
)


class CountingLabels(TableLabels):
    """Counts the positions whose planes were read from the data set, per pass."""

    def __init__(self, *args):
        super().__init__(*args)
        self.reads = 0

    def load(self, pos):
        self.reads += 1
        return super().load(pos)


def run(tmp_path, name, cache_gb, **kw):
    maps, labels, image_labels, present = table_world()
    src = CountingLabels(labels, image_labels, present)
    d = dissect_sources(TableActivations(maps), src, tmp_path / name, Options(cache_gb=cache_gb, **OPTS, **kw))
    return d.layers["feat"], src


def test_pass3_p_values_equal_with_and_without_the_label_cache(tmp_path):
    with_cache, src = run(tmp_path, "with", 1.0, keep_cache=True)
    assert (tmp_path / "with" / "cache" / "labels" / "complete").exists()
    assert src.reads == 40  # pass 2 alone read the data set's labels: pass 3 read the label cache
    # room for the activations, not the labels: pass 3 reads the data set again
    without, src2 = run(tmp_path, "without", (ACTS_BYTES + 100) / 2**30, keep_cache=True)
    assert not (tmp_path / "without" / "cache" / "labels" / "complete").exists()
    assert (tmp_path / "without" / "cache" / "complete").exists()
    assert src2.reads == 80
    none, _ = run(tmp_path, "none", 0.0)  # no cache at all
    assert np.isfinite(with_cache.p_value).sum() == 3
    for other in (without, none):
        assert np.array_equal(with_cache.p_value, other.p_value, equal_nan=True)
        assert np.array_equal(with_cache.iou, other.iou)


def test_kill_at_label_write_then_resume_gives_the_uninterrupted_catalog(tmp_path):
    ref, _ = run(tmp_path, "ref", 1.0, checkpoint_every=1)
    with armed("labels.write=3:raise"), pytest.raises(FaultInjected):
        run(tmp_path, "cut", 1.0, checkpoint_every=1)
    assert (tmp_path / "cut" / "cache" / "labels" / "rows.safetensors").exists()
    again, src = run(tmp_path, "cut", 1.0, checkpoint_every=1)
    assert src.reads < 40  # the resume counted only the batches left, and pass 3 read the label cache
    assert np.array_equal(ref.p_value, again.p_value, equal_nan=True)
    assert np.array_equal(ref.iou, again.iou)
    import sqlite3

    def rows(name):
        with sqlite3.connect(tmp_path / name / "catalog.sqlite") as db:
            return db.execute("select * from dissection order by 1, 2, 3").fetchall()

    assert rows("ref") == rows("cut")


class CheapLabels(CountingLabels):
    cheap = True  # read from stored arrays (as a Broden folder's label store): no worker for them


def test_cheap_labels_are_read_in_this_process_without_a_worker_and_count_the_same(tmp_path, monkeypatch):
    from unitscope.dissect import engine

    workers = {}
    tally = engine.tally

    def recording(stat, items, **kw):
        workers[kw["name"]] = kw["num_workers"]
        return tally(stat, items, **kw)

    monkeypatch.setattr(engine, "tally", recording)
    maps, labels, image_labels, present = table_world()
    results = {}
    for name, kind in (("forked", CountingLabels), ("cheap", CheapLabels)):
        src = kind(labels, image_labels, present)
        opts = Options(cache_gb=1.0, num_workers=1, **OPTS)
        results[name] = dissect_sources(TableActivations(maps), src, tmp_path / name, opts).layers["feat"], src
        assert workers["pass1"] == 1  # the model's pass keeps its worker
        # pass 2 reads maps from the cache: a worker only where the labels need decoding; pass 3 reads
        # the label cache too, so nothing at all
        assert (workers["pass2"], workers["pass3"]) == ((1, 0) if kind is CountingLabels else (0, 0))
    assert results["forked"][1].reads == 0  # pass 2 read every plane in the worker, pass 3 the label cache
    assert results["cheap"][1].reads == 40  # and here in this process
    (forked, _), (cheap, _) = results["forked"], results["cheap"]
    assert np.isfinite(cheap.p_value).sum() == 3
    assert np.array_equal(forked.p_value, cheap.p_value, equal_nan=True) and np.array_equal(forked.iou, cheap.iou)
