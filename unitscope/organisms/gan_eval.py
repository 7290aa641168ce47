"""What a segmenter finds in generated images, against real probe-world images.

    from unitscope.organisms.gan_eval import object_table, presence_tvd, evaluate_generator
    table = object_table(maps)          # maps [N, H, W] object label numbers -> per object name:
    table["tree"]                       # {"presence": 0.41, "pixel_share": 0.083}
    presence_tvd(table_a, table_b)      # total variation distance of the presence distributions
    metrics, tables = evaluate_generator(create_model("world_generator"), cache, held_out_seed=2, n=500)

An object is *present* in an image when it covers at least ``MIN_SHARE`` of its pixels (so a few
stray segmenter pixels do not count). The *presence distribution* is the presence fractions
normalised to sum to one (which objects appear, and how often relative to each other); the
*pixel-share distribution* is the mean share of pixels per object plus "none". Both distances are
total variation distances (0: same, 1: disjoint). ``presence_mean_abs_diff`` compares the raw
presence fractions (a sample that holds every object shows there, not in the normalised distance).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unitscope.data._vocab import VOCAB

MIN_SHARE = 0.005   # 20 of 64x64 pixels
EVAL_Z_SEED = 20_000  # latent seed of the evaluation samples (not used in training)


def object_table(maps, min_share: float = MIN_SHARE) -> dict[str, dict[str, float]]:
    """Object label maps [N, H, W] (Broden numbers, 0 = none) -> {object: presence, pixel_share}."""
    maps = torch.as_tensor(np.asarray(maps)).long()
    pixels = maps.shape[1] * maps.shape[2]
    table = {}
    for name, num in VOCAB["object"]:
        share = (maps == num).flatten(1).float().sum(1) / pixels  # [N]
        table[name] = {"presence": float((share >= min_share).float().mean()), "pixel_share": float(share.mean())}
    return table


def _tvd(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / max(p.sum(), 1e-12), q / max(q.sum(), 1e-12)
    return float(0.5 * np.abs(p - q).sum())


def presence_tvd(a: dict, b: dict) -> float:
    """Total variation distance between two tables' normalised presence fractions."""
    names = list(a)
    return _tvd(np.array([a[k]["presence"] for k in names]), np.array([b[k]["presence"] for k in names]))


def presence_mean_abs_diff(a: dict, b: dict) -> float:
    """Mean over objects of |presence in a - presence in b| (unnormalised: also sees how many objects
    each image holds, which the presence distribution does not)."""
    return float(np.mean([abs(a[k]["presence"] - b[k]["presence"]) for k in a]))


def pixel_share_tvd(a: dict, b: dict) -> float:
    """Total variation distance between two tables' pixel-share distributions (objects + none)."""
    def dist(t):
        s = np.array([t[k]["pixel_share"] for k in a])
        return np.append(s, max(0.0, 1 - s.sum()))

    return _tvd(dist(a), dist(b))


@torch.no_grad()
def segment_objects(segmenter, images: torch.Tensor, batch_size: int = 128) -> np.ndarray:
    """Images [N, 3, H, W] in [0, 1] -> object label numbers [N, H, W] (uint8)."""
    out = [segmenter.segment(images[s:s + batch_size])["object"].numpy().astype(np.uint8)
           for s in range(0, len(images), batch_size)]
    return np.concatenate(out)


def evaluate_generator(g, cache: str | Path, held_out_seed: int = 2, n: int = 500, device: str = "cpu",
                       progress: bool = False, segmenter: str = "world_segmenter") -> tuple[dict, dict]:
    """Segment ``n`` samples of ``g`` (z from :data:`EVAL_Z_SEED`) and ``n`` real images of world
    ``held_out_seed``; returns (metrics: the distances, tables: generated / real_segmented / real_truth)."""
    from unitscope.organisms.data import world_arrays
    from unitscope.organisms.nets import generate
    from unitscope.segment import create_segmenter

    seg = create_segmenter(segmenter, device=device)
    real = world_arrays(cache, held_out_seed, n, 64, progress=progress)
    fake = generate(g, n, seed=EVAL_Z_SEED, device=device)
    real_x = torch.from_numpy(real["rgb"]).permute(0, 3, 1, 2).float() / 255.0
    tables = {"generated": object_table(segment_objects(seg, fake)),
              "real_segmented": object_table(segment_objects(seg, real_x)),
              "real_truth": object_table(real["object"])}
    metrics = {
        "presence_tvd": presence_tvd(tables["generated"], tables["real_segmented"]),
        "pixel_share_tvd": pixel_share_tvd(tables["generated"], tables["real_segmented"]),
        "presence_tvd_real_segmented_vs_truth": presence_tvd(tables["real_segmented"], tables["real_truth"]),
        "presence_mean_abs_diff": presence_mean_abs_diff(tables["generated"], tables["real_segmented"]),
        "mean_objects_per_sample": sum(r["presence"] for r in tables["generated"].values()),
        "mean_objects_per_real_image": sum(r["presence"] for r in tables["real_segmented"].values()),
    }
    return metrics, tables


def markdown_table(tables: dict) -> str:
    """The three tables side by side as a Markdown table (presence %, pixel share %)."""
    cols = [("generated", "generated"), ("real_segmented", "real, segmented"), ("real_truth", "real, ground truth")]
    head = "| object | " + " | ".join(f"{t}: present | {t}: pixels" for _, t in cols) + " |"
    rows = [head, "|" + "---|" * (1 + 2 * len(cols))]
    for name in tables["generated"]:
        cells = []
        for key, _ in cols:
            r = tables[key][name]
            cells += [f"{100 * r['presence']:.1f}%", f"{100 * r['pixel_share']:.1f}%"]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
