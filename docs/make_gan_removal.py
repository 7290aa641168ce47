"""Issue 24 item 3's removal finding on world_generator, case by case (docs/gan.md "Where the removal
finding holds"): per layer and concept, the top k units of several rankings switched off.

    python docs/make_gan_removal.py RUN --cases relu1:tree,relu2:sky --rankings iou,iqr,ace,sace \\
        [--samples 1000] [--k 20] [--grid relu1:tree:iou] [--grid-png docs/gan_removal_grid.png]
        [--model my_gen.py:factory] [--segmenter world_segmenter]

``RUN`` is a dissection of ``--model`` (default world_generator; a registered name or a user generator
``file.py:factory``, its output range as its ModelInfo declares) against ``--segmenter`` at the cases'
layers (its IoU ranking). Rankings: ``iou`` (the dissection's, each unit's top 1%), ``iqr`` (gandissect's: each
unit's best information quality ratio over ``--iqr-samples`` samples of seed 0, ``gan.iqr``),
``ace`` (the soft removal mask, ``--ace-samples`` samples of seed 2, ``--ace-steps`` steps,
``--ace-norm`` penalty (l2) of weight ``--ace-penalty`` (0.01), lr ``--ace-lr`` (0.2), logits from ``--ace-init`` (0)),
``sace`` (the same with ``specific=--specific``: the mask also pays for
the other labels' relative change) and ``greedy`` (``gan.select``: units chosen one at a time from the
union of ``--greedy-pool``'s rankings' tops, e.g. ``ace:40,iou:20``, on ``--greedy-samples`` samples of
``--greedy-seed`` (2; never 1), each step the largest removal that keeps every other object within
+-``--greedy-max-other`` (0.07); ``--greedy-shortlist M``: from step 2 only the previous step's best M),
``swap`` (``gan.select.swap_search``: the top ``--k`` of ``--swap-start``'s ranking, e.g. ``greedy`` or ``iou``,
improved by swaps with the units of ``--swap-pool`` (as ``--greedy-pool``) on ``--swap-samples`` samples of
``--swap-seed`` (never 1): first into +-``--swap-max-other`` (0.1), then more of the concept within it;
at most ``--swap-rounds`` swaps, ``--swap-exact`` of each round's screened swaps evaluated exactly; beyond the
bound ``--swap-repair steepest`` makes the swap with the smallest excess, ``gentle`` the one keeping most of it).
Each ranking's top ``--k`` units are zeroed over ``--samples`` samples of ``--seed`` (1; never a selection's seed), beside ``--k`` random
units (``--random-draws`` draws). Per case it
prints a table: every object covering >= 0.5% of the pixels, its share before, its change relative
to that share (99% interval; points of the image in brackets) under each ranking and at random, and
the verdict (the concept -50% or more and no other object beyond +-10%, the issue's measure). For
the first ranking it also tallies, over the first ``--replace-samples`` samples, what the
concept's pixels become, and for each other object beyond +-10% how much of its change lies in
the concept's former pixels. ``--grid``: the 8 samples with most of the concept, before and after.
``--orders-json FILE``: the rankings (and the greedy selection's and swap search's figures) are written there
and read back by a later run, which computes only the rankings not there yet (e.g. to confirm at 1,000 samples,
or to try the greedy selection with other settings on the same ACE mask, in a copy without its "greedy" entry;
or a swap search from the greedy set already there).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

DOCS = Path(__file__).resolve().parent
NAMES = {"iou": "IoU", "iqr": "IQR", "ace": "ACE", "sace": "specific ACE", "greedy": "greedy", "swap": "swap"}


def rankings(g, seg, cut, run: str, layer: str, concept: str, args, known: dict | None = None) -> dict[str, list[int]]:
    """The rankings ``args.rankings`` names, best unit first; those in ``known`` are taken from there."""
    from unitscope.gan import GeneratorActivations, cache_samples
    from unitscope.gan.ace import ace_mask
    from unitscope.gan.iqr import iqr_ranking
    from unitscope.gan.run import unit_order
    from unitscope.models import get_info

    rng = get_info(g).output_range

    orders: dict[str, list[int]] = dict(known or {})

    def compute(name: str) -> list[int]:
        t0, c0 = time.perf_counter(), time.process_time()
        if name == "iou":
            order = unit_order(run, layer, concept)[0]
        elif name == "iqr":
            r = iqr_ranking(GeneratorActivations(g, [layer], n=args.iqr_samples, seed=0), seg, concept)
            order = r.ranking()
            print(r.summary(5))
        elif name in ("ace", "sace"):
            few = selection_samples("the ACE mask", 2, args.ace_samples)
            spec = args.specific if name == "sace" else 0.0
            m = ace_mask(
                cut,
                few,
                seg,
                concept,
                penalty=args.ace_penalty,
                norm=args.ace_norm,
                steps=args.ace_steps,
                lr=args.ace_lr,
                init=args.ace_init,
                specific=spec,
                output_range=rng,
            )
            order = m.ranking()
            print(f"{NAMES[name]}: {m.summary(5)}")
        elif name == "greedy":
            order = greedy(compute, orders)
        elif name == "swap":
            order = swap(compute, orders)
        else:
            raise SystemExit(f"unknown ranking {name!r}: iou, iqr, ace, sace, greedy or swap")
        print(
            f"  ({layer} {concept} {name}: {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU)",
            flush=True,
        )
        orders[name] = order
        return order

    def selection_samples(what: str, seed: int, n: int):
        """``n`` samples of ``seed`` for a ranking that learns from samples (``what`` selects on them),
        never those of the held-out ``--seed``."""
        if seed == args.seed:
            raise SystemExit(f"{what} selects on seed {seed}, the held-out --seed: choose another for one of them")
        return cache_samples(cut, g, n=n, seed=seed, batch_size=50)

    def greedy(compute, orders: dict[str, list[int]]) -> list[int]:
        """The greedy causal ranking (gan.select) on --greedy-samples samples of --greedy-seed, its pool
        the union of the named rankings' tops (--greedy-pool, e.g. ace:40,iou:20)."""
        from unitscope.gan.select import greedy_ranking

        pool = union(args.greedy_pool, compute, orders)
        few = selection_samples("--greedy-seed", args.greedy_seed, args.greedy_samples)
        r = greedy_ranking(
            cut,
            few,
            seg,
            concept,
            pool,
            k=args.k,
            max_other=args.greedy_max_other,
            shortlist=args.greedy_shortlist or None,
            output_range=rng,
            log=lambda line: print(line, flush=True),
        )
        print(r.summary())
        SELECTION[(layer, concept)] = {
            "pool": args.greedy_pool,
            "pool_size": len(pool),
            "samples": args.greedy_samples,
            "seed": args.greedy_seed,
            "max_other": args.greedy_max_other,
            "shortlist": args.greedy_shortlist,
            "broke_at": r.broke_at,
            "steps": r.table(),
            "final": r.changes[-1],
            "evaluations": r.evaluations,
            "cpu_s": r.seconds,
        }
        return r.ranking()

    def union(spec: str, compute, orders: dict[str, list[int]]) -> list[int]:
        """The union of the tops of the rankings ``spec`` names (e.g. ``ace:40,iou:20``), in that order."""
        pool: list[int] = []
        for part in spec.split(","):
            source, _, top = part.partition(":")
            ranked = orders[source] if source in orders else compute(source)
            pool += ranked[: int(top or 40)]
        return list(dict.fromkeys(pool))

    def swap(compute, orders: dict[str, list[int]]) -> list[int]:
        """The swap search (gan.select) from --swap-start's top k, on --swap-samples samples of --swap-seed."""
        from unitscope.gan.select import swap_search

        start = orders[args.swap_start] if args.swap_start in orders else compute(args.swap_start)
        pool = union(args.swap_pool, compute, orders)
        few = selection_samples("--swap-seed", args.swap_seed, args.swap_samples)
        r = swap_search(
            cut,
            few,
            seg,
            concept,
            start,
            pool,
            k=args.k,
            rounds=args.swap_rounds,
            exact=args.swap_exact,
            max_other=args.swap_max_other,
            repair=args.swap_repair,
            output_range=rng,
            log=lambda line: print(line, flush=True),
        )
        print(r.summary())
        SWAP[(layer, concept)] = {
            "start": args.swap_start,
            "start_units": r.start,
            "pool": args.swap_pool,
            "pool_size": len(pool),
            "samples": args.swap_samples,
            "seed": args.swap_seed,
            "max_other": args.swap_max_other,
            "rounds": args.swap_rounds,
            "exact": args.swap_exact,
            "repair": args.swap_repair,
            "steps": r.table(),
            "final": r.changes,
            "within": r.within,
            "stopped": r.stopped,
            "evaluations": r.evaluations,
            "cpu_s": r.seconds,
        }
        return r.ranking()

    for name in args.rankings.split(","):
        if name not in orders:
            compute(name)
    return {name: orders[name] for name in args.rankings.split(",")}


