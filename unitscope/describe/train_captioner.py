"""Train the exemplar captioner on exemplar sets the probe world generates itself.

    python -m unitscope.describe.train_captioner --world worlds/w1 --out ckpt/ --steps 1500 --batch 32   # the shipped weights
    python -m unitscope.describe.train_captioner --world worlds/w2 --eval ckpt/captioner.pt --sets 500
    python -m unitscope.describe.train_captioner --world worlds/photo64 --out ckpt/ --steps 1000   # captioner_photo.pt
    #   (worlds/photo64: unitscope world make worlds/photo64 --style photo --size 64 --n 1500 --seed 1)

A *generated exemplar set* is a formula of the world's concepts (one concept; two or three joined
by AND, a colour, material, part, scene or position refining an object; two joined by OR; one AND
NOT another), its 15 exemplars (the images where the formula's mask is largest, picked with
noise) and its masks there, coarsened at random as a unit's upsampled map would be
(:func:`sample_set`). The caption is the formula rendered by :mod:`.phrases`. Training
checkpoints every 100 steps and resumes from ``OUT/state.pt``; ``--eval`` prints how
often the caption names the true formula's concepts on fresh sets of another world.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unitscope.describe.captioner import (
    IMAGE_SIDE,
    N_COLOURS,
    SIDE,
    Backbone,
    ExemplarCaptioner,
    ExemplarNet,
    exemplar_features,
    formula_text,
)
from unitscope.describe.concepts import Vocabulary, image_concepts
from unitscope.describe.formulas import AND, AND_NOT, FIRST, OR
from unitscope.describe.phrases import render
from unitscope.runs import CATALOG

K = 15  # exemplars per set
REUSE = 4  # training sets drawn from each sampled formula (other exemplars, other coarsening)
SHAPES = (("single", 0.3), ("and", 0.3), ("and3", 0.1), ("or", 0.15), ("and_not", 0.15))


@dataclass
class Pool:
    """A world's images ``[N, 3, 64, 64]`` uint8, concept masks ``bits [N, K, 32, 32]`` bool and vocabulary,
    with the backbone's features of every image (``f1``, ``f5``, ``colours [N, 32, 32]`` colour numbers)."""

    images: torch.Tensor
    bits: torch.Tensor
    names: list[str]
    categories: list[str]
    f1: torch.Tensor
    f5: torch.Tensor
    colours: torch.Tensor

    @cached_property
    def is_position(self) -> np.ndarray:
        return np.array([c == "position" for c in self.categories])

    @cached_property
    def seen(self) -> np.ndarray:
        """``[K]``: images where each concept holds somewhere."""
        return self.bits.flatten(2).any(2).sum(0).numpy()

    @cached_property
    def cooc(self) -> np.ndarray:
        """``[K, K]``: pixels where two concepts hold together."""
        out = torch.zeros(len(self.names), len(self.names))
        for start in range(0, len(self.bits), 64):
            b = self.bits[start : start + 64].flatten(2).float()  # [n, K, P]
            out += torch.einsum("nkp,njp->kj", b, b)
        return out.numpy()


def world_vocabulary(data) -> Vocabulary:
    """The concept vocabulary of a Broden-style data set (its label names and primary categories)."""
    cats = [data.categories[int(c)] if 0 <= int(c) < len(data.categories) else None for c in data.label_category]
    return Vocabulary.from_labels(data.label_names, cats)


def build_pool(world: str | Path, limit: int | None = None, batch: int = 100) -> Pool:
    """Read a probe world (images, every concept mask at 32x32) and run the backbone on its images."""
    from unitscope.data import BrodenDataset

    data = BrodenDataset(world, validate="none")
    vocab = world_vocabulary(data)
    n = len(data) if limit is None else min(limit, len(data))
    images, bits = [], []
    for i in range(n):
        item = data.get(i)
        img = item["image"][None].float()
        if tuple(img.shape[-2:]) != (IMAGE_SIDE, IMAGE_SIDE):
            img = F.interpolate(img, size=(IMAGE_SIDE, IMAGE_SIDE), mode="area")
        images.append((img[0] * 255).round().to(torch.uint8))
        bits.append(
            image_concepts(
                item["labels"], item["image_labels"], data.plane_category, data.categories, vocab, (SIDE, SIDE)
            )
        )
    backbone = Backbone()
    f1, f5, colours = [], [], []
    for start in range(0, n, batch):
        out = backbone(torch.stack(images[start : start + batch]).float() / 255)
        f1.append(out["f1"])
        f5.append(out["f5"])
        colours.append(out["colours"].argmax(1).to(torch.uint8))
    return Pool(
        torch.stack(images),
        torch.stack(bits),
        vocab.names,
        vocab.categories,
        torch.cat(f1),
        torch.cat(f5),
        torch.cat(colours),
    )


