"""Describe the units of a dissection run: exemplars, formula search, PMI choice, held-out scores.

    from unitscope.describe.run import describe_run
    out = describe_run("runs/lite0", layers=["bn2"])     # rows into the run's catalog table descriptions
    out["bn2"]["pmi"][7]                                 # {"description": ..., "f1": ..., "p_f1": ...}
    out.summary()                                        # "bn2: 41 of 64 units described, ..." (DescribeResult)

Needs a run dissected with ``--keep-cache`` (the maps) whose data folder still exists (the labels).
Images are split by position: every fifth (``pos % 5 == 4``) is held out for scoring, the rest
are searched (a unit's exemplars are its top images among them). Steps, as named functions:
:func:`load_concepts` (every image's concepts as pixel signatures, once per run),
:func:`search_layer` (exemplars, counts, beam search, PMI) and :func:`score_layer` (held-out).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from unitscope.describe import exemplars as ex
from unitscope.describe.concepts import POSITION_CATEGORY, Signatures, Vocabulary, image_concepts
from unitscope.describe.defaults import (
    BEAM,
    DRAWS,
    EXEMPLARS,
    HELD_OUT_EVERY,
    LAMBDA,
    LENGTH,
    PRIOR_UNITS,
    QUANTILE,
    VALIDATE_TOP,
    WORKING_SIDE,
)
from unitscope.describe.formulas import FIRST, OP_NAMES, Found, beam_search, evaluate, unit_counts
from unitscope.describe.phrases import render
from unitscope.describe.result import DescribeResult
from unitscope.describe.scores import heldout_scores
from unitscope.describe.select import choose_candidates, pool_candidates
from unitscope.runs import CATALOG, CONFIG, LABELS, LAYERS


@dataclass
class Options:
    lam: float = LAMBDA
    beam: int = BEAM
    length: int = LENGTH
    exemplars: int = EXEMPLARS
    quantile: float = QUANTILE
    draws: int = DRAWS
    prior_units: int = PRIOR_UNITS
    validate: int = VALIDATE_TOP  # > 1: choose among the top-PMI candidates by F1 on validation images
    seed: int = 0
    progress: bool = True


@dataclass
class RunConcepts:
    vocab: Vocabulary
    sigs: Signatures  # ids [N, P] for every position of the run
    size: tuple[int, int]


def held_out(n: int) -> torch.Tensor:
    """``[n]`` bool: positions kept out of the search for scoring."""
    return torch.arange(n) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def validation(n: int) -> torch.Tensor:
    """``[n]`` bool: search positions set aside to validate the choice among candidates
    (``Options.validate > 1``): every fifth, next to the held-out ones."""
    return torch.arange(n) % HELD_OUT_EVERY == HELD_OUT_EVERY - 2


def _say(opts: Options, text: str) -> None:
    if opts.progress:
        print(text, flush=True)


def load_concepts(run: Path, n: int, opts: Options) -> RunConcepts:
    from unitscope.describe.folder import open_data

    config = json.loads((run / CONFIG).read_text())
    labels = json.loads((run / LABELS).read_text())
    data = open_data(config)
    vocab = Vocabulary.from_labels(labels["names"], labels["categories"])
    sh, sw = data.mask_size
    f = -(-max(sh, sw) // WORKING_SIDE)
    size = (sh // f, sw // f)
    start = time.perf_counter()
    bits = [
        image_concepts(item["labels"], item["image_labels"], data.plane_category, data.categories, vocab, size)
        for item in (data.get(p, image=False) for p in range(n))
    ]
    sigs = Signatures.build(bits)
    _say(
        opts,
        f"concepts of {n} images at {size[0]}x{size[1]}: {len(vocab)} concepts, {sigs.size} signatures "
        f"({time.perf_counter() - start:.0f} s)",
    )
    return RunConcepts(vocab, sigs, size)


def formula_text(vocab: Vocabulary, concepts: list[int], ops: list[int]) -> str:
    out = ""
    for j, (c, o) in enumerate(zip(concepts, ops)):
        if c < 0:
            break
        out = vocab.names[c] if j == 0 else (f"({out})" if j > 1 else out) + f" {OP_NAMES[o]} {vocab.names[c]}"
    return out


def describe_formula(vocab: Vocabulary, concepts: list[int], ops: list[int]) -> str:
    used = [(vocab.names[c], vocab.categories[c]) for c in concepts if c >= 0]
    return render(used, ops[: len(used)])


def search_layer(run: Path, layer: str, rc: RunConcepts, opts: Options) -> dict[str, Any]:
    """Exemplars among the search images, beam search, PMI and ML choice for every unit."""
    n = rc.sigs.ids.shape[0]
    val = validation(n) if opts.validate > 1 else torch.zeros(n, dtype=torch.bool)
    search = torch.nonzero(~held_out(n) & ~val).flatten()
    thresholds = ex.threshold(run, layer, opts.quantile)
    images, _ = ex.top_images(run, layer, search, opts.exemplars)  # [C, E]
    c, e = images.shape
    # the exemplar maps, read image by image (each image once, whichever units it serves)
    masks = torch.zeros(c, e, rc.size[0] * rc.size[1], dtype=torch.bool)
    needed = torch.unique(images)
    for start in range(0, len(needed), 100):
        pos = needed[start : start + 100]
        maps = ex.unit_maps(run, layer, pos.tolist())  # [b, C, h, w]
        where = torch.searchsorted(pos, images.clamp(max=int(pos[-1])))
        hit = pos[where] == images  # [C, E]
        u, r = hit.nonzero(as_tuple=True)
        masks[u, r] = ex.masks_of(maps[where[u, r], u], thresholds[u], rc.size).flatten(1)
    counts = unit_counts(rc.sigs.ids, images, masks, rc.sigs.size)
    found = beam_search(counts, rc.sigs.table, rc.vocab.position, beam=opts.beam, length=opts.length)
    pool = pool_candidates(found, len(rc.vocab))
    rerank = None
    if opts.validate > 1:
        rerank = validation_f1(run, layer, rc, found, thresholds, torch.nonzero(val).flatten())
    choice = choose_candidates(
        found, pool, counts, rc.sigs.table, opts.lam, opts.prior_units, opts.seed, rerank=rerank, top=opts.validate
    )
    return {
        "images": images,
        "pool": pool,
        "choice": choice,
        "thresholds": thresholds,
        "counts": counts,
        "found": found,
        "rerank": rerank,  # [U, N] validation F1 of each candidate (None without validation)
    }


def validation_f1(
    run: Path,
    layer: str,
    rc: RunConcepts,
    found: Found,
    thresholds: torch.Tensor,
    positions: torch.Tensor,
    chunk: int = 16,
) -> torch.Tensor:
    """``[U, N]``: F1 of each unit's candidates (``found``) against its mask (above ``thresholds``)
    pooled over the images at ``positions``, all of them, not only the unit's exemplars: a
    candidate that covers much where the unit is silent scores low here. Counted per signature,
    as the search is: a formula's area is its signatures' pixel counts over the images (the same
    for every unit), its intersection the counts of the unit's mask pixels alone."""
    maps = ex.unit_maps(run, layer, positions.tolist())  # [V, C, h, w]
    ids = rc.sigs.ids[positions]  # [V, P]
    c, v, s = maps.shape[1], len(positions), rc.sigs.size
    total = torch.bincount(ids.flatten(), minlength=s).float()  # [S] pixels per signature
    out = torch.zeros(found.score.shape, dtype=torch.float64)
    for start in range(0, c, chunk):
        units = torch.arange(start, min(start + chunk, c))
        masks = ex.masks_of(maps[:, units].transpose(0, 1), thresholds[units, None].expand(-1, v), rc.size)
        uu, vv, pp = masks.flatten(2).nonzero(as_tuple=True)
        inside = torch.zeros(len(units), s)
        inside.index_put_((uu, ids[vv, pp]), torch.ones(len(uu)), accumulate=True)  # [u, S] mask pixels
        cand = found.concepts[units]  # [u, N, 3]
        truth = evaluate(cand.flatten(0, 1), found.ops[units].flatten(0, 1), rc.sigs.table)  # [u*N, S]
        truth = truth.view(len(units), cand.shape[1], s).float()
        inter = torch.bmm(truth, inside[:, :, None])[..., 0].double()  # [u, N]
        area = (truth @ total).double()
        m = inside.sum(1).double()[:, None]
        out[units] = torch.where(m + area > 0, 2 * inter / (m + area).clamp_min(1), torch.zeros_like(inter))
    return out.masked_fill(~torch.isfinite(found.score), float("-inf"))


