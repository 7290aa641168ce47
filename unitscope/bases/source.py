"""Bases of a layer dissected like its units: an activation source whose "layers" are directions.

    specs = parse_bases(["units", "rotation", "sae:k=8:expansion=4"])
    acts = ModelActivations(model, data, ["blocks.6"])
    src = fit_layer_bases(acts, specs, "runs/x")          # fits (or loads) every basis, saved in runs/x/bases
    dissect_sources(src, BrodenLabels(data), "runs/x")    # layers "blocks.6", "blocks.6#rotation", "blocks.6#sae"

:func:`fit_layer_bases` streams the layers' maps once through the model into a fit cache
(``run/bases/cache``, a float32 memmap ``[N, C, h, w]`` per layer of the layer's output), fits
each basis from it (streamed in chunks), and saves it in ``run/bases/<tag>/<name>/`` with its
metrics (FVU, mean L0, dead fraction, and the matched cosine to a second fit from ``seed + 1``).
A rerun loads the saved bases. :class:`BasisActivations` then wraps the source: each basis
becomes a pseudo-layer ``{layer}#{name}`` whose "units" are the basis' codes ``[N, D, h, w]``
(the layer's output, encoded per position), so the engine dissects them, p-values, exemplars,
strips, catalog and report included, exactly as it dissects units.

Bases (``name:option=value:...``): ``units`` (the layer's own channels), ``rotation`` (``n``
random rotations, ``seed``), ``pca``, ``whiten``, ``ica`` (``n``, ``passes``), ``nmf`` (``n``,
``passes``; non-negative layers), ``sae`` (``expansion``, ``k``, ``epochs``, ``batch_size``,
``lr``, ``dead_after``, ``resample`` 0/1, ``decay``, ``center`` 0/1); every learned basis takes
``seed`` and ``stability`` (0: no second fit).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unitscope.bases.basis import Basis, evaluate, load_basis, stability
from unitscope.dissect.sources import ActivationSource, Batch, Items, collate_items
from unitscope.errors import UsageError
from unitscope.layers import LayerValues
from unitscope.runs import BASES, atomic_write_text

KINDS = ("units", "rotation", "pca", "whiten", "ica", "nmf", "sae")
_OPTIONS = {
    "units": set(),
    "rotation": {"n", "seed"},
    "pca": {"n", "seed", "stability"},
    "whiten": {"n", "seed", "stability"},
    "ica": {"n", "passes", "seed", "stability"},
    "nmf": {"n", "passes", "seed", "stability"},
    "sae": {
        "expansion",
        "k",
        "epochs",
        "batch_size",
        "lr",
        "seed",
        "stability",
        "dead_after",
        "resample",
        "decay",
        "center",
    },
}
SEP = "#"  # pseudo-layer names: f"{layer}{SEP}{basis name}"


@dataclass
class BasisSpec:
    """One ``--basis`` entry: ``kind`` and its ``options``; ``name`` is what the pseudo-layer is called."""

    kind: str
    options: dict[str, float] = field(default_factory=dict)
    name: str = ""

    def text(self) -> str:
        return ":".join([self.kind] + [f"{k}={v:g}" for k, v in sorted(self.options.items())])


def parse_bases(entries: Sequence[str]) -> list[BasisSpec]:
    """``["units", "sae:k=8:expansion=4"]`` -> specs; an unknown kind or option is a ``UsageError``."""
    import difflib

    specs: list[BasisSpec] = []
    for entry in entries:
        kind, *opts = entry.strip().split(":")
        if kind not in KINDS:
            close = difflib.get_close_matches(kind, KINDS, n=2)
            raise UsageError(
                f"unknown basis {kind!r}{' (did you mean ' + ', '.join(close) + '?)' if close else ''}; "
                f"the bases are {', '.join(KINDS)}, each with options as kind:name=value:..."
            )
        options: dict[str, float] = {}
        for o in opts:
            name, eq, value = o.partition("=")
            if not eq or name not in _OPTIONS[kind]:
                raise UsageError(
                    f"basis {kind!r}: bad option {o!r}; it takes "
                    f"{', '.join(sorted(_OPTIONS[kind])) or 'no options'} as name=value"
                )
            try:
                options[name] = float(value)
            except ValueError:
                raise UsageError(f"basis {kind!r}: option {name} needs a number, got {value!r}") from None
        specs.append(BasisSpec(kind, options))
    names = [s.kind for s in specs]
    for s in specs:  # a kind given once is called by its kind; more often, by its options too
        s.name = s.kind if names.count(s.kind) == 1 else s.text().replace(":", ",")
    if len({s.name for s in specs}) < len(specs):
        raise UsageError(f"the same basis is asked for twice: {', '.join(entries)}")
    return specs


# -- the fit cache: each layer's output, once through the model --------------------------------------


class FitCache:
    """``{layer: memmap [N, C, h, w] float32}`` of the layers' outputs under ``folder``."""

    def __init__(self, folder: Path, shapes: dict[str, tuple[int, int, int]], n: int, key: dict[str, Any]):
        self.folder, self.shapes, self.n, self.key = folder, shapes, n, key
        self.tags = {layer: f"l{i}" for i, layer in enumerate(shapes)}

    @property
    def complete(self) -> bool:
        meta = self.folder / "complete.json"
        return meta.exists() and json.loads(meta.read_text()) == _jsonable(self.key)

    def maps(self, layer: str, mode: str = "r") -> np.memmap:
        c, h, w = self.shapes[layer]
        return np.lib.format.open_memmap(
            self.folder / f"{self.tags[layer]}.npy",
            mode=mode,
            dtype=np.float32,
            shape=(self.n, c, h, w) if mode == "w+" else None,
        )

    def fill(self, source: ActivationSource, batch_size: int, progress: bool = False) -> None:
        """One pass of ``source`` over its positions; each layer's output written (``values.post``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "complete.json").unlink(missing_ok=True)
        outs = {layer: self.maps(layer, "w+") for layer in self.shapes}
        values = source.values()
        loader = torch.utils.data.DataLoader(Items(self.n, source), batch_size=batch_size, collate_fn=collate_items)
        from tqdm.auto import tqdm

        for batch in tqdm(loader, desc="bases: layer maps", disable=not progress, leave=False):
            if batch["bad"]:
                raise UsageError(f"{batch['bad'][0][1]}; the bases need every image (remove it from the data set)")
            pos = batch["pos"].numpy()
            for layer, a in source.activations(batch).items():
                if layer in outs:
                    outs[layer][pos] = values[layer].post(a).cpu().numpy()
        for m in outs.values():
            m.flush()
        atomic_write_text(self.folder / "complete.json", json.dumps(_jsonable(self.key)))

    def batches(self, layer: str, images: int = 64) -> _Chunks:
        return _Chunks(self.maps(layer), images)


class _Chunks:
    """A re-iterable of ``[images, C, h, w]`` tensors from a memmap (what the fits stream over)."""

    def __init__(self, maps: np.memmap, images: int):
        self.maps, self.images = maps, images

    def __iter__(self) -> Iterator[torch.Tensor]:
        for s in range(0, len(self.maps), self.images):
            yield torch.from_numpy(np.array(self.maps[s : s + self.images]))


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, sort_keys=True, default=str))


# -- fitting ---------------------------------------------------------------------------------------


def identity_basis(c: int) -> Basis:
    eye = torch.eye(c)
    return Basis("units", eye, eye.clone(), torch.zeros(c), torch.zeros(c))


def rotation_basis(c: int, seed: int) -> Basis:
    """The engine's random rotation as a basis: code j = sum_i R[i, j] a_i (:func:`~unitscope.dissect.engine.rotate`)."""
    from unitscope.dissect.engine import random_rotation

    r = random_rotation(c, seed).t().contiguous()  # rows: directions
    return Basis("rotation", r, r.clone(), torch.zeros(c), torch.zeros(c), config={"seed": seed})


