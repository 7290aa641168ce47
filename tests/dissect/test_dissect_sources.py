"""The engine behind its two interfaces: a generator-like activation source (z vectors, no images)
and a segmenter-like label source (labels from what the batch produced) reuse dissect_sources."""

import sqlite3

import numpy as np
import torch

from unitscope.dissect import ActivationSource, LabelSource, Options, dissect_sources


def render(z: torch.Tensor) -> torch.Tensor:
    """A toy generator's 'scene' per z: label 1 (a 3x3 square) at a z-dependent place, label 2 on
    one row; ``[N, 8, 8]``."""
    out = torch.zeros(len(z), 8, 8, dtype=torch.long)
    for i, v in enumerate(z.tolist()):
        y, x = v % 5, (3 * v) % 5
        out[i, 7 - v % 3] = 2
        out[i, y : y + 3, x : x + 3] = 1
    return out


class ZActivations(ActivationSource):
    layers = ["gen"]
    model_name = "toy-generator"

    def __len__(self):
        return 12

    def shapes(self):
        return {"gen": (3, 8, 8)}

    def load(self, pos):
        return {"z": torch.tensor(pos)}

    def activations(self, batch):
        scene = render(batch["z"])
        batch["scene"] = scene  # what a segmenter would look at
        maps = torch.stack([(scene == 1).float(), 2 * (scene == 2).float(), torch.zeros(len(scene), 8, 8)], 1)
        return {"gen": maps}

    def key(self):
        return {"model": "toy-generator", "images": 12}


class SegmenterLabels(LabelSource):
    label_names = ["-", "square", "stripe"]
    label_category = torch.tensor([-1, 0, 0])
    categories = ["object"]
    needs_forward = True  # it labels the generator's output, so pass 2 runs the generator

    def load(self, pos):
        return {}

    def label_batch(self, batch):
        n = len(batch["scene"])
        return batch["scene"][:, None], torch.zeros(n, 0, dtype=torch.long), torch.ones(n, 1, dtype=torch.bool)


def test_generator_and_segmenter_sources_reuse_the_engine(tmp_path):
    opts = Options(quantile=0.3, topk=2, batch_size=5, exemplar_images=False, progress=False)
    result = dissect_sources(ZActivations(), SegmenterLabels(), tmp_path / "run", opts)
    d = result.layers["gen"]
    assert [d.concept(u) for u in range(3)] == ["square", "stripe", None]
    assert d.best_iou.tolist() == [1.0, 1.0, 0.0] and d.detectors.tolist() == [True, True, False]
    with sqlite3.connect(tmp_path / "run" / "catalog.sqlite") as db:
        rows = db.execute("SELECT model, unit, concept, iou FROM dissection ORDER BY unit").fetchall()
    assert rows == [
        ("toy-generator", 0, "square", 1.0),
        ("toy-generator", 1, "stripe", 1.0),
        ("toy-generator", 2, None, 0.0),
    ]
    # streamed in batches of 5 through the cache = one batch without it
    again = dissect_sources(
        ZActivations(),
        SegmenterLabels(),
        tmp_path / "one",
        Options(quantile=0.3, topk=2, batch_size=12, cache_gb=0, exemplar_images=False, progress=False),
    )
    assert np.array_equal(again.layers["gen"].iou, d.iou)