def search_labels(
    run: Path, layer: str, rc: RunConcepts, positions: torch.Tensor, batch: int = 50, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(concept [C], iou [C])``: each unit's single label chosen as the dissection chooses it (the
    concept, positions excluded, with the best IoU of the unit's mask above the dissection's own
    threshold T_k), but counted over the images at ``positions`` only (the search images: no
    held-out image), at the working resolution. ``concept`` is -1 where every IoU is 0. Counted per
    signature: ``inside [C, S]`` mask pixels, ``total [S]`` all pixels, so IoU(c) is
    ``inside @ table[:, c] / (mask + area(c) - inside @ table[:, c])``."""
    from unitscope.dissect.results import load_layer_arrays

    t = torch.as_tensor(load_layer_arrays(run, layer)["thresholds"], dtype=torch.float32)  # [C]
    ids, s = rc.sigs.ids[positions], rc.sigs.size  # [n, P]
    inside = torch.zeros(len(t), s, dtype=torch.float64)
    for start in range(0, len(positions), batch):
        maps = ex.unit_maps(run, layer, positions[start : start + batch].tolist())  # [b, C, h, w]
        # only (image, unit) pairs whose peak passes T_k can have a mask pixel (bilinear
        # interpolation never exceeds the map's maximum): few, with T_k at the top 0.5%
        i_all, u_all = (maps.flatten(2).amax(2) > t[None]).nonzero(as_tuple=True)
        for k0 in range(0, len(i_all), chunk):
            i, u = i_all[k0 : k0 + chunk], u_all[k0 : k0 + chunk]
            masks = ex.masks_of(maps[i, u], t[u], rc.size).flatten(1)  # [pairs, P]
            j, p = masks.nonzero(as_tuple=True)
            inside.index_put_((u[j], ids[start + i[j], p]), torch.ones(len(j), dtype=torch.float64), accumulate=True)
    table = rc.sigs.table.double()  # [S, K]
    total = torch.bincount(ids.flatten(), minlength=s).double()  # [S]
    inter = inside @ table  # [C, K]
    union = inside.sum(1, keepdim=True) + (total @ table)[None] - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))
    iou[:, torch.tensor([c == POSITION_CATEGORY for c in rc.vocab.categories])] = -1
    best, value = iou.argmax(1), iou.max(1).values
    return torch.where(value > 0, best, -1), value.clamp_min(0).float()


def label_formulas(run: Path, model: str, layer: str, vocab: Vocabulary, units: int) -> torch.Tensor:
    """``[C]`` concept index of each unit's dissection label (-1: none)."""
    from unitscope.catalog import Catalog

    out = torch.full((units,), -1, dtype=torch.long)
    with Catalog(run / CATALOG, create=False) as cat:
        for row in cat.rows("dissection", model=model, layer=layer):
            if row["concept"] in vocab.names and row["unit"] < units:
                out[row["unit"]] = vocab.index(row["concept"])
    return out


