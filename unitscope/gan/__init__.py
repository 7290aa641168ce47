"""Generator dissection (GAN Dissection, Bau et al. ICLR 2019; PNAS 2020): a generator's units
against what a segmenter finds in its samples, and what switching them off or on does.

    from unitscope.gan import GeneratorActivations, SegmenterLabels, cache_samples, removal_curve
    acts = GeneratorActivations(generator, ["relu3"], n=10_000, seed=0)   # z from a fixed seed
    result = dissect_sources(acts, SegmenterLabels(segmenter), "runs/gan", Options(quantile=0.01))
    cut = cut_model(generator, "relu3")
    removal_curve(cut, cache_samples(cut, generator, n=1000, seed=1), segmenter, order, "tree").summary()

Modules: ``sources`` (the generator and segmenter as the dissection engine's sources), ``effects``
(removal curves against random units, insertion in context; edits from ``unitscope.edits`` in
tail passes, scored by a pixel-share scorer), ``ace`` (average causal effect: a soft unit mask
optimised to remove or insert a concept, its ranking against IoU's), ``select`` (a greedy causal
ranking: units chosen jointly, each step's set bounded in how much it moves the other objects; a
swap search that repairs or improves a set at a fixed k), ``artifacts`` (units whose
removal makes the least realistic samples more realistic; before/after grids), ``tables`` (their
catalog tables, torch-free: this package loads its modules on first use) and ``run`` (all of it on
a generator dissection's run folder).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unitscope.plugins import lazy_exports

_FROM = {
    **{
        name: "effects"
        for name in (
            "InsertionResult",
            "PixelShares",
            "RemovalResult",
            "cache_samples",
            "insertion_in_context",
            "label_space",
            "removal_curve",
        )
    },
    **{name: "ace" for name in ("AceResult", "RankingComparison", "ace_mask", "compare_rankings", "concept_share")},
    **{name: "select" for name in ("GreedyResult", "SwapResult", "greedy_ranking", "swap_search")},
    "ArtifactResult": "artifacts",
    "artifact_units": "artifacts",
    "segmenter_confidence": "artifacts",
    **{name: "sources" for name in ("GeneratorActivations", "SegmenterLabels", "latents", "to_unit_range")},
}

if TYPE_CHECKING:
    from unitscope.gan.ace import AceResult, RankingComparison, ace_mask, compare_rankings, concept_share
    from unitscope.gan.artifacts import ArtifactResult, artifact_units, segmenter_confidence
    from unitscope.gan.effects import (
        InsertionResult,
        PixelShares,
        RemovalResult,
        cache_samples,
        insertion_in_context,
        label_space,
        removal_curve,
    )
    from unitscope.gan.select import GreedyResult, SwapResult, greedy_ranking, swap_search
    from unitscope.gan.sources import GeneratorActivations, SegmenterLabels, latents, to_unit_range


__getattr__ = lazy_exports(__name__, _FROM)  # PEP 562: a module (and torch) loads with its first name used


__all__ = [
    "GeneratorActivations",
    "SegmenterLabels",
    "latents",
    "to_unit_range",
    "PixelShares",
    "RemovalResult",
    "InsertionResult",
    "cache_samples",
    "removal_curve",
    "insertion_in_context",
    "label_space",
    "AceResult",
    "RankingComparison",
    "ace_mask",
    "compare_rankings",
    "concept_share",
    "GreedyResult",
    "greedy_ranking",
    "SwapResult",
    "swap_search",
    "ArtifactResult",
    "artifact_units",
    "segmenter_confidence",
]