def fit_one(spec: BasisSpec, batches: Any, c: int, out: Path, seed: int) -> Basis:
    """One basis of ``spec`` (seeded) fitted on ``batches``; the SAE checkpoints into ``out``."""
    from unitscope.bases import fit_ica, fit_nmf, fit_pca, fit_sae, fit_whitening

    o = spec.options
    n = int(o["n"]) if "n" in o else None
    if spec.kind == "rotation":
        b = rotation_basis(c, seed)
        b.metrics = evaluate(b, batches)
        return b
    if spec.kind == "pca":
        return fit_pca(batches, n)
    if spec.kind == "whiten":
        return fit_whitening(batches, n)
    if spec.kind == "ica":
        return fit_ica(batches, n or c, passes=int(o.get("passes", 40)), seed=seed)
    if spec.kind == "nmf":
        return fit_nmf(batches, n or c, passes=int(o.get("passes", 100)), seed=seed)
    if spec.kind == "sae":
        return fit_sae(
            batches,
            out,
            expansion=o.get("expansion", 4),
            k=int(o.get("k", 8)),
            epochs=int(o.get("epochs", 10)),
            batch_size=int(o.get("batch_size", 256)),
            lr=o.get("lr", 1e-3),
            seed=seed,
            dead_after=int(o.get("dead_after", 200)),
            resample=bool(o.get("resample", 0)),
            decay=o.get("decay", 0.0),
            center=bool(o.get("center", 0)),
        )
    raise UsageError(f"no fit for basis {spec.kind!r}")


