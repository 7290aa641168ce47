"""A generator dissection's causal analyses, written to its run folder's catalog (``unitscope gan``).

    from unitscope.gan.run import Settings, analyse
    done = analyse("runs/gan", generator, segmenter, Settings(layer="relu2", concept="sky", insert=["window"]))
    done["removal"].summary()

Stages, each skipped when the catalog already holds its rows for the same settings (``gan_effects``,
so an interrupted run resumes at the stage it was in):

- ``removal``: the concept's top k units by the dissection's IoU zeroed, against k random units
  (:func:`unitscope.gan.removal_curve`), every label's relative change; a before/after grid of
  the samples with most of the concept, its top ``grid_k`` units off
- ``ace``: the average-causal-effect masks (remove and insert, :func:`unitscope.gan.ace.ace_mask`)
  and the removal curve of the ACE ranking beside the IoU ranking's; per-unit IoU and mask values
- ``insertion``: each ``insert`` concept's top units forced to their 99.5th percentile one cell
  at a time, tallied by context; a grid with them forced on in the map's central cells
- ``artifacts``: every unit removed alone, scored by the segmenter's confidence; the units that
  raise the least realistic samples' score most, and a grid of those samples with them off

The samples are ``samples`` draws from ``seed`` (other than the dissected ones, seed 0 by default),
run once through the layers before ``layer`` (the torch.fx cut); every edit runs the tail only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unitscope.ablate import cut_model
from unitscope.ablate.cut import CutCache
from unitscope.ablate.evaluate import LayerCache
from unitscope.catalog import Catalog
from unitscope.edits import Edits, unit_mask
from unitscope.errors import UsageError
from unitscope.gan import tables  # noqa: F401  (declares the tables)
from unitscope.gan.ace import ace_mask
from unitscope.gan.artifacts import artifact_units, before_after_images, segmenter_confidence, write_grid
from unitscope.gan.effects import RemovalResult, cache_samples, insertion_in_context, removal_curve
from unitscope.gan.sources import to_unit_range
from unitscope.models import get_info
from unitscope.runs import CATALOG, LABELS
from unitscope.segment import Segmenter

__all__ = ["STAGES", "Settings", "analyse", "unit_order"]

STAGES = ("removal", "ace", "insertion", "artifacts")


@dataclass
class Settings:
    """What :func:`analyse` runs (see the module docstring)."""

    layer: str
    concept: str
    insert: list[str] = field(default_factory=list)
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    samples: int = 1000
    seed: int = 1
    ks: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20, 30])
    random_draws: int = 3
    ace_samples: int = 200
    ace_steps: int = 200
    ace_penalty: float = 0.01
    ace_lr: float = 0.1
    insert_units: int = 10
    insert_samples: int = 100
    artifact_samples: int = 500
    worst: float = 0.1
    artifact_k: int = 5
    grid: int = 8
    grid_k: int = 20
    batch_size: int = 100
    max_batch: int = 500


def unit_order(run_dir: str | Path, layer: str, concept: str) -> tuple[list[int], np.ndarray]:
    """The layer's units by IoU with ``concept`` (best first) and the IoU of each ``[C]``, from the run's arrays."""
    from unitscope.dissect.results import load_layer_arrays

    names = json.loads((Path(run_dir) / LABELS).read_text())["names"]
    if concept not in names:
        import difflib

        close = difflib.get_close_matches(concept, names, n=3)
        raise UsageError(
            f"the run's segmenter has no label {concept!r}"
            + (f"; did you mean {', '.join(close)}?" if close else f"; it labels {', '.join(names[1:])}")
        )
    iou = load_layer_arrays(run_dir, layer)["iou"][:, names.index(concept)]
    return [int(u) for u in np.argsort(-iou, kind="stable")], iou


class _Stage:
    """Skip-or-run bookkeeping of one stage in ``gan_effects``."""

    def __init__(self, cat: Catalog, model: str, layer: str, analysis: str, concept: str, settings: dict):
        self.cat, self.key, self.settings = (
            cat,
            dict(model=model, layer=layer, analysis=analysis, concept=concept),
            settings,
        )
        self.t0 = time.perf_counter()

    def done(self) -> bool:
        rows = self.cat.rows("gan_effects", **self.key)
        return bool(rows) and json.loads(rows[0]["settings"] or "{}") == self.settings

    def finish(self, samples: int, summary: str) -> None:
        self.cat.replace(
            "gan_effects",
            [
                {
                    "samples": samples,
                    "seconds": round(time.perf_counter() - self.t0, 1),
                    "summary": summary,
                    "settings": json.dumps(self.settings, sort_keys=True),
                }
            ],
            **self.key,
        )


def _subset(samples: LayerCache, n: int) -> LayerCache:
    """The first ``n`` samples of ``samples`` (the last batch cut short)."""
    out, count = LayerCache([], []), 0
    for b, y in zip(samples.batches, samples.labels):
        if count >= n:
            break
        take = min(len(y), n - count)
        if take < len(y):
            cut = lambda v, m=len(y): v[:take] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == m else v
            b = CutCache(cut(b.layer), tuple(cut(v) for v in b.others), cut(b.inputs))
            y = y[:take]
        out.batches.append(b)
        out.labels.append(y)
        count += take
    return out


def _removal_rows(r: RemovalResult, ranking: str, with_random: bool, min_share: float = 0.001) -> list[dict]:
    rows = []
    for i, name in enumerate(r.names):
        if i == 0 or (r.before[i] < min_share and name != r.concept):
            continue
        for j, k in enumerate(r.ks):
            row = r.rows().start + j
            rows.append(
                {
                    "ranking": ranking,
                    "k": k,
                    "label": name,
                    "change": float(r.change[row, i]),
                    "ci": float(r.ci[row, i]),
                    "before": float(r.before[i]),
                }
            )
            if with_random and r.draws:
                rows.append(
                    {
                        "ranking": "random",
                        "k": k,
                        "label": name,
                        "change": float(r.random_curve(name)[j]),
                        "ci": None,
                        "before": float(r.before[i]),
                    }
                )
    return rows


def analyse(
    run_dir: str | Path,
    generator: nn.Module,
    segmenter: Segmenter,
    settings: Settings,
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the stages of ``settings`` on a generator dissection's run folder; returns each stage's
    result (a stage skipped as already done returns nothing)."""
    run_dir, s = Path(run_dir), settings
    unknown = sorted(set(s.stages) - set(STAGES))
    if unknown:
        raise UsageError(f"unknown stages {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    info = get_info(generator)
    model, out_range = info.name, info.output_range
    order, iou = unit_order(run_dir, s.layer, s.concept)
    ks = [k for k in s.ks if k <= len(order)]
    for c in s.insert:
        unit_order(run_dir, s.layer, c)  # fails early on an unknown concept
    cut = cut_model(generator.eval(), s.layer)
    sizes = {
        "removal": s.samples,
        "ace": max(s.samples, s.ace_samples),
        "insertion": s.insert_samples if s.insert else 0,
        "artifacts": s.artifact_samples,
    }
    need = max(sizes[stage] for stage in s.stages)
    log(
        f"{model} {s.layer}: caching {need} samples (seed {s.seed}) through the layers before it "
        f"({'torch.fx cut' if cut.exact_tail else cut.reason})"
    )
    samples = cache_samples(cut, generator, n=need, seed=s.seed, batch_size=s.batch_size)
    layer_out = torch.cat([b.layer for b in samples.batches])
    level = torch.quantile(layer_out.transpose(0, 1).flatten(1)[:, :1_000_000], 0.995, dim=1)
    results: dict[str, Any] = {}
    grids = run_dir / "gan" / s.layer
    common = {"samples": s.samples, "seed": s.seed, "ks": ks}
    with Catalog(run_dir / CATALOG) as cat:
        where = dict(model=model, layer=s.layer)
        if "removal" in s.stages:
            stage = _Stage(
                cat, model, s.layer, "removal", s.concept, {**common, "draws": s.random_draws, "grid_k": s.grid_k}
            )
            if not stage.done():
                few = _subset(samples, s.samples)
                r = removal_curve(
                    cut,
                    few,
                    segmenter,
                    order,
                    s.concept,
                    ks=ks,
                    random_draws=s.random_draws,
                    output_range=out_range,
                    max_batch=s.max_batch,
                )
                rows = _removal_rows(r, "iou", True)
                for ranking in ("iou", "random"):
                    cat.replace(
                        "gan_removal",
                        [row for row in rows if row["ranking"] == ranking],
                        concept=s.concept,
                        ranking=ranking,
                        **where,
                    )
                top = _richest(cut, few, segmenter, s.concept, s.grid, out_range)
                k = max([k for k in ks if k <= s.grid_k] or ks[:1])
                path = grids / f"removal_{s.concept}.png"
                write_grid(before_after_images(cut, few, top, order[:k], output_range=out_range), path)
                cat.replace(
                    "gan_examples",
                    [
                        {
                            "rank": 0,
                            "path": str(path.relative_to(run_dir)),
                            "caption": f"top {k} '{s.concept}' units by IoU off (below) on the "
                            f"{len(top)} samples with most '{s.concept}'",
                            "units": json.dumps(order[:k]),
                        }
                    ],
                    kind=f"removal:{s.concept}",
                    **where,
                )
                stage.finish(few.count, r.summary(k))
                results["removal"] = r
                log(r.summary(k))
        if "ace" in s.stages:
            settings_ = {
                **common,
                "ace_samples": s.ace_samples,
                "steps": s.ace_steps,
                "penalty": s.ace_penalty,
                "lr": s.ace_lr,
            }
            stage = _Stage(cat, model, s.layer, "ace", s.concept, settings_)
            if not stage.done():
                few = _subset(samples, s.ace_samples)
                rem = ace_mask(
                    cut,
                    few,
                    segmenter,
                    s.concept,
                    mode="remove",
                    penalty=s.ace_penalty,
                    steps=s.ace_steps,
                    lr=s.ace_lr,
                    output_range=out_range,
                )
                ins = ace_mask(
                    cut,
                    few,
                    segmenter,
                    s.concept,
                    mode="insert",
                    level=level,
                    penalty=s.ace_penalty,
                    steps=s.ace_steps,
                    lr=s.ace_lr,
                    init=-3.0,
                    output_range=out_range,
                )
                ranking = rem.ranking()
                r = removal_curve(
                    cut,
                    _subset(samples, s.samples),
                    segmenter,
                    ranking,
                    s.concept,
                    ks=ks,
                    random_draws=0,
                    output_range=out_range,
                    max_batch=s.max_batch,
                )
                cat.replace("gan_removal", _removal_rows(r, "ace", False), concept=s.concept, ranking="ace", **where)
                iou_rank = {u: i + 1 for i, u in enumerate(order)}
                ace_rank = {u: i + 1 for i, u in enumerate(ranking)}
                cat.replace(
                    "gan_unit_effects",
                    [
                        {
                            "unit": u,
                            "iou": float(iou[u]),
                            "iou_rank": iou_rank[u],
                            "ace_remove": float(rem.mask[u]),
                            "ace_insert": float(ins.mask[u]),
                            "ace_rank": ace_rank[u],
                        }
                        for u in range(len(order))
                    ],
                    concept=s.concept,
                    **where,
                )
                stage.finish(few.count, rem.summary() + " | " + ins.summary())
                results["ace"], results["ace_insert"], results["ace_removal"] = rem, ins, r
                log(rem.summary())
                log(ins.summary())
        if "insertion" in s.stages:
            for concept in s.insert:
                stage = _Stage(
                    cat,
                    model,
                    s.layer,
                    "insertion",
                    concept,
                    {"samples": s.insert_samples, "seed": s.seed, "units": s.insert_units},
                )
                if stage.done():
                    continue
                units = unit_order(run_dir, s.layer, concept)[0][: s.insert_units]
                few = _subset(samples, s.insert_samples)
                ins_r = insertion_in_context(
                    cut, few, segmenter, units, level, concept, output_range=out_range, max_batch=s.max_batch
                )
                cat.replace("gan_insertion", ins_r.table(), concept=concept, **where)
                gy, gx = layer_out.shape[-2:]
                region = torch.zeros(gy, gx, dtype=torch.bool)
                region[gy // 4 : gy - gy // 4, gx // 4 : gx - gx // 4] = True
                path = grids / f"insertion_{concept}.png"
                write_grid(
                    _forced(cut, few, list(range(min(s.grid, few.count))), units, level, region, out_range), path
                )
                cat.replace(
                    "gan_examples",
                    [
                        {
                            "rank": 0,
                            "path": str(path.relative_to(run_dir)),
                            "caption": f"top {len(units)} '{concept}' units forced to their 99.5th "
                            "percentile in the central cells (below)",
                            "units": json.dumps([int(u) for u in units]),
                        }
                    ],
                    kind=f"insertion:{concept}",
                    **where,
                )
                best = ins_r.table(min_trials=max(1, few.count // 5))[:3]
                summary = f"insert '{concept}': " + ", ".join(
                    f"{r['context']} {r['rate']:.0%} of {r['trials']}" for r in best
                )
                stage.finish(few.count, summary)
                results[f"insertion:{concept}"] = ins_r
                log(summary)
        if "artifacts" in s.stages:
            stage = _Stage(
                cat,
                model,
                s.layer,
                "artifacts",
                "",
                {"samples": s.artifact_samples, "seed": s.seed, "worst": s.worst, "k": s.artifact_k},
            )
            if not stage.done():
                few = _subset(samples, s.artifact_samples)
                quality = segmenter_confidence(segmenter)
                art = artifact_units(cut, few, quality, worst=s.worst, output_range=out_range, max_batch=s.max_batch)
                rank = {u: i + 1 for i, u in enumerate(art.ranking())}
                cat.replace(
                    "gan_artifacts",
                    [
                        {"unit": u, "gain": float(art.gain[u]), "gain_all": float(art.gain_all[u]), "rank": rank[u]}
                        for u in range(len(art.gain))
                    ],
                    **where,
                )
                worst = art.worst_samples()[: s.grid]
                units = art.ranking()[: s.artifact_k]
                before, after = before_after_images(cut, few, worst, units, output_range=out_range)
                path = grids / "artifacts.png"
                write_grid([before, after], path)
                q_after = quality(after)
                cat.replace(
                    "gan_examples",
                    [
                        {
                            "rank": 0,
                            "path": str(path.relative_to(run_dir)),
                            "caption": f"the {len(worst)} least realistic samples (segmenter confidence "
                            f"{art.before[worst].mean():.3f}) and with artifact units "
                            f"{', '.join(map(str, units))} off ({float(q_after.mean()):.3f})",
                            "units": json.dumps([int(u) for u in units]),
                        }
                    ],
                    kind="artifacts",
                    **where,
                )
                stage.finish(few.count, art.summary())
                results["artifacts"] = art
                log(art.summary())
    return results


@torch.no_grad()
def _richest(cut, samples: LayerCache, segmenter: Segmenter, concept: str, n: int, out_range) -> list[int]:
    """The ``n`` sample numbers with the largest pixel share of ``concept`` unedited."""
    from unitscope.gan.effects import PixelShares

    scorer = PixelShares(segmenter, 1, samples.count, out_range)
    col = scorer.names.index(concept)
    shares = []
    for batch, labels in zip(samples.batches, samples.labels):
        maps = segmenter.segment(to_unit_range(cut.tail(batch), out_range))
        shares += list(zip(scorer.of(maps)[:, col].tolist(), labels.tolist()))
    return [int(i) for _, i in sorted(shares, key=lambda t: (-t[0], t[1]))[:n]]


@torch.no_grad()
def _forced(
    cut,
    samples: LayerCache,
    positions: Sequence[int],
    units: Sequence[int],
    level: torch.Tensor,
    region: torch.Tensor,
    out_range,
) -> list[torch.Tensor]:
    """[before, after] images with ``units`` forced to ``level`` inside ``region`` [H, W]."""
    from unitscope.gan.artifacts import _select

    cache = _select(samples, positions)
    edits = Edits.ablate(unit_mask(units, cache.layer.shape[1]), "quantile", value=level).within(region)
    before = to_unit_range(cut.tail(cache), out_range)
    return [before.cpu(), to_unit_range(cut.tail(cache, edit=lambda z: edits.apply(z)), out_range).cpu()]