def score_layer(
    run: Path,
    layer: str,
    rc: RunConcepts,
    formulas: dict[str, tuple[torch.Tensor, torch.Tensor]],
    thresholds: torch.Tensor,
    opts: Options,
    chunk: int = 64,
) -> dict[str, dict[str, torch.Tensor]]:
    """Held-out scores of each kind's formulas ``(concepts [C, 3], ops [C, 3])`` (-1 rows: none)."""
    held = torch.nonzero(held_out(rc.sigs.ids.shape[0])).flatten()
    maps = ex.unit_maps(run, layer, held.tolist())  # [N_h, C, h, w]
    ids = rc.sigs.ids[held]  # [N_h, P]
    c = maps.shape[1]
    hw = maps.shape[-2:]
    out: dict[str, dict[str, list[torch.Tensor]]] = {k: {} for k in formulas}
    for start in range(0, c, chunk):
        units = torch.arange(start, min(start + chunk, c))
        acts = maps[:, units].transpose(0, 1)  # [u, N_h, h, w]
        masks = ex.masks_of(acts, thresholds[units, None].expand(-1, len(held)), rc.size).flatten(2)
        for kind, (concepts, ops) in formulas.items():
            truth = evaluate(concepts[units], ops[units], rc.sigs.table)  # [u, S]
            truth &= concepts[units, :1] >= 0
            concept = truth[:, ids]  # [u, N_h, P]
            coverage = F.adaptive_avg_pool2d(concept.view(-1, 1, *rc.size).float(), hw).view(len(units), len(held), -1)
            s = heldout_scores(masks, concept, acts.flatten(2), coverage, draws=opts.draws, seed=opts.seed)
            for name, v in s.items():
                out[kind].setdefault(name, []).append(v)
    return {k: {name: torch.cat(v) for name, v in d.items()} for k, d in out.items()}