def set_features(pool: Pool, s: dict) -> torch.Tensor:
    """``[k, FEATURES]``: :func:`exemplar_features` of a generated set, from the pool's stored backbone features."""
    idx = s["index"]
    colours = F.one_hot(pool.colours[idx].long(), N_COLOURS).permute(0, 3, 1, 2).float()
    return exemplar_features(pool.f1[idx], pool.f5[idx], colours, s["masks"])


def _mask(pool: Pool, concepts: list[int], ops: list[int]) -> torch.Tensor:
    m = pool.bits[:, concepts[0]].clone()
    for c, o in zip(concepts[1:], ops[1:]):
        b = pool.bits[:, c]
        m = m & b if o == AND else m | b if o == OR else m & ~b
    return m


def sample_formula(pool: Pool, rng: np.random.Generator, tries: int = 50) -> tuple[list[int], list[int], torch.Tensor]:
    """A random formula ``(concepts, ops)`` whose mask ``[N, S, S]`` covers at least ``K`` images,
    each added concept changing that mask by at least 10%."""
    heads = np.nonzero((pool.seen >= K) & ~pool.is_position)[0]
    shapes, probs = zip(*SHAPES)
    for _ in range(tries):
        shape = shapes[rng.choice(len(shapes), p=np.array(probs) / sum(probs))]
        concepts, ops = [int(rng.choice(heads))], [FIRST]
        m = pool.bits[:, concepts[0]]
        steps = {"single": [], "and": [AND], "and3": [AND, AND], "or": [OR], "and_not": [AND_NOT]}[shape]
        ok = True
        for op in steps:
            if op == OR:
                cand = [int(c) for c in heads if c not in concepts]
            elif len(concepts) == 1:  # concepts that co-occur with the mask so far
                co = pool.cooc[concepts[0]]
            else:
                on = torch.nonzero(m.flatten(1).any(1)).flatten()[:64]  # enough to find co-occurring concepts
                co = (pool.bits[on] & m[on, None]).flatten(2).sum(2).sum(0).numpy()
            if op != OR:
                cand = [
                    int(c)
                    for c in np.nonzero(co > 0)[0]
                    if c not in concepts and (op == AND or not pool.is_position[c])
                ]
            if not cand:
                ok = False
                break
            c = int(rng.choice(cand))
            new = m & pool.bits[:, c] if op == AND else m | pool.bits[:, c] if op == OR else m & ~pool.bits[:, c]
            before, after = int(m.sum()), int(new.sum())
            if abs(after - before) < 0.1 * before or (new.flatten(1).sum(1) > 0).sum() < K:
                ok = False
                break
            concepts.append(c)
            ops.append(op)
            m = new
        if ok:
            return concepts, ops, m
    return concepts[:1], [FIRST], pool.bits[:, concepts[0]]