SELECTION: dict[tuple[str, str], dict] = {}  # the greedy selection's own figures, per case
SWAP: dict[tuple[str, str], dict] = {}  # the swap search's own figures, per case


def case_table(layer: str, concept: str, results: dict, k: int, min_share: float = 0.005) -> tuple[str, list[dict]]:
    """The Markdown table of one case and a JSON-able row per ranking."""
    first = next(iter(results.values()))
    col = first.names.index(concept)
    objs = [
        i for i, n in enumerate(first.names) if i and first.categories[i] == "object" and first.before[i] >= min_share
    ]
    objs.sort(key=lambda i: (i != col, -first.before[i]))
    rand = [first.rows(d).start + first.ks.index(k) for d in range(first.draws)]
    heads = [NAMES.get(n, n) for n in results] + ([f"{k} random (mean of {len(rand)})"] if rand else [])
    lines = [
        f"**{layer}, {concept}**: top {k} units off, {first.samples} samples; change relative to each object's "
        "share before, 99% interval, (points of the image)",
        "",
        "| object (share before) | " + " | ".join(heads) + " |",
        "|---" * (1 + len(heads)) + "|",
    ]
    for i in objs:
        cells = []
        for r in results.values():
            row = r.rows().start + r.ks.index(k)
            v, ci = r.change[row, i], r.ci[row, i]
            cells.append(f"{v:+.1%} +-{ci:.1%} ({100 * v * r.before[i]:+.1f})")
        if rand:
            cells.append(f"{np.mean([first.change[j, i] for j in rand]):+.1%}")
        name = f"**{first.names[i]}**" if i == col else first.names[i]
        lines.append(f"| {name} ({100 * first.before[i]:.1f}%) | " + " | ".join(cells) + " |")
    rows, verdicts = [], []
    for rk, r in results.items():
        row = r.rows().start + r.ks.index(k)
        off = [i for i in objs if i != col and abs(r.change[row, i]) > 0.1]
        holds = bool(r.change[row, col] <= -0.5 and not off)
        verdicts.append(
            ("**holds**" if holds else "fails")
            + f" ({len(off)} of {len(objs) - 1} beyond +-10%"
            + (": " + ", ".join(f"{r.names[i]} {r.change[row, i]:+.0%}" for i in off) if off else "")
            + ")"
        )
        rows.append(
            {
                "layer": layer,
                "concept": concept,
                "ranking": rk,
                "k": k,
                "samples": r.samples,
                "change": float(r.change[row, col]),
                "ci": float(r.ci[row, col]),
                "units": r.order[:k],
                "holds": holds,
                "beyond": {r.names[i]: float(r.change[row, i]) for i in off},
                "random": float(np.mean([first.change[j, col] for j in rand])) if rand else None,
                **(
                    {"selection": SELECTION[(layer, concept)]}
                    if rk == "greedy" and (layer, concept) in SELECTION
                    else {}
                ),
                **({"search": SWAP[(layer, concept)]} if rk == "swap" and (layer, concept) in SWAP else {}),
            }
        )
    if rand:  # the baseline's own count: how many other objects k random units move beyond +-10%
        moved = [i for i in objs if i != col and abs(np.mean([first.change[j, i] for j in rand])) > 0.1]
        verdicts.append(f"{len(moved)} of {len(objs) - 1} beyond +-10%")
    lines.append("| verdict | " + " | ".join(verdicts) + " |")
    return "\n".join(lines), rows


