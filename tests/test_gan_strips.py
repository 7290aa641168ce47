"""A generator dissection through the sources alone: the segmenter's labels are cached in pass 1,
so pass 2 and 3 never run the generator (same tallies as without a cache), and its units get
exemplar strips of generated samples with the unit's region outlined (issue 23 item 5)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from unitscope.dissect import Options, dissect_sources
from unitscope.dissect.engine import _Run
from unitscope.gan import GeneratorActivations, SegmenterLabels

sys.path.insert(0, str(Path(__file__).parent))
from gan_models import door_segmenter, toy_generator  # noqa: E402

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