def fit_layer_bases(
    source: ActivationSource,
    specs: Sequence[BasisSpec],
    run_dir: str | Path,
    *,
    batch_size: int = 32,
    progress: bool = False,
    fresh: bool = False,
    cache_gb: float | None = None,
) -> BasisActivations:
    """Fit (or load, when saved with the same settings) every basis of ``specs`` for every layer of
    ``source``; returns the source to dissect. The fit cache (at most ``cache_gb`` of disk, None: no
    limit) is removed once every basis is saved."""
    run_dir = Path(run_dir)
    folder = run_dir / BASES
    shapes = source.shapes()
    need = 4 * len(source) * sum(c * h * w for c, h, w in shapes.values()) / 2**30
    if cache_gb is not None and need > cache_gb and any(s.kind != "units" for s in specs):
        raise UsageError(
            f"fitting the bases needs {need:.1f} GB of disk for the layers' maps (float32) and "
            f"--cache-gb allows {cache_gb:g}; raise --cache-gb, or fit on fewer images (--limit)"
        )
    fitted: dict[str, tuple[str, BasisSpec, Basis]] = {}
    cache = FitCache(folder / "cache", shapes, len(source), source.key())
    for i, layer in enumerate(source.layers):
        c = shapes[layer][0]
        for spec in specs:
            if spec.kind == "units":
                continue
            count = int(spec.options.get("n", 1)) if spec.kind == "rotation" else 1
            for r in range(count):
                name = spec.name if count == 1 else f"{spec.name}{r}"
                out = folder / f"l{i}" / name
                want = {"spec": spec.text(), "layer": layer, "index": r, "activations": _jsonable(source.key())}
                b = _load_if_same(out, want, fresh)
                if b is None:
                    if not cache.complete:
                        cache.fill(source, batch_size, progress)
                    b = _fit_and_save(spec, cache.batches(layer), c, out, want, r)
                fitted[f"{layer}{SEP}{name}"] = (layer, spec, b)
    units = any(s.kind == "units" for s in specs)
    units_metrics: dict[str, dict[str, float]] = {}
    if units:
        for i, layer in enumerate(source.layers):
            path = folder / f"l{i}" / "units.json"
            if path.exists() and not fresh:
                units_metrics[layer] = json.loads(path.read_text())
                continue
            if not cache.complete:
                cache.fill(source, batch_size, progress)
            m = evaluate(identity_basis(shapes[layer][0]), cache.batches(layer))
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps({**m, "stability": 1.0}))
            units_metrics[layer] = {**m, "stability": 1.0}
    shutil.rmtree(folder / "cache", ignore_errors=True)
    return BasisActivations(source, fitted, units=units, units_metrics=units_metrics)


def _load_if_same(out: Path, want: dict[str, Any], fresh: bool) -> Basis | None:
    meta = out / "fit.json"
    if fresh or not meta.exists() or json.loads(meta.read_text()).get("want") != _jsonable(want):
        return None
    return load_basis(out)


def _fit_and_save(spec: BasisSpec, batches: Any, c: int, out: Path, want: dict[str, Any], index: int) -> Basis:
    seed = int(spec.options.get("seed", 0)) + 1000 * index
    started = out / "want.json"  # an SAE stopped mid-fit resumes only under the same settings
    if not started.exists() or json.loads(started.read_text()) != _jsonable(want):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        atomic_write_text(started, json.dumps(_jsonable(want)))
    start, cpu = time.perf_counter(), time.process_time()
    b = fit_one(spec, batches, c, out, seed)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if spec.kind in ("pca", "whiten"):
        stab = 1.0  # deterministic (up to sign, which the matched |cosine| ignores)
    elif spec.kind == "rotation" or spec.options.get("stability", 1) == 0:
        stab = float("nan")
    else:
        stab = stability(b, fit_one(spec, batches, c, out / "seed2", seed + 1))
    b.metrics = {**b.metrics, "stability": stab, "fit_seconds": wall, "fit_cpu_seconds": cpu}
    b.save(out)
    atomic_write_text(out / "fit.json", json.dumps({"want": _jsonable(want)}))
    return b