@torch.no_grad()
def replacement(cut, samples, seg, concept: str, units: list[int], n: int, results, k: int, rng=(0, 1)) -> str:
    """What the concept's pixels become with ``units`` off, and where the other objects' changes lie."""
    from unitscope.edits import Edits, unit_mask
    from unitscope.gan import label_space, to_unit_range

    names, cats, label_cat = label_space(seg)
    num = names.index(concept)
    plane = cats[label_cat[num]]
    size = len(names)
    trans = torch.zeros(size, size, dtype=torch.long)
    edits = Edits.ablate(unit_mask(units, samples.batches[0].layer.shape[1]))
    seen = 0
    for batch in samples.batches:
        if seen >= n:
            break
        before = seg.segment(to_unit_range(cut.tail(batch), rng))[plane].long()
        after = seg.segment(to_unit_range(cut.tail(batch, edit=lambda z: edits.apply(z)), rng))[plane].long()
        trans += torch.bincount((before * size + after).flatten(), minlength=size * size).reshape(size, size)
        seen += len(before)
    lost = trans[num].clone()
    lost[num] = 0
    out = [
        f"what the '{concept}' pixels become with the top {k} units off ({seen} samples): "
        + ", ".join(
            f"{names[j] if j else 'none'} {int(lost[j]) / max(1, int(lost.sum())):.0%}"
            for j in lost.argsort(descending=True)[:6]
            if lost[j]
        )
        + f" (kept: {int(trans[num, num]) / max(1, int(trans[num].sum())):.0%})"
    ]
    r = next(iter(results.values()))
    row = r.rows().start + r.ks.index(k)
    for i, name in enumerate(names):
        if i in (0, num) or cats[label_cat[i]] != plane or r.before[i] < 0.005 or abs(r.change[row, i]) <= 0.1:
            continue
        net = int(trans[:, i].sum() - trans[i].sum())
        inside = int(trans[num, i]) - int(trans[i, num])  # gained from / lost to the concept's pixels
        out.append(
            f"  {name}: {net:+d} pixels net over {seen} samples, of which {inside:+d} in the concept's former "
            f"pixels and {net - inside:+d} elsewhere (before: {int(trans[i].sum())} pixels)"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("--cases", default="relu1:tree,relu2:tree,relu1:sky,relu2:sky")
    p.add_argument("--rankings", default="iou,iqr,ace,sace")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1, help="the held-out samples' seed (never a selection's)")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--random-draws", type=int, default=1)
    p.add_argument("--iqr-samples", type=int, default=300)
    p.add_argument("--ace-samples", type=int, default=50)
    p.add_argument("--ace-steps", type=int, default=30)
    p.add_argument("--ace-penalty", type=float, default=0.01)
    p.add_argument("--ace-norm", default="l2", choices=["l1", "l2"])
    p.add_argument("--ace-lr", type=float, default=0.2)
    p.add_argument("--ace-init", type=float, default=0.0, help="the mask logits' start (0: every mask 0.5)")
    p.add_argument("--specific", type=float, default=0.05)
    p.add_argument(
        "--greedy-samples", type=int, default=100, help="the greedy selection's samples (seed --greedy-seed)"
    )
    p.add_argument("--greedy-seed", type=int, default=2, help="never --seed, the held-out evaluation")
    p.add_argument("--greedy-pool", default="ace:40,iou:20", help="candidates: the union of these rankings' tops")
    p.add_argument("--greedy-max-other", type=float, default=0.07, help="the bound on the other objects' change")
    p.add_argument("--greedy-shortlist", type=int, default=0, help="from step 2, try only this many (0: all)")
    p.add_argument("--swap-start", default="greedy", help="the ranking whose top --k starts the swap search")
    p.add_argument("--swap-pool", default="ace:40,iou:20", help="units to swap in: the union of these rankings' tops")
    p.add_argument("--swap-samples", type=int, default=200, help="the swap search's samples (seed --swap-seed)")
    p.add_argument("--swap-seed", type=int, default=2, help="never --seed, the held-out evaluation")
    p.add_argument("--swap-max-other", type=float, default=0.1, help="the bound on the other objects' change")
    p.add_argument("--swap-rounds", type=int, default=8, help="at most this many swaps")
    p.add_argument("--swap-exact", type=int, default=6, help="swaps evaluated exactly per round (the best screened)")
    p.add_argument("--swap-repair", default="steepest", choices=["steepest", "gentle"], help="beyond the bound")
    p.add_argument("--replace-samples", type=int, default=300)
    p.add_argument("--grid", default=None, help="layer:concept:ranking of the before/after grid")
    p.add_argument("--grid-png", default=str(DOCS / "gan_removal_grid.png"))
    p.add_argument("--json", default=None, help="write every case's rows here")
    p.add_argument(
        "--orders-json",
        default=None,
        help="rankings per case: read from here where every one asked for is there (evaluate only), else written here",
    )
    p.add_argument("--model", default="world_generator", help="a registered generator or file.py:factory")
    p.add_argument("--segmenter", default="world_segmenter", help="a registered segmenter or file.py:factory")
    args = p.parse_args()
    torch.set_num_threads(1)
    from unitscope.ablate import cut_model
    from unitscope.gan import cache_samples, removal_curve
    from unitscope.gan.artifacts import before_after_images, write_grid
    from unitscope.gan.run import _richest
    from unitscope.models import create_model, get_info
    from unitscope.segment import create_segmenter

    g, seg = create_model(args.model), create_segmenter(args.segmenter)
    rng = get_info(g).output_range
    rows, cuts = [], {}
    for case in args.cases.split(","):
        layer, concept = case.split(":")
        t0, c0 = time.perf_counter(), time.process_time()
        if layer not in cuts:
            cut = cut_model(g, layer)
            cuts[layer] = (cut, cache_samples(cut, g, n=args.samples, seed=args.seed, batch_size=50))
        cut, samples = cuts[layer]
        saved = (
            json.loads(Path(args.orders_json).read_text())
            if args.orders_json and Path(args.orders_json).exists()
            else {}
        )
        if all(name in saved.get(case, {}) for name in args.rankings.split(",")):  # chosen before: evaluate only
            orders = {name: saved[case][name] for name in args.rankings.split(",")}
            if case + ":selection" in saved:
                SELECTION[(layer, concept)] = saved[case + ":selection"]
            if case + ":swap" in saved:
                SWAP[(layer, concept)] = saved[case + ":swap"]
            print(f"rankings of {case} from {args.orders_json}")
        else:
            orders = rankings(g, seg, cut, args.run, layer, concept, args, saved.get(case))
            if args.orders_json:
                saved[case] = {**saved.get(case, {}), **orders}
                if (layer, concept) in SELECTION:
                    saved[case + ":selection"] = SELECTION[(layer, concept)]
                if (layer, concept) in SWAP:
                    saved[case + ":swap"] = SWAP[(layer, concept)]
                Path(args.orders_json).write_text(json.dumps(saved))
        results = {
            name: removal_curve(
                cut,
                samples,
                seg,
                order,
                concept,
                ks=[args.k],
                random_draws=args.random_draws if i == 0 else 0,
                output_range=rng,
            )
            for i, (name, order) in enumerate(orders.items())
        }
        table, case_rows = case_table(layer, concept, results, args.k)
        rows += case_rows
        print(table)
        first = next(iter(orders))
        units = orders[first][: args.k]
        print(replacement(cut, samples, seg, concept, units, args.replace_samples, results, args.k, rng))
        print(f"({case}: {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU)\n", flush=True)
        if args.grid and args.grid.startswith(case + ":"):
            units = orders[args.grid.split(":")[2]][: args.k]
            richest = _richest(cut, samples, seg, concept, 8, rng)
            write_grid(before_after_images(cut, samples, richest, units, output_range=rng), args.grid_png)
            print(f"{args.grid_png}: samples {richest}, units {units}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
