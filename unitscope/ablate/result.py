"""An ablation study of one layer as one value: the run-level entry point and its ``Result``.

    from unitscope.ablate.result import ablate_layer
    result = ablate_layer(model, "features.8", data, "runs/scenes", seeds=5)   # resumable stages
    result.summary()   # "m features.8: 256 units, train accuracy 91.0% (2400 images); top 20 of each class removed: ..."
    result             # in a notebook: the summary and each class's key units with their accuracy drop
    result.key_units()["dog"]                  # [C] units, most important first

The stages are :class:`~unitscope.ablate.experiment.Experiment`'s (each stored in the run folder
and skipped on a rerun); :func:`experiment_result` gathers an experiment's into an
:class:`AblationResult`. Steering and attacks stay separate steps (``steering_stage``,
``attack_stage``); their results can be handed in.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unitscope.ablate.importance import rank_units

#: the stages ``ablate_layer`` runs by default (``unitscope ablate all`` without steering and attacks)
STAGES = ("importance", "top_n", "curves", "selectivity")


@dataclass
class AblationResult:
    """What removing units of ``layer`` does: each stage's result as the stage returned it."""

    model: str
    layer: str
    run_dir: Path
    units: int
    class_names: list[str]
    importance: dict[str, Any]  # drop [C][Y], probability_drop [C][Y], base_accuracy, images
    top_n: list[dict] | None = None  # rows {class, n, kind, class_accuracy, other_accuracy, ...}
    curves: dict[str, Any] | None = None  # per mode [seeds][fractions] accuracy, "area" per mode
    selectivity: dict[str, Any] | None = None
    steering: dict[str, Any] | None = None
    attacks: dict[str, Any] | None = None

    def key_units(self, k: int | None = None) -> dict[str, list[int]]:
        """Per class its units by importance (accuracy drop, ties by probability drop), the first ``k``."""
        ranking = rank_units(torch.tensor(self.importance["drop"]), torch.tensor(self.importance["probability_drop"]))
        return {name: ranking[y, :k].tolist() for y, name in enumerate(self.class_names)}

    def top_n_means(self) -> dict[tuple[str, int], float]:
        """``(kind, n) -> `` the class accuracy averaged over classes (kinds none, remove, random, keep)."""
        by: dict[tuple[str, int], list[float]] = {}
        for r in self.top_n or []:
            by.setdefault((r["kind"], int(r["n"])), []).append(float(r["class_accuracy"]))
        return {key: sum(v) / len(v) for key, v in by.items()}

    def summary(self) -> str:
        imp = self.importance
        parts = [
            f"{self.model} {self.layer}: {self.units} units, train accuracy {100 * imp['base_accuracy']:.1f}% "
            f"({imp['images']} images)"
        ]
        means = self.top_n_means()
        removed = sorted(n for kind, n in means if kind == "remove")
        if removed:
            n = removed[-1]
            parts.append(
                f"top {n} of each class removed: class accuracy {100 * means['none', 0]:.1f}% -> "
                f"{100 * means['remove', n]:.1f}% (random {n}: {100 * means['random', n]:.1f}%)"
            )
        if self.curves is not None:
            parts.append(
                "curve area " + ", ".join(f"{mode} {sum(a) / len(a):.3f}" for mode, a in self.curves["area"].items())
            )
        if self.selectivity is not None:
            si = self.selectivity["si"]
            parts.append(f"mean class selectivity {sum(si) / len(si):.3f}")
        if self.steering is not None:
            parts.append(f"steering flip rate {100 * self.steering['flip_rate']:.1f}%")
        return "; ".join(parts)

    def _repr_html_(self) -> str:
        """The summary and, per class, its three key units with their accuracy drop."""
        drop = self.importance["drop"]
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>"
            + ", ".join(f"#{u} ({100 * drop[u][y]:.1f}%)" for u in units)
            + "</td></tr>"
            for y, (name, units) in enumerate(self.key_units(3).items())
        )
        return (
            f"<div class='unitscope-ablation'><b>{html.escape(self.summary())}</b>"
            f"<table><tr><th>class</th><th>key units (accuracy drop)</th></tr>{rows}</table></div>"
        )


def experiment_result(exp: Any, stages: Sequence[str] = STAGES, **given: Any) -> AblationResult:
    """Run (or load) ``stages`` of an :class:`~unitscope.ablate.experiment.Experiment` and gather
    them; ``given``: results computed elsewhere (``steering=steering_stage(exp)``)."""
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown ablation stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    imp = exp.importance()
    if "importance" in stages:
        exp.write_layer_row()
    return AblationResult(
        exp.name,
        exp.layer,
        exp.out,
        exp.units,
        list(exp.data.class_names),
        imp,
        top_n=exp.top_n() if "top_n" in stages else None,
        curves=exp.curves() if "curves" in stages else None,
        selectivity=exp.selectivity() if "selectivity" in stages else None,
        **given,
    )


def ablate_layer(
    model: Any, layer: str, data: Any, out: str | Path, *, stages: Sequence[str] = STAGES, **settings: Any
) -> AblationResult:
    """Ablate ``layer`` of ``model`` on labelled ``data`` (:class:`~unitscope.ablate.split.LabelledData`),
    results in ``out``: the ``stages`` of :class:`~unitscope.ablate.experiment.Experiment` (whose
    keyword ``settings`` it takes: ``mode``, ``seeds``, ``ns``, ``fractions``, ``device``, ...)."""
    from unitscope.ablate.experiment import Experiment

    return experiment_result(Experiment(model, layer, data, out, **settings), stages)
