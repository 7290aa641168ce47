"""Metrics of a model trained on a spurious-cue world: accuracy where the sign agrees with the
scene, where there is none, and where it names another scene.

    from unitscope.audit.organism import cue_metrics
    cue_metrics(create_model("world_scenes_cue"), cache="/tmp/worlds", seed=2, n=2000)
    # {"accuracy_cue_agrees": ..., "accuracy_cue_absent": ..., "accuracy_cue_conflicts": ...,
    #  "conflicts_follow_cue": ...}   (the last: share of conflicting images called the sign's scene)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


@torch.no_grad()
def cue_metrics(
    model: nn.Module,
    cache: str | Path,
    seed: int,
    n: int,
    size: int = 64,
    render_size: int = 64,
    progress: bool = False,
) -> dict[str, float]:
    """The three accuracies on images ``0..n-1`` of world ``seed`` (the same scenes in all three sets)."""
    from unitscope.audit.edit import accuracy, cue_sets
    from unitscope.world.cue import CueSpec, cue_of

    sets = cue_sets(cache, seed, n, size, render_size, progress)
    out = {
        f"accuracy_cue_{k}": accuracy(model, sets[s])
        for k, s in (("agrees", "agree"), ("absent", "clean"), ("conflicts", "conflict"))
    }
    named = torch.tensor([cue_of(CueSpec(1.0, 0.0), seed, i) for i in range(n)])
    model.eval()
    pred = torch.cat([model(sets["conflict"].x[s : s + 500]).argmax(1) for s in range(0, n, 500)])
    out["conflicts_follow_cue"] = float((pred == named).float().mean())
    return out