def describe_layer(run: Path, model: str, layer: str, rc: RunConcepts, opts: Options) -> dict[str, list[dict]]:
    start = time.perf_counter()
    found = search_layer(run, layer, rc, opts)
    pool, choice = found["pool"], found["choice"]
    c = len(choice.pmi)
    _say(
        opts,
        f"{layer}: searched {c} units, {len(pool.concepts)} distinct formulas ({time.perf_counter() - start:.0f} s)",
    )
    label = label_formulas(run, model, layer, rc.vocab, c)
    n = rc.sigs.ids.shape[0]
    t0 = time.perf_counter()
    fair, fair_iou = search_labels(run, layer, rc, torch.nonzero(~held_out(n)).flatten())
    _say(
        opts,
        f"{layer}: fair single labels chosen on {n - int(held_out(n).sum())} search images "
        f"({time.perf_counter() - t0:.0f} s)",
    )
    formulas = {}
    for kind, idx in (("pmi", choice.pmi), ("ml", choice.ml)):
        concepts = torch.full((c, 3), -1, dtype=torch.long)
        ops = torch.full((c, 3), -1, dtype=torch.long)
        ok = idx >= 0
        concepts[ok], ops[ok] = pool.concepts[idx[ok]], pool.ops[idx[ok]]
        formulas[kind] = (concepts, ops)
    for kind, single in (("label", label), ("fair_label", fair)):
        lc = torch.full((c, 3), -1, dtype=torch.long)
        lo = torch.full((c, 3), -1, dtype=torch.long)
        lc[:, 0], lo[:, 0] = single, torch.where(single >= 0, FIRST, -1)
        formulas[kind] = (lc, lo)
    t1 = time.perf_counter()
    held = score_layer(run, layer, rc, formulas, found["thresholds"], opts)
    _say(
        opts,
        f"{layer}: scored on {int(held_out(rc.sigs.ids.shape[0]).sum())} held-out images "
        f"({time.perf_counter() - t1:.0f} s)",
    )
    rows: dict[str, list[dict]] = {}
    for kind, (concepts, ops) in formulas.items():
        idx = {"pmi": choice.pmi, "ml": choice.ml}.get(kind)
        rows[kind] = []
        for u in range(c):
            cl, ol = concepts[u].tolist(), ops[u].tolist()
            row: dict[str, Any] = {"unit": u, "kind": kind, "images": int(held_out(rc.sigs.ids.shape[0]).sum())}
            if cl[0] >= 0:
                row.update(
                    description=describe_formula(rc.vocab, cl, ol),
                    formula=formula_text(rc.vocab, cl, ol),
                    length=sum(x >= 0 for x in cl),
                )
                for name, v in held[kind].items():
                    x = float(v[u])
                    row[name] = None if math.isnan(x) else x
            if kind == "pmi" and idx[u] >= 0:
                row.update(
                    exemplar_iou=float(choice.exemplar_iou[u]),
                    log_prior=float(choice.log_prior[u]),
                    pmi=float(choice.score[u]),
                )
            elif kind == "ml" and idx[u] >= 0:
                row.update(exemplar_iou=float(choice.ml_exemplar_iou[u]), log_prior=float(choice.ml_log_prior[u]))
            elif kind == "fair_label" and cl[0] >= 0:
                row.update(search_iou=float(fair_iou[u]))
            rows[kind].append(row)
    return rows


def model_name(run: Path) -> str:
    from unitscope.catalog import Catalog

    with Catalog(run / CATALOG, create=False) as cat:
        rows = cat.query("SELECT DISTINCT model FROM layers UNION SELECT DISTINCT model FROM dissection")
    if not rows:
        raise ValueError(f"{run} has no dissected layers in its catalog")
    return rows[0]["model"]


def run_layers(run: Path, layers: list[str] | None = None) -> list[str]:
    """``layers`` checked against the run's dissected layers (``layers.json``); default: all of them."""
    tags = json.loads((run / LAYERS).read_text())
    layers = layers or list(tags.values())
    unknown = [x for x in layers if x not in tags.values()]
    if unknown:
        raise ValueError(f"{run} has no dissected layer(s) {unknown}; it has {', '.join(tags.values())}")
    return layers


def describe_run(run: str | Path, layers: list[str] | None = None, opts: Options | None = None) -> DescribeResult:
    """Describe every unit of ``layers`` (default: every dissected layer) and write the rows; returns
    them per layer and kind (a :class:`~unitscope.describe.result.DescribeResult`, with ``summary()``)."""
    from unitscope.catalog import Catalog
    from unitscope.describe import tables  # noqa: F401  (declares the table)

    run, opts = Path(run), opts or Options()
    layers = run_layers(run, layers)
    model = model_name(run)
    n = ex.num_images(run, layers[0])
    rc = load_concepts(run, n, opts)
    out = DescribeResult(run)
    for layer in layers:
        rows = describe_layer(run, model, layer, rc, opts)
        with Catalog(run / CATALOG) as cat:
            cat.replace("descriptions", [r for k in rows.values() for r in k], model=model, layer=layer)
        out.layers[layer] = rows
    return out
