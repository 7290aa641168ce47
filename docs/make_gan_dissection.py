"""The generator-dissection findings of docs/gan.md: world_generator against world_segmenter.

    .venv/bin/python docs/make_gan_dissection.py [--samples 10000] [--layer relu1] [--effect-samples 1000]
    .venv/bin/python docs/make_gan_dissection.py --checkpoint runs/organisms/world_generator.safetensors  # a G in training

1. dissect ``--samples`` samples (z from seed 0) at ``--layer`` (each unit's top 1%, as the PNAS paper);
2. removal: for the object with the most units, zero its top k = 1, 2, 5, 10, 20, 30 units by IoU
   (``--concept``: that object; ``--ks``: other k) over ``--effect-samples`` other samples (seed 1), against
   k random units (``--random-draws`` draws); every concept's relative pixel change with 99% intervals, and
   the largest change of another object both relative and in points of the image (its mean share after
   minus before); a PNG of the curves (docs/gan_removal.png); every label's change at k = 20 (a table)
   and whether the finding holds: the concept -50% or more, no other object beyond +-10%, each change
   relative to that label's own share before;
3. insertion in context: for a few parts (door, window, roof), over ``--insert-samples`` samples, force their top units to
   their 99.5th percentile in one cell at a time and tally, per context, how often the part appears.
Prints the tables docs/gan.md quotes. Runs resume from the run folder (``--out``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

DOCS = Path(__file__).resolve().parent
KS = (1, 2, 5, 10, 20, 30)  # each k is one tail pass and one segmentation per sample and order
BATCH = 50  # samples a cached batch (insertion takes whole batches)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--layer", default="relu2")
    p.add_argument("--effect-samples", type=int, default=1000)
    p.add_argument("--out", default="runs/gan-world")
    p.add_argument("--parts", default="window,roof,crown,door")
    p.add_argument("--concept", default=None, help="the object to remove (default: the one with the most units)")
    p.add_argument("--checkpoint", default=None, help="a world_generator.safetensors (default: the shipped weights)")
    p.add_argument("--png", default=str(DOCS / "gan_removal.png"))
    p.add_argument("--ks", default=",".join(map(str, KS)), help="the k of the removal curve")
    p.add_argument("--random-draws", type=int, default=2)
    p.add_argument("--insert-samples", type=int, default=100, help="samples per insertion (x cells x parts passes)")
    args = p.parse_args()
    from unitscope.ablate import cut_model
    from unitscope.dissect import Options, dissect_sources
    from unitscope.gan import GeneratorActivations, SegmenterLabels, cache_samples, insertion_in_context, removal_curve
    from unitscope.models import create_model
    from unitscope.segment import create_segmenter

    g = create_model("world_generator", checkpoint=args.checkpoint, pretrained=False if args.checkpoint else None)
    seg = create_segmenter("world_segmenter")
    t0 = time.perf_counter()
    acts = GeneratorActivations(g, [args.layer], n=args.samples, seed=0)
    result = dissect_sources(
        acts,
        SegmenterLabels(seg),
        args.out,
        Options(quantile=0.01, batch_size=100, exemplar_images=False, progress=False),
    )
    d = result.layers[args.layer]
    print(f"dissection of {args.samples} samples: {time.perf_counter() - t0:.0f} s; {d.summary()}")
    names, cats = d.label_names, d.label_categories
    concepts = [d.concept(u) for u in range(d.shape[0])]
    objects = [c for c in set(concepts) if c and cats[names.index(c)] == "object"]
    target = args.concept or max(objects, key=lambda c: (concepts.count(c), c))
    print(f"units per concept: {sorted(((concepts.count(c), c) for c in set(concepts) if c), reverse=True)}")

    cut = cut_model(g, args.layer)
    t0 = time.perf_counter()
    samples = cache_samples(cut, g, n=args.effect_samples, seed=1, batch_size=BATCH)
    col = names.index(target)
    order = np.argsort(-d.iou[:, col], kind="stable").tolist()
    ks = [int(k) for k in args.ks.split(",")]
    removal = removal_curve(cut, samples, seg, order, target, ks=ks, random_draws=args.random_draws)
    print(
        f"removal ({args.effect_samples} samples, {len(ks)} k x {1 + args.random_draws} orders): "
        f"{time.perf_counter() - t0:.0f} s"
    )
    print(removal.summary(20 if 20 in ks else ks[-1]))
    print(
        "| k | " + target + " (top by IoU) | 99% CI | random k | largest other object | largest other label "
        "| largest other object, points of the image |"
    )
    print("|---|---|---|---|---|---|---|")
    for k in ks:
        i = removal.ks.index(k)
        row = removal.rows().start + i
        other, value = removal.largest_other(k)
        anything, change = removal.largest_other(k, same_category=False)
        name, points = largest_points(removal, k)
        print(
            f"| {k} | {removal.change[row, col]:+.0%} | +-{removal.ci[row, col]:.0%} | "
            f"{removal.random_curve()[i]:+.0%} | {other} {value:+.0%} | {anything} {change:+.0%} | "
            f"{name} {100 * points:+.1f} |"
        )
    draw_curves(removal, Path(args.png))
    print(every_concept(removal, 20 if 20 in ks else ks[-1]))

    from unitscope.ablate.evaluate import LayerCache

    nb = max(1, args.insert_samples // BATCH)
    few = LayerCache(samples.batches[:nb], samples.labels[:nb])
    level = torch.quantile(torch.cat([b.layer for b in samples.batches]).transpose(0, 1).flatten(1), 0.995, dim=1)
    for part in args.parts.split(","):
        if part not in names:
            continue
        pcol = names.index(part)
        units = np.argsort(-d.iou[:, pcol], kind="stable")[:10].tolist()
        ins = insertion_in_context(cut, few, seg, units, level, part, patch_min=0.1)
        rows = ins.table(min_trials=50)
        print(
            f"insert '{part}' (top 10 units by IoU, best IoU {d.iou[units[0], pcol]:.3f}): "
            + "; ".join(f"{r['context']} {r['rate']:.0%} of {r['trials']}" for r in rows)
        )


def every_concept(removal, k: int, min_share: float = 0.005) -> str:
    """Every label's relative change when the top ``k`` units are removed (99% interval, the same for
    ``k`` random units), labels covering at least ``min_share`` of the pixels before, objects first,
    then by share; a Markdown table, and whether the finding holds (the concept -50% or more, no other
    object beyond +-10%, both relative to the label's own share before)."""
    row = removal.rows().start + removal.ks.index(k)
    rand = [removal.rows(d).start + removal.ks.index(k) for d in range(removal.draws)]
    cols = [i for i, n in enumerate(removal.names) if i and removal.before[i] >= min_share]
    cols.sort(key=lambda i: (removal.categories[i] != "object", -removal.before[i]))
    lines = [
        f"every label covering >= {min_share:.1%} of the pixels, top {k} '{removal.concept}' units off "
        f"({removal.samples} samples; change relative to the label's share before, 99% interval):",
        "| label | category | share before | change | 99% CI | " + f"{k} random units |",
        "|---|---|---|---|---|---|",
    ]
    for i in cols:
        r = f"{np.mean([removal.change[j, i] for j in rand]):+.1%}" if rand else "-"
        lines.append(
            f"| {removal.names[i]} | {removal.categories[i]} | {100 * removal.before[i]:.1f}% | "
            f"{removal.change[row, i]:+.1%} | +-{removal.ci[row, i]:.1%} | {r} |"
        )
    col = removal.names.index(removal.concept)
    own = removal.categories[col]
    others = [i for i in cols if i != col and removal.categories[i] == own]
    worst = max(others, key=lambda i: abs(removal.change[row, i])) if others else None
    holds = removal.change[row, col] <= -0.5 and (worst is None or abs(removal.change[row, worst]) <= 0.1)
    lines.append(
        f"finding ({removal.concept} -50% or more, no other {own} beyond +-10%): {'holds' if holds else 'fails'}"
        + (f" (worst other {own}: {removal.names[worst]} {removal.change[row, worst]:+.1%})" if worst else "")
    )
    return "\n".join(lines)


def largest_points(removal, k: int) -> tuple[str, float]:
    """The other object whose mean pixel share changes most in absolute terms (share after minus
    before, as a fraction of the image) when the top ``k`` units are removed."""
    row = removal.change[removal.rows().start + removal.ks.index(k)] * removal.before
    own = removal.categories[removal.names.index(removal.concept)]
    cands = [i for i, n in enumerate(removal.names) if i and n != removal.concept and removal.categories[i] == own]
    best = max(cands, key=lambda i: abs(row[i]))
    return removal.names[best], float(row[best])


def draw_curves(removal, path: Path, size: tuple[int, int] = (640, 400)) -> None:
    """The concept's relative change against k (top units and random units, 99% band), drawn with PIL."""
    from PIL import Image, ImageDraw

    w, h = size
    left, right, top, bottom = 60, 20, 30, 50
    img = Image.new("RGB", size, "white")
    dr = ImageDraw.Draw(img)
    ks = removal.ks
    col = removal.names.index(removal.concept)

    rows = removal.rows()
    highest = max(0.0, float(np.max(removal.change[rows, col] + removal.ci[rows, col])), *removal.random_curve())
    hi = float(np.ceil(highest / 0.25) * 0.25)  # the axis runs from -100% up to the curves' top (0 or above)

    def xy(k: float, v: float) -> tuple[float, float]:
        x = left + (k - ks[0]) / max(1, ks[-1] - ks[0]) * (w - left - right)
        return (x, top + (hi - v) / (1 + hi) * (h - top - bottom))

    dr.line([xy(ks[0], 0), xy(ks[-1], 0)], fill="#888")
    dr.line([xy(ks[0], hi), xy(ks[0], -1)], fill="#888")
    for v in [hi - 0.25 * i for i in range(int(round((1 + hi) / 0.25)) + 1)]:
        x, y = xy(ks[0], v)
        dr.text((x - 45, y - 6), f"{v:+.0%}", fill="black")
    for k in (1, 5, 10, 15, 20, 25, 30):
        x, y = xy(k, 0)
        dr.text((x - 6, h - bottom + 8), str(k), fill="black")
    top_rows = removal.rows()
    curve, ci = removal.change[top_rows, col], removal.ci[top_rows, col]
    band = [xy(k, v + c) for k, v, c in zip(ks, curve, ci)] + [
        xy(k, v - c) for k, v, c in zip(ks[::-1], curve[::-1], ci[::-1])
    ]
    dr.polygon(band, fill="#f4c7c3")
    dr.line([xy(k, v) for k, v in zip(ks, curve)], fill="#c0392b", width=3)
    dr.line([xy(k, v) for k, v in zip(ks, removal.random_curve())], fill="#2c3e50", width=2)
    dr.text(
        (left + 10, 6),
        f"'{removal.concept}' pixels after removing k units: top by IoU (red, 99% band) vs k random (dark)",
        fill="black",
    )
    dr.text((w // 2 - 10, h - 20), "k", fill="black")
    img.save(path)


if __name__ == "__main__":
    main()
