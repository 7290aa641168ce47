"""The findings of docs/describe.md: chosen descriptions against the dissection's single labels and
against maximum likelihood, per layer, from runs that `unitscope describe` has filled.

    python docs/make_describe_findings.py RUN [RUN ...] [--sheet docs/describe_examples.png --sheet-run RUN]
    python docs/make_describe_findings.py --vocabulary WORLD     # paraphrases over a world's concepts
    python docs/make_describe_findings.py --validate-sweep RUN:LAYER --ks 5,10 --draws 8   # --validate K

Prints, per layer, the mean held-out F1 / IoU / AUPRC / Pearson of the four kinds of description
(pmi: chosen; ml: maximum likelihood; fair_label: the single label chosen on the search images;
label: the dissection's label, chosen on all images), the chosen one paired with each baseline
(means, medians, share of units it wins, Wilcoxon signed-rank p per metric), and specificity:
distinct descriptions, the mean number of units that share a unit's description, the mean base
rate of the description's concept and its mean log p(d) (lower is more specific). ``--sheet`` draws the exemplars (mask
outlined) of the best-scoring units of one layer of ``--sheet-run`` with their descriptions.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from unitscope.catalog import Catalog
from unitscope.describe import tables  # noqa: F401

METRICS = ("f1", "iou", "auprc", "pearson")


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")


def layer_rows(run: Path) -> dict[tuple[str, str], dict[str, list[dict]]]:
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        rows = cat.rows("descriptions")
    out: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for r in rows:
        out.setdefault((r["model"], r["layer"]), {}).setdefault(r["kind"], []).append(r)
    return out


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    n = len(xs)
    return float("nan") if not n else (xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2)


def wilcoxon(diffs: list[float]) -> float:
    """Two-sided p-value of Wilcoxon's signed-rank test (zero differences dropped, tied ranks
    averaged, normal approximation with the tie correction): do the paired differences centre on 0?"""
    import math

    d = [x for x in diffs if x != 0]
    n = len(d)
    if n == 0:
        return 1.0
    order = sorted(range(n), key=lambda i: abs(d[i]))
    ranks = [0.0] * n
    ties = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and abs(d[order[j + 1]]) == abs(d[order[i]]):
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    w = sum(r for r, x in zip(ranks, d) if x > 0)
    mean = n * (n + 1) / 4
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24 - ties / 48)
    z = (w - mean) / sd if sd > 0 else 0.0
    return math.erfc(abs(z) / math.sqrt(2))


def paired(a: dict[int, dict], b: dict[int, dict], metrics=METRICS) -> dict[str, tuple]:
    """Per metric over the units both describe: (units, mean a, mean b, median a, median b, mean of
    a - b, share of units where a > b, Wilcoxon p). A missing score counts as 0 (no mask, no match)."""
    both = sorted(u for u in a if u in b)
    out = {}
    for m in metrics:
        x = [a[u][m] or 0.0 for u in both]
        y = [b[u][m] or 0.0 for u in both]
        diff = [i - j for i, j in zip(x, y)]
        wins = sum(1 for v in diff if v > 0)
        out[m] = (
            len(both),
            mean(x),
            mean(y),
            median(x),
            median(y),
            mean(diff),
            wins / max(len(both), 1),
            wilcoxon(diff),
        )
    return out


def print_paired(name: str, a: dict[int, dict], b: dict[int, dict], against: str) -> None:
    print(f"\n{name} against {against} (held out; paired over units; p: Wilcoxon signed-rank, two-sided):\n")
    print("| metric | units | mean | mean (baseline) | median | median (baseline) | mean difference | wins | p |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m, (n, ma, mb, da, db, diff, win, p) in paired(a, b).items():
        print(f"| {m} | {n} | {ma:.3f} | {mb:.3f} | {da:.3f} | {db:.3f} | {diff:+.3f} | {100 * win:.0f}% | {p:.2g} |")


def sharing(rows: list[dict]) -> float:
    """Mean over described units of how many units share its description."""
    counts = Counter(r["description"] for r in rows if r["description"])
    return mean([counts[r["description"]] for r in rows if r["description"]])


def report(run: Path) -> None:
    for (model, layer), kinds in layer_rows(run).items():
        print(f"\n### {model} `{layer}` ({len(kinds['pmi'])} units, {kinds['pmi'][0]['images']} held-out images)\n")
        print(
            "| description | units described | F1 | IoU | AUPRC | Pearson | F1 p < 0.01 | distinct | units per description "
            "| mean base rate | mean log p(d) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for kind, name in (
            ("pmi", "chosen (PMI, λ = 0.2)"),
            ("ml", "maximum likelihood"),
            ("fair_label", "single label, fair (search images)"),
            ("label", "dissection label (all images: leaky)"),
        ):
            rs = [r for r in kinds.get(kind, []) if r["description"]]
            sig = sum(1 for r in rs if r["p_f1"] is not None and r["p_f1"] < 0.01)
            print(
                f"| {name} | {len(rs)} | "
                + " | ".join(f"{mean([r[m] for r in rs]):.3f}" for m in METRICS)
                + f" | {sig} | {len({r['description'] for r in rs})} | {sharing(rs):.1f} | "
                f"{mean([r['base_rate'] for r in rs]):.3f} | {mean([r['log_prior'] for r in rs]):.2f} |".replace(
                    "nan", ""
                )
            )
        pmi = {r["unit"]: r for r in kinds["pmi"] if r["description"]}
        lab = {r["unit"]: r for r in kinds.get("label", []) if r["description"]}
        fair = {r["unit"]: r for r in kinds.get("fair_label", []) if r["description"]}
        ml = {r["unit"]: r for r in kinds.get("ml", []) if r["description"]}
        if fair:
            print_paired("The chosen description (PMI)", pmi, fair, "the fair single label")
            same = sum(1 for u in fair if u in lab and fair[u]["formula"] == lab[u]["formula"])
            print(f"\nThe fair label is the dissection's label on {same} of {len(fair)} units.")
        if lab:
            print_paired("The chosen description (PMI)", pmi, lab, "the dissection label (leaky)")
        if ml:
            print_paired("The chosen description (PMI)", pmi, ml, "maximum likelihood")
        best = sorted(pmi.values(), key=lambda r: -(r["f1"] or 0))[:8]
        print("\nBest-scoring units (held-out F1, its p-value, base rate; the dissection label in brackets):\n")
        for r in best:
            label = lab.get(r["unit"], {}).get("description")
            print(
                f"- unit {r['unit']}: **{r['description']}** — F1 {r['f1']:.2f} (p {r['p_f1']:.1g}), "
                f"Pearson {r['pearson']:.2f}, base rate {r['base_rate']:.3f} [{label}: F1 "
                f"{(lab.get(r['unit'], {}).get('f1') or 0):.2f}]"
            )


def summary(runs: list[Path]) -> None:
    """One table over every layer of ``runs``: the chosen description against the fair single label
    per metric, and one of specificity, PMI against maximum likelihood."""
    layers = [(key, kinds) for run in runs for key, kinds in layer_rows(run).items()]
    print("\nChosen descriptions (PMI) against the fair single label, held out (p: Wilcoxon signed-rank):\n")
    print("| layer | units | metric | description mean (median) | fair label mean (median) | difference | wins | p |")
    print("|---|---|---|---|---|---|---|---|")
    for (model, layer), kinds in layers:
        pmi = {r["unit"]: r for r in kinds.get("pmi", []) if r["description"]}
        fair = {r["unit"]: r for r in kinds.get("fair_label", []) if r["description"]}
        for m, (n, ma, mb, da, db, diff, win, p) in paired(pmi, fair).items():
            print(
                f"| {model} `{layer}` | {n} | {m} | {ma:.3f} ({da:.3f}) | {mb:.3f} ({db:.3f}) | {diff:+.3f} | "
                f"{100 * win:.0f}% | {p:.2g} |"
            )
    print("\nSpecificity, PMI (λ = 0.2) against maximum likelihood:\n")
    print(
        "| layer | distinct (PMI / ML) | units per description (PMI / ML) | mean log p(d) (PMI / ML) "
        "| mean base rate (PMI / ML) | mean length (PMI / ML) |"
    )
    print("|---|---|---|---|---|---|")
    for (model, layer), kinds in layers:
        a, b = ([r for r in kinds.get(k, []) if r["description"]] for k in ("pmi", "ml"))
        cells = [
            f"{len({r['description'] for r in a})} / {len({r['description'] for r in b})}",
            f"{sharing(a):.2f} / {sharing(b):.2f}",
        ] + [
            f"{mean([r[c] for r in a]):.{d}f} / {mean([r[c] for r in b]):.{d}f}"
            for c, d in (("log_prior", 2), ("base_rate", 3), ("length", 2))
        ]
        print(f"| {model} `{layer}` | " + " | ".join(cells) + " |")


PARAPHRASES = {  # query -> the concept it paraphrases (skipped where no unit's description names it)
    "automobile": "car",
    "canine": "dog",
    "pooch": "dog",
    "equine": "horse",
    "motorcar": "car",
    "dwelling": "house",
    "ocean": "sea",
    "vessel": "boat",
    "individual": "person",
    "lumber": "wood",
    "grassland": "field",
    "timber": "wood",
    "flora": "tree",
    "songster": "songbird",
    "hog": "pig",
    "bovine": "cattle",
    "rabbit": "rabbit",
    "meadow": "field",
    "woodland": "forest",
    "seaside": "beach",
    "coast": "beach",
    "heavens": "sky",
    "lamppost": "lamp",
    "cupboard": "cabinet",
    "human": "person",
    "port": "harbour",
    "peak": "mountain",
    "lake": "water",
    "shingles": "roof",
    "pup": "dog",
    "stallion": "horse",
    "cow": "cattle",
    "swine": "pig",
    "airplane": "aircraft",
    "mailbox": "postbox",
    "bunny": "rabbit",
    "feline": "big_cat",
    "monkey": "ape",
    "lettuce": "leaf_vegetable",
    "guitar": "string_instrument",
    "cobblestone": "stone",
    "pebbles": "gravel",
    "soil": "dirt",
}


def _ranked(hits: list[tuple[str, int]], targets: set) -> tuple[int, float, float, float]:
    ok = len(set(hits) & targets)
    r_prec = len(set(hits[: len(targets)]) & targets) / len(targets)  # of the top |targets| hits
    return len(hits), ok / len(targets), (ok / len(hits) if hits else 0.0), r_prec


def retrieval(run: Path) -> None:
    """Search by paraphrase, words and WordNet alone and with sentence embeddings: the units whose
    chosen description asserts the concept are the targets."""
    from unitscope.describe.embed import default_embedder
    from unitscope.describe.search import WordNet, positive_concepts, search_units

    wn, embed = WordNet(), default_embedder()
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        rows = [r for r in cat.rows("descriptions", kind="pmi") if r["formula"]]
    print(
        f"\nSearch by paraphrase ({'WordNet' if wn.available else 'no WordNet: words only'}; "
        f"{'with' if embed else 'no'} embeddings); targets are the units whose chosen description asserts the concept:\n"
    )
    print(
        "| query | concept | targets | found | recall | precision | R-precision | found (+emb) | recall | precision "
        "| R-precision |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for query, concept in PARAPHRASES.items():
        targets = {(r["layer"], r["unit"]) for r in rows if concept in positive_concepts(r["formula"])}
        if not targets or query == concept:
            continue
        cells = []
        for e in (False, embed or False):
            hits = [(h["layer"], h["unit"]) for h in search_units(run, query, limit=0, wordnet=wn, embed=e)]
            n, rec, prec, rp = _ranked(hits, targets)
            cells.append(f"{n} | {rec:.2f} | {prec:.2f} | {rp:.2f}")
        print(f"| {query} | {concept} | {len(targets)} | " + " | ".join(cells) + " |")


def vocabulary_retrieval(world: Path) -> None:
    """Search by paraphrase over a world's vocabulary (one description per concept): the rank of the
    paraphrased concept and how many concepts match, without and with embeddings."""
    from unitscope.data import BrodenDataset
    from unitscope.describe.embed import default_embedder
    from unitscope.describe.search import WordNet, match_scores
    from unitscope.describe.train_captioner import world_vocabulary

    vocab = world_vocabulary(BrodenDataset(world, validate="none"))
    names = [n for n, c in zip(vocab.names, vocab.categories) if c != "position"]
    wn, embed = WordNet(), default_embedder()
    print(
        f"\nParaphrases over the {len(names)} concepts of {world}: rank of the concept (- : not matched), concepts "
        "matched\n\n| query | concept | rank | matched | rank (+emb) | matched (+emb) |\n|---|---|---|---|---|---|"
    )
    for query, concept in PARAPHRASES.items():
        if concept not in names or query == concept:
            continue
        cells = []
        for e in (None, embed):
            s = match_scores(query, names, wn, e)
            order = sorted((i for i in range(len(names)) if s[i] > 0), key=lambda i: -s[i])
            rank = next((k + 1 for k, i in enumerate(order) if names[i] == concept), None)
            cells.append(f"{rank or '-'} | {len(order)}")
        print(f"| {query} | {concept} | " + " | ".join(cells) + " |")


def lambda_sweep(run: Path, layer: str, lams=(0.0, 0.1, 0.2, 0.5, 1.0)) -> None:
    """Specificity of the choice as lambda grows (exemplar search only: no held-out scoring)."""
    import torch

    from unitscope.describe import exemplars as ex
    from unitscope.describe.run import Options, load_concepts, search_layer
    from unitscope.describe.select import choose_candidates

    opts = Options(progress=False)
    rc = load_concepts(run, ex.num_images(run, layer), opts)
    found = search_layer(run, layer, rc, opts)
    print(f"\nλ sweep on `{layer}` (exemplar search only):\n")
    print(
        "| λ | distinct descriptions | units per description | mean exemplar IoU | mean log p(d) | formulas of 3 concepts |"
    )
    print("|---|---|---|---|---|---|")
    counts = found["counts"]
    for lam in lams:
        c = choose_candidates(found["found"], found["pool"], counts, rc.sigs.table, lam)
        ok = c.pmi >= 0
        idx = c.pmi[ok]
        per_unit = torch.bincount(idx)[idx].double().mean().item()
        three = (found["pool"].concepts[idx] >= 0).all(1).double().mean().item()
        print(
            f"| {lam} | {len(torch.unique(idx))} | {per_unit:.1f} | {c.exemplar_iou[ok].mean().item():.3f} | "
            f"{c.log_prior[ok].mean().item():.2f} | {100 * three:.0f}% |"
        )


def validate_sweep(run: Path, layer: str, ks=(5, 10), draws: int = 8, save: Path | None = None) -> None:
    """``--validate K`` for each K against K = 1 (the catalog's pmi rows) and the single labels (the
    catalog's fair_label and label rows): one search on the search images less the validation ones,
    the validation F1 of every candidate once, the choice for each K, held-out scores with the same
    ``draws`` and seed as the catalog's (run ``describe`` with ``--draws`` equal first)."""
    import time

    import torch

    from unitscope.describe import exemplars as ex
    from unitscope.describe.run import Options, load_concepts, score_layer, search_layer
    from unitscope.describe.select import choose_candidates

    if save is not None and save.exists():  # computed before: print only
        saved = json.loads(save.read_text())
        kinds = {k: {int(u): r for u, r in v.items()} for k, v in saved["kinds"].items()}
        return _sweep_table(run, layer, kinds, draws, saved["cpu"])
    start = time.process_time()
    opts = Options(validate=max(ks), draws=draws, progress=False)
    rc = load_concepts(run, ex.num_images(run, layer), opts)
    found = search_layer(run, layer, rc, opts)
    pool = found["pool"]
    formulas, chosen = {}, {}
    for k in ks:
        choice = choose_candidates(
            found["found"],
            pool,
            found["counts"],
            rc.sigs.table,
            opts.lam,
            opts.prior_units,
            opts.seed,
            rerank=found["rerank"],
            top=k,
        )
        idx, c = choice.pmi, len(choice.pmi)
        concepts = torch.full((c, 3), -1, dtype=torch.long)
        ops = torch.full((c, 3), -1, dtype=torch.long)
        ok = idx >= 0
        concepts[ok], ops[ok] = pool.concepts[idx[ok]], pool.ops[idx[ok]]
        formulas[f"K={k}"], chosen[f"K={k}"] = (concepts, ops), idx
    held = score_layer(run, layer, rc, formulas, found["thresholds"], opts)
    kinds = {}
    for k, idx in chosen.items():
        kinds[k] = {
            u: {m: (None if v[u].isnan() else float(v[u])) for m, v in held[k].items()}
            | {"d": int(idx[u]), "length": int((pool.concepts[idx[u]] >= 0).sum())}
            for u in range(len(idx))
            if idx[u] >= 0
        }
    cpu = time.process_time() - start
    if save is not None:
        save.write_text(json.dumps({"kinds": kinds, "cpu": cpu}))
    _sweep_table(run, layer, kinds, draws, cpu)


def _sweep_table(run: Path, layer: str, computed: dict[str, dict[int, dict]], draws: int, cpu: float) -> None:
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        rows = cat.rows("descriptions", layer=layer)
    by = {
        k: {r["unit"]: r for r in rows if r["kind"] == k and r["description"]} for k in ("pmi", "fair_label", "label")
    }
    kinds = {"K=1 (MILAN)": by["pmi"], **computed}
    print(
        f"\n`--validate K` on `{layer}` ({cpu:.0f} s of CPU for K > 1); wins and p against the "
        "fair single label; p: Wilcoxon signed-rank:\n"
    )
    print(
        "| choice | units | F1 | IoU | AUPRC | Pearson | F1 wins | F1 p | AUPRC wins | AUPRC p | Pearson wins | Pearson p "
        "| F1 p < 0.01 | distinct | mean length |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, rs in list(kinds.items()) + [("fair single label", by["fair_label"]), ("dissection label", by["label"])]:
        cells = [f"{mean([r[m] for r in rs.values()]):.3f}" for m in METRICS]
        if rs is by["fair_label"] or rs is by["label"]:
            vs = ["", "", "", "", "", ""]
        else:
            pr = paired(rs, by["fair_label"])
            vs = [x for m in ("f1", "auprc", "pearson") for x in (f"{100 * pr[m][6]:.0f}%", f"{pr[m][7]:.2g}")]
        sig = sum(1 for r in rs.values() if r.get("p_f1") is not None and r["p_f1"] < 0.01)
        sig = sig if draws or name == "K=1 (MILAN)" or "label" in name else "–"  # --draws 0: no nulls
        distinct = len({r.get("description") or r.get("d") for r in rs.values()})
        print(
            f"| {name} | {len(rs)} | "
            + " | ".join(cells + vs)
            + f" | {sig} | {distinct} | {mean([r.get('length') for r in rs.values()]):.2f} |"
        )

    base = kinds["K=1 (MILAN)"]
    print(
        "\nEach K against K = 1 (paired over units; mean difference, share of units where K is better, Wilcoxon p):\n"
    )
    print("| choice | " + " | ".join(f"{m} difference | {m} better | {m} p" for m in METRICS) + " |")
    print("|---|" + "---|---|---|" * len(METRICS))
    for name, rs in computed.items():
        pr = paired(rs, base)
        print(
            f"| {name} | "
            + " | ".join(f"{pr[m][5]:+.3f} | {100 * pr[m][6]:.0f}% | {pr[m][7]:.2g}" for m in METRICS)
            + " |"
        )


def sheet(run: Path, layer: str, out: Path, units: int = 6, k: int = 5) -> None:
    """Exemplars (mask outlined in yellow) of the layer's best-scoring units, one row each."""
    import json

    import numpy as np
    import torch
    from PIL import Image, ImageDraw

    from unitscope.data import BrodenDataset
    from unitscope.describe.exemplars import exemplars
    from unitscope.describe.run import held_out

    with Catalog(run / "catalog.sqlite", create=False) as cat:
        rows = [r for r in cat.rows("descriptions", layer=layer, kind="pmi") if r["description"]]
        fair = {r["unit"]: r for r in cat.rows("descriptions", layer=layer, kind="fair_label") if r["description"]}
    rows.sort(key=lambda r: -(r["f1"] or 0))
    data = BrodenDataset(json.loads((run / "config.json").read_text())["data"], validate="none")
    tile, text_h = 96, 18
    canvas = Image.new("RGB", (k * (tile + 4) + 4, units * (tile + text_h + 6) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    search = torch.nonzero(~held_out(len(data))).flatten()
    for i, r in enumerate(rows[:units]):
        ex = exemplars(run, layer, r["unit"], k=k, positions=search, quantile=0.99)
        y = 4 + i * (tile + text_h + 6)
        f = fair.get(r["unit"])
        also = f"; fair single label: {f['description']}, {f['f1']:.2f}" if f else ""
        draw.text((4, y), f"unit {r['unit']}: {r['description']}  (held-out F1 {r['f1']:.2f}{also})", fill="black")
        for j, (pos, mask) in enumerate(zip(ex.positions.tolist(), ex.masks)):
            img = data.load_image(pos).convert("RGB").resize((tile, tile))
            m = np.asarray(Image.fromarray(mask.numpy().astype(np.uint8) * 255).resize((tile, tile)))
            a = np.asarray(img).copy()
            edge = (m > 127) & ~(
                np.roll(m > 127, 1, 0) & np.roll(m > 127, -1, 0) & np.roll(m > 127, 1, 1) & np.roll(m > 127, -1, 1)
            )
            a[m <= 127] = (a[m <= 127] * 0.45).astype(np.uint8)
            a[edge] = (255, 220, 0)
            canvas.paste(Image.fromarray(a), (4 + j * (tile + 4), y + text_h))
    canvas.save(out)
    print(f"\nwrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--sheet")
    ap.add_argument("--sheet-run")
    ap.add_argument("--sheet-layer", default="features.relu5")
    ap.add_argument("--sweep", help="RUN:LAYER to sweep lambda on")
    ap.add_argument("--vocabulary", help="a world folder: paraphrase search over its concepts")
    ap.add_argument("--validate-sweep", help="RUN:LAYER: --validate K for K in --ks against K = 1 and the labels")
    ap.add_argument("--ks", default="5,10")
    ap.add_argument("--draws", type=int, default=8, help="with --validate-sweep: as the catalog's rows were scored")
    ap.add_argument(
        "--save", help="with --validate-sweep: keep the computed rows here (JSON); if it exists, print only"
    )
    ap.add_argument("--summary", action="store_true", help="only the one table over every layer of the runs")
    ap.add_argument("--no-retrieval", action="store_true", help="skip the search-by-paraphrase tables")
    args = ap.parse_args()
    if args.validate_sweep:
        run, layer = args.validate_sweep.split(":", 1)
        ks = tuple(int(k) for k in args.ks.split(","))
        validate_sweep(Path(run), layer, ks, args.draws, Path(args.save) if args.save else None)
    if args.vocabulary:
        vocabulary_retrieval(Path(args.vocabulary))
    if args.summary:
        summary([Path(r) for r in args.runs])
    for run in args.runs:
        if args.summary:
            break
        report(Path(run))
        if not args.no_retrieval:
            retrieval(Path(run))
    if args.sweep:
        run, layer = args.sweep.split(":", 1)
        lambda_sweep(Path(run), layer)
    if args.sheet:
        sheet(Path(args.sheet_run or args.runs[0]), args.sheet_layer, Path(args.sheet))


if __name__ == "__main__":
    main()
