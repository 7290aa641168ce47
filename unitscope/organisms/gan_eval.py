"""What a segmenter finds in generated images, against real probe-world images.

    from unitscope.organisms.gan_eval import object_table, presence_tvd, evaluate_generator
    table = object_table(maps)          # maps [N, H, W] object label numbers -> per object name:
    table["tree"]                       # {"presence": 0.41, "pixel_share": 0.083}
    presence_tvd(table_a, table_b)      # total variation distance of the presence distributions
    metrics, tables = evaluate_generator(create_model("world_generator"), cache, held_out_seed=2, n=500)
    frechet_segmentation_distance(share_vectors(maps_a), share_vectors(maps_b))   # FSD
    fsd_infinity(shares_a, shares_b)["fsd_infinity"]   # FSD free of its sample-size bias
    chimera_rate(maps)                  # share of images with an indoor-only and an outdoor-only object
    perturbed_fsd(segmenter, fake, real)   # {"none": FSD, "blur3": ..., "resize48": ...}: both sides alike

An object is *present* in an image when it covers at least ``MIN_SHARE`` of its pixels (so a few
stray segmenter pixels do not count). The *presence distribution* is the presence fractions
normalised to sum to one (which objects appear, and how often relative to each other); the
*pixel-share distribution* is the mean share of pixels per object plus "none". Both distances are
total variation distances (0: same, 1: disjoint). ``presence_mean_abs_diff`` compares the raw
presence fractions (a sample that holds every object shows there, not in the normalised distance).

*Fréchet segmentation distance* (FSD, Bau et al., ICCV 2019): each image's vector of object pixel
shares (in percent, one entry per object of the world's vocabulary, "none" left out) is summarised
per image set by its mean and covariance, and FSD is the Fréchet distance between the two Gaussians,
|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)); 0 for the same statistics. The segmenter's own
error sets the scale: FSD between the segmented and the ground-truth maps of the same real images.

A *chimera* is an image in which an indoor-only and an outdoor-only object are both present (at
``MIN_SHARE``). The sets come from the world's scene composers (``unitscope/world/scenes.py``):
:data:`INDOOR_ONLY` objects are painted only by the two room scenes (bedroom, kitchen), never as an
out-of-place extra outdoors; :data:`OUTDOOR_ONLY` objects only by the six outdoor scenes, never as an
extra indoors (the extras that cross over, tree, car, fence, bed, lamp, table, person, are in
neither set). So the world's own label maps hold no chimera; the segmenter's errors on real images
give the floor any generator is measured against.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from unitscope.world.vocab import VOCAB

MIN_SHARE = 0.005  # 20 of 64x64 pixels
INDOOR_ONLY = ("cabinet", "floor")
OUTDOOR_ONLY = ("sky", "sea", "mountain", "sun", "cloud", "house", "road", "boat")
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


def share_vectors(maps) -> np.ndarray:
    """Object label maps [N, H, W] -> per-image object pixel shares in percent [N, objects] (float64,
    the objects in the vocabulary's order; "none" left out)."""
    maps = torch.as_tensor(np.asarray(maps)).long().flatten(1)
    nums = torch.tensor([num for _, num in VOCAB["object"]])
    counts = (maps[:, :, None] == nums).sum(1)  # [N, objects]
    return (100.0 * counts.double() / maps.shape[1]).numpy()


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for Gaussians N(mu, S) [D], [D, D]. The
    trace of the root is taken as that of (S_a^(1/2) S_b S_a^(1/2))^(1/2), a symmetric PSD matrix (same
    eigenvalues), so it is exact and real for singular covariances too."""
    root_a = _sqrt_psd(np.asarray(cov_a, np.float64))
    inner = np.linalg.eigvalsh(root_a @ np.asarray(cov_b, np.float64) @ root_a)
    trace_root = float(np.sqrt(np.clip(inner, 0, None)).sum())
    diff = np.asarray(mu_a, np.float64) - np.asarray(mu_b, np.float64)
    return max(0.0, float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root))


def frechet_segmentation_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FSD between two sets of per-image class-share vectors [N, D] and [M, D] (:func:`share_vectors`):
    the Fréchet distance of Gaussians fitted to each (mean, covariance with N - 1)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FSD needs at least 2 images a set, got {len(a)} and {len(b)}")
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def fsd_infinity(
    a: np.ndarray,
    b: np.ndarray,
    sizes: list[int] | None = None,
    draws: int = 5,
    paired: bool = False,
    seed: int = 0,
) -> dict:
    """FSD extrapolated to infinitely many images (FD-infinity, Chong and Forsyth, CVPR 2020): FSD
    between two finite sets is biased upward by their sampling noise, by about a constant over the
    number of images. It is measured on ``draws`` random subsets (without replacement) of each size in
    ``sizes`` (default nine sizes from a fifth of the smaller set to all of it), and the line
    ``FSD(N) = FSD_inf + slope / N`` fitted by least squares to the means; its intercept is the
    estimate. ``paired``: ``a`` and ``b`` describe the same images (a segmentation against its
    ground truth), so one index subset is drawn for both. Returns {"fsd_infinity", "sd" (the
    intercept's standard error from the fit's residuals), "slope", "sizes", "fsd_at" (the mean FSD at
    each size)}. The subsets of one set overlap, so "sd" understates the spread between sets; on
    few images the estimate is noisy (world_generator at 500: -3.2; at 5,000: 5.07), which is why
    :func:`evaluate_generator` (500 by default) does not report it: ``docs/make_fsd_infinity.py`` does."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if paired and len(a) != len(b):
        raise ValueError(f"paired sets must describe the same images: {len(a)} and {len(b)} rows")
    n = min(len(a), len(b))
    if sizes is None:
        sizes = sorted({max(2, int(s)) for s in np.linspace(n / 5, n, 9)})
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 2 or max(sizes) > n:
        raise ValueError(f"FSD-infinity needs at least two subset sizes between 2 and {n}, got {sizes}")
    rng = np.random.default_rng(seed)
    means = []
    for size in sizes:
        vals = []
        for _ in range(draws):
            ia = rng.choice(len(a), size, replace=False)
            ib = ia if paired else rng.choice(len(b), size, replace=False)
            vals.append(frechet_segmentation_distance(a[ia], b[ib]))
        means.append(float(np.mean(vals)))
    x, y = 1.0 / np.asarray(sizes, np.float64), np.asarray(means)
    (slope, intercept), cov = np.polyfit(x, y, 1, cov="unscaled")
    resid = y - (intercept + slope * x)
    sd = float(np.sqrt(max(0.0, cov[1, 1] * (resid @ resid) / (len(x) - 2)))) if len(x) > 2 else float("nan")
    return {"fsd_infinity": float(intercept), "sd": sd, "slope": float(slope), "sizes": sizes, "fsd_at": means}


def chimeras(maps, min_share: float = MIN_SHARE) -> np.ndarray:
    """Object label maps [N, H, W] -> bool [N]: an :data:`INDOOR_ONLY` and an :data:`OUTDOOR_ONLY`
    object both cover at least ``min_share`` of the image."""
    shares = share_vectors(maps) / 100.0
    names = [name for name, _ in VOCAB["object"]]
    present = shares >= min_share

    def any_of(group):
        return present[:, [names.index(n) for n in group]].any(1)

    return any_of(INDOOR_ONLY) & any_of(OUTDOOR_ONLY)


def chimera_rate(maps, min_share: float = MIN_SHARE) -> float:
    """Share of the images [N, H, W] that are :func:`chimeras`."""
    return float(chimeras(maps, min_share).mean())


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
    out = [
        segmenter.segment(images[s : s + batch_size])["object"].numpy().astype(np.uint8)
        for s in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


PERTURBATIONS = ("blur3", "resize48")


def perturb(images: torch.Tensor, kind: str) -> torch.Tensor:
    """Images [N, 3, H, W] in [0, 1] under a mild perturbation: "blur3", a 3x3 box blur (edges
    replicated); "resize48", down to 3/4 of the side and back (bilinear, antialiased)."""
    import torch.nn.functional as F

    if kind == "blur3":
        return F.avg_pool2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    if kind == "resize48":
        h, w = images.shape[-2:]
        small = F.interpolate(images, size=(h * 3 // 4, w * 3 // 4), mode="bilinear", antialias=True)
        return F.interpolate(small, size=(h, w), mode="bilinear").clamp(0, 1)
    raise ValueError(f"perturbation must be one of {', '.join(PERTURBATIONS)}, not {kind!r}")


def perturbed_fsd(segmenter, generated: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """FSD of generated against real images [N, 3, H, W] in [0, 1], both perturbed alike, per
    :data:`PERTURBATIONS` (and "none"): a generator trained through the segmenter that gains only by
    exploiting its fine details loses the gain under a blur or a resize; one whose images segment
    like real ones for real keeps it."""
    out = {}
    for kind in ("none", *PERTURBATIONS):
        g, r = (x if kind == "none" else perturb(x, kind) for x in (generated, real))
        a, b = (share_vectors(segment_objects(segmenter, x)) for x in (g, r))
        out[kind] = frechet_segmentation_distance(a, b)
    return out


def evaluate_generator(
    g,
    cache: str | Path,
    held_out_seed: int = 2,
    n: int = 500,
    device: str = "cpu",
    progress: bool = False,
    segmenter: str = "world_segmenter",
) -> tuple[dict, dict]:
    """Segment ``n`` samples of ``g`` (z from :data:`EVAL_Z_SEED`) and ``n`` real images of world
    ``held_out_seed``; returns (metrics: the distances, FSD, chimera rates; tables: generated /
    real_segmented / real_truth)."""
    from unitscope.organisms.data import world_arrays
    from unitscope.organisms.nets import generate
    from unitscope.segment import create_segmenter

    seg = create_segmenter(segmenter, device=device)
    real = world_arrays(cache, held_out_seed, n, 64, progress=progress)
    fake = generate(g, n, seed=EVAL_Z_SEED, device=device)
    real_x = torch.from_numpy(real["rgb"]).permute(0, 3, 1, 2).float() / 255.0
    maps = {
        "generated": segment_objects(seg, fake),
        "real_segmented": segment_objects(seg, real_x),
        "real_truth": real["object"],
    }
    tables = {k: object_table(m) for k, m in maps.items()}
    shares = {k: share_vectors(m) for k, m in maps.items()}
    metrics = {
        "fsd": frechet_segmentation_distance(shares["generated"], shares["real_segmented"]),
        "fsd_real_segmented_vs_truth": frechet_segmentation_distance(shares["real_segmented"], shares["real_truth"]),
        "chimera_rate": chimera_rate(maps["generated"]),
        "chimera_rate_real_segmented": chimera_rate(maps["real_segmented"]),
        "chimera_rate_real_truth": chimera_rate(maps["real_truth"]),
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
