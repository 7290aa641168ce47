"""The whole ablation study of one layer as resumable stages, written to a run folder.

    from unitscope.ablate.attack import attack_stage
    from unitscope.ablate.steer import steering_stage
    exp = Experiment(model, "features.8", data, "runs/scenes", mode="zero", seeds=5)
    exp.importance(); exp.write_layer_row(); exp.top_n(); exp.curves(); exp.selectivity()
    steering_stage(exp); attack_stage(exp)     # the last two stages are functions taking the experiment
    exp.evaluate([3, 17])                      # accuracy with units 3 and 17 removed (val split)

The stage methods return their results as JSON-ready dicts (``top_n`` a list of rows). Each stage
keeps its result in ``RUN/ablation/<model>/<layer>/<stage>.json`` keyed by the settings it depends
on and writes its catalog rows (see :mod:`unitscope.ablate.tables`); a rerun with the same settings
skips finished stages. Units are ranked on the train split and tested on val. The stages
gathered into one value with ``summary()`` and ``_repr_html_()``: :func:`unitscope.ablate.result.ablate_layer`
(``experiment_result(exp)``); ``unitscope ablate`` prints each stage's figures
(``unitscope.commands.ablate``), and the report's ablation part reads the catalog rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import unitscope.ablate.tables  # noqa: F401  (declares the catalog tables)
from unitscope.ablate.curves import DEFAULT_FRACTIONS, ablation_curves, curve_area
from unitscope.ablate.cut import cut_model
from unitscope.ablate.evaluate import Edits, LayerCache, cache_layer, confusion, metrics, unit_moments
from unitscope.ablate.importance import DEFAULT_NS, rank_units, top_n_test, unit_importance
from unitscope.ablate.selectivity import class_means, class_selectivity, correlation
from unitscope.ablate.split import LabelledData, class_map
from unitscope.catalog import Catalog
from unitscope.models import get_info
from unitscope.runs import CATALOG, atomic_write_text

#: bumped when a stage's computation changes, so stored results of the old code are not reused
#: (importance 2: ties ranked by the probability drop, which changes every stage that uses the ranking)
STAGE_VERSIONS = {"importance": 2, "top_n": 2, "steering": 2, "attacks": 3}


class Experiment:
    """One model, one layer, one labelled data set; see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        layer: str,
        data: LabelledData,
        out: str | Path,
        *,
        mode: str = "zero",
        seeds: int = 5,
        ns: Sequence[int] = DEFAULT_NS,
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        batch_size: int = 64,
        max_batch: int = 512,
        limit: int | None = None,
        device: str = "cpu",
        progress: bool = True,
        model_key: str = "",
        class_table: dict[str, Sequence[int]] | None = None,
    ):
        self.model, self.data, self.out = model.eval().to(device), data, Path(out)
        self.info = get_info(model)
        self.name = self.info.name
        self.cut = cut_model(model, layer)
        self.layer = self.cut.layer
        self.mode, self.seeds, self.ns, self.fractions = mode, seeds, list(ns), list(fractions)
        self.batch_size, self.max_batch, self.device, self.progress = batch_size, max_batch, device, progress
        self.folder = self.out / "ablation" / _safe(self.name) / _safe(self.layer)
        self.key = {
            "model": self.name,
            "model_key": model_key,
            "layer": self.layer,
            "data": str(Path(data.path).resolve()),
            "limit": limit,
            "mode": mode,
        }
        if class_table is not None:  # the key of runs without a table stays as it was
            self.key["class_table"] = {c: list(v) for c, v in sorted(class_table.items()) if c in data.class_names}
        with torch.no_grad():
            probe = model(data[0][0].unsqueeze(0).to(device))
        outputs = (probe[0] if isinstance(probe, (tuple, list)) else probe).shape[1]
        self.num_classes = len(data.class_names)
        self.class_of_output = class_map(data.class_names, self.info.class_names, outputs, class_table)
        train, val = data.split()
        self.train_pos, self.val_pos = (train[:limit], val[:limit]) if limit else (train, val)
        self._caches: dict[str, LayerCache] = {}
        self._moments: tuple[torch.Tensor, torch.Tensor] | None = None

    # -- shared pieces -------------------------------------------------------------------------------
    def cache(self, split: str) -> LayerCache:
        if split not in self._caches:
            positions = self.train_pos if split == "train" else self.val_pos
            if not positions:
                raise ValueError(
                    f"{self.data.path}: the {split} split is empty; it needs images to rank "
                    "units on (train) and to test on (val)"
                )
            self._caches[split] = cache_layer(
                self.cut, self.data, positions, batch_size=self.batch_size, device=self.device, progress=self.progress
            )
        return self._caches[split]

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each unit's mean and std on the train split (for mean and noise ablation)."""
        if self._moments is None:
            self._moments = unit_moments(self.cache("train"))
        return self._moments

    def edits(self, mask: torch.Tensor, mode: str | None = None) -> Edits:
        mode = mode or self.mode
        mean, std = self.moments() if mode != "zero" else (None, None)
        return Edits.ablate(mask, mode, mean, std)

    def stage(self, name: str, key: dict[str, Any], compute) -> dict[str, Any]:
        """Load ``name``'s stored result when its key matches, else compute, store and return it."""
        path = self.folder / f"{name}.json"
        full = {**self.key, **key, "version": STAGE_VERSIONS.get(name, 1)}
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored.get("key") == full:
                return stored["result"]
        result = compute()
        atomic_write_text(path, json.dumps({"key": full, "result": result}) + "\n")
        return result

    def catalog(self) -> Catalog:
        return Catalog(self.out / CATALOG)

    @property
    def units(self) -> int:
        return self.cache("val").batches[0].layer.shape[1]

    # -- stages --------------------------------------------------------------------------------------
    def evaluate(self, units: Sequence[int], mode: str | None = None, split: str = "val") -> dict[str, Any]:
        """Accuracy, per-class and balanced accuracy with ``units`` removed (and without removing any)."""
        c = self.units
        mask = torch.zeros(2, c, dtype=torch.bool)
        mask[1, list(units)] = True
        m = metrics(
            confusion(
                self.cut,
                self.cache(split),
                self.edits(mask, mode),
                self.class_of_output,
                self.num_classes,
                max_batch=self.max_batch,
            )
        )
        names = self.data.class_names
        return {
            "units": list(units),
            "mode": mode or self.mode,
            "split": split,
            "images": int(m["count"].sum()),
            "accuracy": [float(a) for a in m["accuracy"]],
            "class_accuracy": {
                names[y]: [float(m["class_accuracy"][k, y]) for k in range(2)] for y in range(len(names))
            },
            "balanced": {names[y]: [float(m["balanced"][k, y]) for k in range(2)] for y in range(len(names))},
        }

    def importance(self) -> dict[str, Any]:
        def compute():
            imp = unit_importance(
                self.cut,
                self.cache("train"),
                self.class_of_output,
                self.num_classes,
                mode=self.mode,
                mean=self.moments()[0] if self.mode != "zero" else None,
                std=self.moments()[1] if self.mode == "noise" else None,
                max_batch=self.max_batch,
                progress=self.progress,
            )
            return {
                "drop": imp.drop.tolist(),
                "balanced_drop": imp.balanced_drop.tolist(),
                "overall_drop": imp.overall_drop.tolist(),
                "base_accuracy": imp.base_accuracy,
                "probability_drop": imp.probability_drop.tolist(),
                "base_class_accuracy": imp.base_class_accuracy.tolist(),
                "images": imp.images,
            }

        result = self.stage("importance", {}, compute)
        names = self.data.class_names
        rows = [
            {"unit": u, "class": names[y], "accuracy_drop": d, "probability_drop": p}
            for u, (per, prob) in enumerate(zip(result["drop"], result["probability_drop"]))
            for y, (d, p) in enumerate(zip(per, prob))
        ]
        with self.catalog() as cat:
            cat.replace("unit_importance", rows, model=self.name, layer=self.layer)
        return result

    def ranking(self) -> torch.Tensor:
        imp = self.importance()
        return rank_units(torch.tensor(imp["drop"]), torch.tensor(imp["probability_drop"]))

    def top_n(self) -> list[dict]:
        def compute():
            mean, std = self.moments() if self.mode != "zero" else (None, None)
            return top_n_test(
                self.cut,
                self.cache("val"),
                self.ranking(),
                self.class_of_output,
                self.num_classes,
                ns=self.ns,
                mode=self.mode,
                mean=mean,
                std=std,
                max_batch=self.max_batch,
                progress=self.progress,
            )

        rows = self.stage("top_n", {"ns": self.ns}, compute)
        names = self.data.class_names
        with self.catalog() as cat:
            cat.replace(
                "ablation_topn", [{**r, "class": names[r["class"]]} for r in rows], model=self.name, layer=self.layer
            )
        return rows

    def curves(self, modes: Sequence[str] = ("zero", "noise")) -> dict[str, Any]:
        def compute():
            mean, std = self.moments()
            c = ablation_curves(
                self.cut,
                self.cache("val"),
                self.class_of_output,
                self.num_classes,
                fractions=self.fractions,
                seeds=self.seeds,
                modes=modes,
                mean=mean,
                std=std,
                max_batch=self.max_batch,
                progress=self.progress,
            )
            return {k: np.asarray(v).tolist() for k, v in c.items()}

        result = self.stage("curves", {"seeds": self.seeds, "fractions": self.fractions, "modes": list(modes)}, compute)
        rows = [
            {"mode": mode, "seed": seed, "fraction": f, "accuracy": result[mode][s][i]}
            for mode in modes
            for s, seed in enumerate(result["seeds"])
            for i, f in enumerate(result["fractions"])
        ]
        with self.catalog() as cat:
            cat.replace("ablation_curves", rows, model=self.name, layer=self.layer)
        result["area"] = {mode: [curve_area(result["fractions"], a) for a in result[mode]] for mode in modes}
        return result

    def selectivity(self) -> dict[str, Any]:
        def compute():
            means = class_means(self.cache("train"), self.num_classes)
            si, top = class_selectivity(means)
            negative = min(float(b.layer.min()) for b in self.cache("train").batches) < 0
            return {"si": si.tolist(), "top_class": top.tolist(), "negative": negative}

        result = self.stage("selectivity", {}, compute)
        names = self.data.class_names
        with self.catalog() as cat:
            cat.replace(
                "unit_selectivity",
                [
                    {"unit": u, "selectivity": s, "top_class": names[t]}
                    for u, (s, t) in enumerate(zip(result["si"], result["top_class"]))
                ],
                model=self.name,
                layer=self.layer,
            )
        imp = self.importance()
        drop = np.asarray(imp["drop"])
        own = drop[np.arange(len(result["si"])), result["top_class"]]
        result["correlation_overall"] = correlation(result["si"], imp["overall_drop"])
        result["correlation_top_class"] = correlation(result["si"], own)
        return result

    def write_layer_row(self) -> None:
        imp = self.importance()
        val = self.evaluate([])
        with self.catalog() as cat:
            cat.replace(
                "ablation_layers",
                [
                    {
                        "units": self.units,
                        "train_images": len(self.train_pos),
                        "val_images": len(self.val_pos),
                        "base_accuracy": imp["base_accuracy"],
                        "val_accuracy": val["accuracy"][0],
                        "mode": self.mode,
                        "seeds": self.seeds,
                        "cut": "fx" if self.cut.exact_tail else "hook",
                    }
                ],
                model=self.name,
                layer=self.layer,
            )


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