def coarsen(masks: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """``[K, S, S]`` bool, blurred as a unit's low-resolution map upsampled and thresholded would be."""
    f = int(rng.choice([1, 2, 4, 8], p=[0.2, 0.3, 0.3, 0.2]))
    if f == 1:
        return masks
    m = F.avg_pool2d(masks.float()[:, None], f)
    m = F.interpolate(m, size=masks.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    out = m > float(rng.uniform(0.25, 0.6))
    return torch.where(out.flatten(1).any(1)[:, None, None], out, masks)


def sample_set(
    pool: Pool, rng: np.random.Generator, k: int = K, formula: tuple[list[int], list[int], torch.Tensor] | None = None
) -> dict:
    """One generated exemplar set: ``images [k, 3, 64, 64]`` float, ``masks [k, 32, 32]`` bool, their pool
    ``index``, its formula and caption (``k`` of the ``K`` exemplars, at random: training uses fewer,
    the pooling does not care). ``formula``: one :func:`sample_formula` drew (default: a new one)."""
    concepts, ops, m = formula or sample_formula(pool, rng)
    area = m.flatten(1).sum(1).float()
    score = area * torch.from_numpy(rng.uniform(0.3, 1.0, len(area))).float()
    top = score.topk(K).indices
    if k < K:
        top = top[torch.from_numpy(rng.permutation(K)[:k])]
    masks = coarsen(m[top], rng)
    caption = render([(pool.names[c], pool.categories[c]) for c in concepts], ops)
    return {
        "index": top,
        "images": pool.images[top].float() / 255,
        "masks": masks,
        "concepts": concepts,
        "ops": ops,
        "caption": caption,
    }


def targets(sets: list[dict], n: int) -> dict[str, torch.Tensor]:
    pos = torch.zeros(len(sets), n)
    neg = torch.full((len(sets),), n, dtype=torch.long)
    count = torch.zeros(len(sets), dtype=torch.long)
    op = torch.zeros(len(sets), dtype=torch.long)
    for i, s in enumerate(sets):
        asserted = [c for c, o in zip(s["concepts"], s["ops"]) if o != AND_NOT]
        pos[i, asserted] = 1
        count[i] = len(asserted) - 1
        op[i] = int(OR in s["ops"])
        for c, o in zip(s["concepts"], s["ops"]):
            if o == AND_NOT:
                neg[i] = c
    return {"pos": pos, "neg": neg, "count": count, "op": op}


def loss_of(net: ExemplarNet, pool: Pool, sets: list[dict]) -> torch.Tensor:
    """The training loss of a batch of generated sets: BCE over asserted concepts, CE over the rest."""
    out = net(torch.stack([set_features(pool, s) for s in sets]))
    t = targets(sets, out["pos"].shape[1])
    multi = t["count"] > 0
    op_loss = F.cross_entropy(out["op"][multi], t["op"][multi]) if multi.any() else out["op"].sum() * 0
    return (
        F.binary_cross_entropy_with_logits(out["pos"], t["pos"]) * out["pos"].shape[1] / 4
        + F.cross_entropy(out["neg"], t["neg"])
        + F.cross_entropy(out["count"], t["count"])
        + op_loss
    )


def train(
    pool: Pool,
    out: Path,
    steps: int,
    batch: int = 32,
    lr: float = 2e-3,
    every: int = 100,
    seed: int = 0,
    log: bool = True,
    k: int = 8,
    stop: int | None = None,
) -> ExemplarCaptioner:
    """Train for ``steps`` steps of ``batch`` generated sets of ``k`` exemplars (resuming from
    ``out/state.pt``; ``stop``: leave after that step, as an interrupted run would); writes
    ``out/captioner.pt`` at every checkpoint (``every`` steps)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = ExemplarNet(len(pool.names))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    step, rng = 0, np.random.default_rng(seed)
    state = out / "state.pt"
    if state.is_file():
        blob = torch.load(state, weights_only=False)
        net.load_state_dict(blob["net"])
        opt.load_state_dict(blob["opt"])
        sched.load_state_dict(blob["sched"])
        step, rng = blob["step"], blob["rng"]
    cap = ExemplarCaptioner(net, pool.names, pool.categories)
    start, run_loss = time.process_time(), 0.0
    while step < min(steps, stop or steps):
        net.train()
        formulas = [sample_formula(pool, rng) for _ in range(max(1, batch // REUSE))]
        loss = loss_of(net, pool, [sample_set(pool, rng, k, formulas[i % len(formulas)]) for i in range(batch)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        run_loss += float(loss.detach())
        if step % every == 0 or step == steps:
            torch.save(
                {
                    "net": net.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "step": step,
                    "rng": rng,
                },
                state,
            )
            cap.save(out / "captioner.pt")
            if log:
                print(
                    f"step {step}: loss {run_loss / (step % every or every):.3f} "
                    f"(cpu {time.process_time() - start:.0f} s)",
                    flush=True,
                )
            run_loss = 0.0
    return cap


def evaluate(cap, pool: Pool, sets: int = 300, seed: int = 1) -> dict[str, float]:
    """On fresh generated sets: how often the caption names the true formula's concepts.

    ``all_named``: every asserted concept is among the caption's; ``recall``: the share of them
    named; ``exact``: the same asserted concepts; ``head``: the first (head) concept named;
    ``caption``: the same phrase."""
    rng = np.random.default_rng(seed)
    keys = ("all_named", "recall", "exact", "head", "caption")
    tally = dict.fromkeys(keys, 0.0)
    by_len: dict[int, list[float]] = {}
    for _ in range(sets):
        s = sample_set(pool, rng)
        concepts, ops = cap.predict(s["images"], s["masks"])
        said = {c for c, o in zip(concepts, ops) if o != AND_NOT}
        true = {c for c, o in zip(s["concepts"], s["ops"]) if o != AND_NOT}
        tally["all_named"] += true <= said
        tally["recall"] += len(true & said) / len(true)
        tally["exact"] += true == said
        tally["head"] += s["concepts"][0] in said
        tally["caption"] += render([(cap.names[c], cap.categories[c]) for c in concepts], ops) == s["caption"]
        n = len(s["concepts"])
        by_len.setdefault(n, [0.0, 0.0])
        by_len[n][0] += 1
        by_len[n][1] += s["concepts"][0] in said
    out = {k: v / sets for k, v in tally.items()}
    out.update({f"head_named_{n}_concepts": v[1] / v[0] for n, v in sorted(by_len.items())})
    out.update({f"sets_{n}_concepts": v[0] for n, v in sorted(by_len.items())})
    return out


def agreement(run: str | Path, layer: str | None = None) -> dict[str, float]:
    """How far a run's captions (kind ``caption``) agree with its label-based descriptions: the
    share of units where they assert a concept in common (``any``), the same concepts (``exact``),
    the mean Jaccard index of the asserted concepts, each against the chosen description (pmi), the
    fair single label and the dissection's label."""
    from unitscope.catalog import Catalog
    from unitscope.describe import tables  # noqa: F401
    from unitscope.describe.search import positive_concepts

    with Catalog(Path(run) / CATALOG, create=False) as cat:
        rows = [r for r in cat.rows("descriptions") if layer is None or r["layer"] == layer]
    by: dict[str, dict] = {}
    for r in rows:
        by.setdefault(r["kind"], {})[(r["layer"], r["unit"])] = set(positive_concepts(r["formula"]))
    caps = {k: v for k, v in by.get("caption", {}).items() if v}
    out: dict[str, float] = {"units": len(caps)}
    rng = np.random.default_rng(0)
    for kind in ("pmi", "fair_label", "label"):
        pairs = [(c, by.get(kind, {}).get(key)) for key, c in caps.items() if by.get(kind, {}).get(key)]
        if not pairs:
            continue
        out[f"{kind}_units"] = len(pairs)
        out[f"{kind}_any"] = sum(bool(c & d) for c, d in pairs) / len(pairs)
        out[f"{kind}_exact"] = sum(c == d for c, d in pairs) / len(pairs)
        out[f"{kind}_jaccard"] = sum(len(c & d) / len(c | d) for c, d in pairs) / len(pairs)
        # chance: each caption against another unit's description (20 random pairings)
        shuffled = [
            sum(bool(pairs[i][0] & pairs[j][1]) for i, j in enumerate(rng.permutation(len(pairs)))) / len(pairs)
            for _ in range(20)
        ]
        out[f"{kind}_any_shuffled"] = float(np.mean(shuffled))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", help="a probe world folder (unitscope world ...)")
    p.add_argument("--agree", help="a run captioned by `unitscope describe --captioner`: agreement with its labels")
    p.add_argument("--out", help="checkpoint folder (train)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--limit", type=int, help="images of the world to use")
    p.add_argument("--eval", help="a captioner.pt to evaluate on fresh sets of --world")
    p.add_argument("--sets", type=int, default=300)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.agree:
        print(json.dumps(agreement(args.agree)))
        return
    if not args.world:
        p.error("--world is needed to train or evaluate")
    t = time.process_time()
    cached = Path(args.out) / "pool.pt" if args.out else None
    if cached is not None and cached.is_file():
        pool = Pool(**torch.load(cached, weights_only=False))
    else:
        pool = build_pool(args.world, args.limit)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.save({f.name: getattr(pool, f.name) for f in fields(pool)}, cached)
    print(
        f"pool: {len(pool.images)} images, {len(pool.names)} concepts ({time.process_time() - t:.0f} s cpu)", flush=True
    )
    if args.eval:
        cap = ExemplarCaptioner.load(args.eval)
        print(json.dumps(evaluate(cap, pool, args.sets)))
        rng = np.random.default_rng(7)
        for _ in range(8):
            s = sample_set(pool, rng)
            print(
                f"  true: {s['caption']!r:45}  said: {cap(s['images'], s['masks'])!r}  "
                f"[{formula_text(cap.names, s['concepts'], s['ops'])}]"
            )
        return
    train(pool, Path(args.out), args.steps, args.batch)


if __name__ == "__main__":
    main()
