"""The live page's basis picker: a run's fitted bases (``dissect --basis``) as probe-able pseudo-layers.

    from unitscope.serve.bases import run_bases
    bases = run_bases("runs/ws")      # {"features.relu5#sae": RunBasis(layer="features.relu5", name="sae", ...)}
    bases["features.relu5#sae"].codes(output)   # the layer's output [N, C, h, w] -> codes [N, D, h, w]

A dissection with ``--basis`` saves each basis in ``run/bases/l<i>/<name>/`` (``fit.json`` names the
layer it was fitted on) and dissects its directions as the pseudo-layer ``{layer}#{name}``; the
probe page shows a direction's map exactly as a unit's: the layer's output for the image, encoded
at every position (:func:`unitscope.bases.source.encode_maps`, what the dissection thresholded).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

SEP = "#"  # the pseudo-layer separator of unitscope.bases.source (not imported: that loads the engine)


@dataclass
class RunBasis:
    """One fitted basis of a run: its pseudo-layer ``name``, the ``layer`` it encodes, its folder."""

    pseudo: str
    layer: str
    name: str
    kind: str
    directions: int
    folder: Path
    _basis: Any = field(default=None, repr=False)

    def basis(self) -> Any:
        """The :class:`unitscope.bases.Basis`, loaded on first use."""
        if self._basis is None:
            from unitscope.bases import load_basis

            self._basis = load_basis(self.folder)
        return self._basis

    def codes(self, output: torch.Tensor) -> torch.Tensor:
        """The layer's output ``[N, C, h, w]`` -> the basis' codes ``[N, D, h, w]``."""
        from unitscope.bases.source import encode_maps

        return encode_maps(self.basis(), output.float().cpu())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.pseudo,
            "layer": self.layer,
            "basis": self.name,
            "kind": self.kind,
            "directions": self.directions,
        }


def run_bases(run: str | Path | None) -> dict[str, RunBasis]:
    """Every basis saved in ``run/bases`` (none without a run or a ``--basis`` dissection), by pseudo-layer."""
    if run is None:
        return {}
    out: dict[str, RunBasis] = {}
    for fit in sorted(Path(run).glob("bases/l*/*/fit.json")):
        folder = fit.parent
        try:
            layer = json.loads(fit.read_text())["want"]["layer"]
            meta = json.loads((folder / "basis.json").read_text())
        except (OSError, KeyError, ValueError):
            continue  # a basis still being fitted, or from another version: not offered
        from unitscope.runs import load_arrays

        shape = load_arrays(folder / "basis.safetensors")["directions"].shape
        pseudo = f"{layer}{SEP}{folder.name}"
        out[pseudo] = RunBasis(pseudo, layer, folder.name, meta.get("kind", ""), int(shape[0]), folder)
    return out