# -- the source --------------------------------------------------------------------------------------


class BasisActivations(ActivationSource):
    """``source``'s layers (with ``units``) and one pseudo-layer ``{layer}#{name}`` per fitted basis,
    whose maps are the codes of the layer's output: ``[N, D, h, w]``."""

    def __init__(
        self,
        source: ActivationSource,
        bases: dict[str, tuple[str, BasisSpec, Basis]],
        *,
        units: bool = True,
        units_metrics: dict[str, dict[str, float]] | None = None,
    ):
        self.source, self.bases, self.units = source, bases, units
        self.units_metrics = units_metrics or {}
        self.layers = (list(source.layers) if units else []) + list(bases)
        self.model_name = source.model_name
        self.dataset = getattr(source, "dataset", source)

    def __len__(self) -> int:
        return len(self.source)

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        inner = self.source.shapes()
        out = {layer: inner[layer] for layer in self.source.layers if self.units}
        for name, (layer, _, b) in self.bases.items():
            out[name] = (b.directions.shape[0], *inner[layer][1:])
        return out

    def values(self) -> dict[str, LayerValues]:
        inner = self.source.values()
        out = {layer: inner[layer] for layer in self.source.layers if self.units}
        for name, (layer, spec, _) in self.bases.items():
            out[name] = LayerValues(name, "post", f"{spec.kind} codes of {layer}'s output")
        return out

    def load(self, pos: int) -> dict[str, Any]:
        return self.source.load(pos)

    def activations(self, batch: Batch) -> dict[str, torch.Tensor]:
        maps = self.source.activations(batch)
        values = self.source.values()
        out = {layer: maps[layer] for layer in self.source.layers if self.units}
        post: dict[str, torch.Tensor] = {}
        for name, (layer, _, b) in self.bases.items():
            if layer not in post:
                post[layer] = values[layer].post(maps[layer])
            out[name] = encode_maps(b, post[layer])
        return out

    def key(self) -> dict[str, Any]:
        digest = {
            name: hashlib.sha1(b.directions.numpy().tobytes() + b.encoder.numpy().tobytes()).hexdigest()[:16]
            for name, (_, _, b) in self.bases.items()
        }
        return {**self.source.key(), "layers": self.layers, "bases": digest}

    def index(self, pos: int) -> int:
        return self.source.index(pos)

    def picture(self, pos: int) -> Any:
        return self.source.picture(pos)

    def image_path(self, pos: int) -> Path | None:
        get = getattr(self.source, "image_path", None)
        return get(pos) if get is not None else None

    def metrics(self) -> list[dict[str, Any]]:
        """One row per basis (and per layer's units): what the catalog's ``basis_metrics`` holds."""
        rows = [
            {
                "layer": layer,
                "base_layer": layer,
                "basis": "units",
                "spec": "units",
                "directions": self.source.shapes()[layer][0],
                **_row_metrics(m),
            }
            for layer, m in self.units_metrics.items()
        ]
        for name, (layer, spec, b) in self.bases.items():
            rows.append(
                {
                    "layer": name,
                    "base_layer": layer,
                    "basis": spec.kind,
                    "spec": spec.text(),
                    "directions": b.directions.shape[0],
                    **_row_metrics(b.metrics),
                }
            )
        return rows


def _row_metrics(m: dict[str, Any]) -> dict[str, float | None]:
    def num(k: str) -> float | None:
        v = m.get(k)
        return None if v is None or v != v else float(v)

    return {k: num(k) for k in ("fvu", "mean_l0", "dead_fraction", "stability", "fit_seconds", "fit_cpu_seconds")}


def encode_maps(basis: Basis, x: torch.Tensor) -> torch.Tensor:
    """A layer's maps ``[N, C, h, w]`` -> the basis' codes per position ``[N, D, h, w]``."""
    n, _, h, w = x.shape
    b = basis if basis.directions.device == x.device else _to(basis, x.device)
    codes = b.encode(x)  # [N * h * w, D], rows in (n, y, x) order
    return codes.reshape(n, h, w, -1).permute(0, 3, 1, 2).contiguous()


def _to(b: Basis, device: torch.device) -> Basis:
    return Basis(
        b.kind,
        b.directions.to(device),
        b.encoder.to(device),
        b.enc_bias.to(device),
        b.dec_bias.to(device),
        k=b.k,
        config=b.config,
        metrics=b.metrics,
    )
