"""The probe world: procedural scenes with dense concept labels, written in the Broden format.

    from unitscope.data import make_world, BrodenDataset
    path = make_world("worlds/w224", n=10_000, size=224, seed=0)   # idempotent; parallel over cores
    ds = BrodenDataset(path)                                         # the same reader as real Broden
    sample = render_image(seed=0, index=3, size=224)                 # arrays only, no files

Every image is one of eight scenes (street, forest, beach, ski slope, bedroom, harbour, field,
kitchen); the scene makes some objects likely, with noise. Pixels are labelled in Broden's six
categories: colour (the colour each pixel is rendered in), object, part, material and texture
as masks, and scene per image. Image ``i`` depends only on ``(seed, i, size, mask_size)``, so any
number of worker processes writes byte-identical folders.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from unitscope.data._scenes import render_scene, scene_of
from unitscope.data._vocab import CATEGORIES, NUM_LABELS, PIXEL_CATEGORIES, VOCAB, color_labels
from unitscope.runs import atomic_write_bytes, atomic_write_text

GENERATOR_VERSION = 3  # 2: plain colour and scene names; 3: no kitchen carpets
MARKER = "world.json"  # written last: its presence and content mark a complete world
PARTIAL = ".world-partial.json"  # written first: a folder holding only this is ours to rebuild
IMAGE_DIR = "world"  # under images/
VAL_EVERY = 5  # image i is in the val split when i % VAL_EVERY == VAL_EVERY - 1 (20 %)
JPEG_QUALITY = 92


@dataclass
class WorldImage:
    """One rendered image: ``rgb`` uint8 [S, S, 3]; ``labels[cat]`` uint16 [sh, sw] for the pixel
    categories (colour, object, part, material, texture); ``scene`` index into SCENES; and
    ``full`` the object/part/material/texture layers at image resolution [S, S]."""

    rgb: np.ndarray
    labels: dict[str, np.ndarray]
    scene: int
    full: dict[str, np.ndarray]

    @property
    def scene_label(self) -> int:
        return VOCAB["scene"][self.scene][1]


def _box_down(rgb: np.ndarray, sh: int, sw: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((sw, sh), Image.BOX))


def render_image(seed: int, index: int, size: int = 224, mask_size: int | None = None) -> WorldImage:
    """Render image ``index`` of world ``seed`` with its label planes, without writing anything."""
    sh = mask_size or max(1, size // 2)
    rgb, layers, scene = render_scene(seed, index, size)
    rows = ((np.arange(sh) + 0.5) * size / sh).astype(np.int64)
    labels = {"color": color_labels(_box_down(rgb, sh, sh)).astype(np.uint16)}
    for cat, layer in layers.items():
        labels[cat] = layer[rows[:, None], rows[None, :]]
    return WorldImage(rgb, labels, scene, layers)


def _png(label: np.ndarray) -> bytes:
    rgb = np.zeros(label.shape + (3,), np.uint8)
    rgb[..., 0] = label & 255
    rgb[..., 1] = label >> 8
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _stats(labels: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    stats = {}
    for cat in PIXEL_CATEGORIES:
        counts = np.bincount(labels[cat].ravel(), minlength=NUM_LABELS)
        present = np.flatnonzero(counts[1:]) + 1
        stats[cat] = (present, counts[present] / labels[cat].size)
    return stats


def _write_one(job: tuple[str, int, int, int, int, bool]) -> tuple[int, int, dict]:
    """Render and write image ``i`` (masks first, JPEG last); return (i, scene, {cat: (labels, fractions)}).
    With ``resume``, an image whose files all exist is read back instead of rendered again."""
    out, seed, i, size, sh, resume = job
    folder = Path(out) / "images" / IMAGE_DIR
    jpg = folder / f"{i:06d}.jpg"
    masks = {cat: folder / f"{i:06d}_{cat}.png" for cat in PIXEL_CATEGORIES}
    if resume and jpg.exists() and all(p.exists() for p in masks.values()):
        from unitscope.data.broden import decode_mask

        return i, scene_of(seed, i), _stats({cat: decode_mask(p) for cat, p in masks.items()})
    im = render_image(seed, i, size, sh)
    for cat, path in masks.items():
        atomic_write_bytes(path, _png(im.labels[cat]), fsync=False)  # whole or absent; cheap to redo
    buf = io.BytesIO()
    Image.fromarray(im.rgb).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    atomic_write_bytes(jpg, buf.getvalue(), fsync=False)
    return i, im.scene, _stats(im.labels)


def _params(n: int, size: int, seed: int, mask_size: int) -> dict:
    return {"format": "broden", "generator": "unitscope.world", "generator_version": GENERATOR_VERSION,
            "n": n, "size": size, "seed": seed, "mask_size": mask_size}


def _prepare(out: Path, params: dict) -> str:
    """Return "done" if ``out`` holds this complete world; "resume" if it holds this world half-written
    (files are renamed into place whole, so those present are kept); else "fresh", after clearing
    our old files out of it."""
    marker, partial = out / MARKER, out / PARTIAL
    for path, state in ((marker, "done"), (partial, "resume")):
        if path.exists():
            try:
                if json.loads(path.read_text()) == params:
                    return state
            except (ValueError, OSError):
                pass
    if out.exists() and any(out.iterdir()) and not (marker.exists() or partial.exists()):
        raise ValueError(f"{out} exists, is not empty and is not a probe world; choose a new folder")
    # ours, made with other parameters: rebuilt from scratch
    for name in [MARKER, "index.csv", "label.csv", "category.csv"] + [f"c_{c}.csv" for c in CATEGORIES]:
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / "images" / IMAGE_DIR, ignore_errors=True)
    return "fresh"


def make_world(out: str | Path, n: int, size: int = 224, seed: int = 0, workers: int | None = None,
               mask_size: int | None = None, progress: bool = True) -> Path:
    """Write a Broden-format probe world of ``n`` images of ``size``² pixels into ``out``.

    Masks are ``mask_size``² (default ``size // 2``, as Broden). Idempotent: a folder that already
    holds a complete world with the same parameters is returned at once; a half-written one (an
    interrupted run) is completed: images whose files are all present are kept (every file is
    renamed into place whole), the rest are rendered again. ``workers`` processes render in
    parallel (default: all cores); output is
    byte-identical for any number of workers.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    sh = int(mask_size or size // 2)
    if not 1 <= sh <= size:
        raise ValueError(f"mask_size must be between 1 and size ({size}), got {mask_size}")
    out = Path(out)
    params = _params(n, size, seed, sh)
    state = _prepare(out, params)
    if state == "done":
        return out
    (out / "images" / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / PARTIAL, json.dumps(params, indent=1) + "\n")
    for tmp in (out / "images" / IMAGE_DIR).glob(".*.tmp"):  # left by an interrupted run
        tmp.unlink()

    freq = {c: np.zeros(NUM_LABELS, np.int64) for c in CATEGORIES}
    cov = {c: np.zeros(NUM_LABELS, np.float64) for c in CATEGORIES}
    scenes = np.zeros(n, np.int64)
    jobs = [(str(out), seed, i, size, sh, state == "resume") for i in range(n)]
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    from tqdm import tqdm

    bar = tqdm(total=n, desc="world", unit="img", disable=not progress)
    if workers > 1 and n > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers) as pool:
            results = pool.imap_unordered(_write_one, jobs, chunksize=max(1, min(32, n // (workers * 8))))
            for result in results:
                _tally(result, freq, cov, scenes)
                bar.update()
    else:
        for job in jobs:
            _tally(_write_one(job), freq, cov, scenes)
            bar.update()
    bar.close()
    _write_tables(out, n, size, sh, scenes, freq, cov)
    atomic_write_text(out / MARKER, json.dumps(params, indent=1) + "\n")
    (out / PARTIAL).unlink(missing_ok=True)
    return out


def _tally(result, freq, cov, scenes) -> None:
    i, scene, stats = result
    scenes[i] = scene
    for cat, (present, frac) in stats.items():
        freq[cat][present] += 1
        cov[cat][present] += frac
    label = VOCAB["scene"][scene][1]
    freq["scene"][label] += 1
    cov["scene"][label] += 1.0


def _write_tables(out: Path, n, size, sh, scenes, freq, cov) -> None:
    rows = ["image,split,ih,iw,sh,sw," + ",".join(CATEGORIES)]
    for i in range(n):
        split = "val" if i % VAL_EVERY == VAL_EVERY - 1 else "train"
        cells = {c: f"{IMAGE_DIR}/{i:06d}_{c}.png" for c in PIXEL_CATEGORIES}
        cells["scene"] = str(VOCAB["scene"][scenes[i]][1])
        rows.append(f"{IMAGE_DIR}/{i:06d}.jpg,{split},{size},{size},{sh},{sh},"
                    + ",".join(cells[c] for c in CATEGORIES))
    atomic_write_text(out / "index.csv", "\n".join(rows) + "\n")

    labels = ["number,name,category,frequency,coverage,syns"]
    cats = ["name,first,last,count,frequency"]
    for cat in CATEGORIES:
        numbers = [num for _, num in VOCAB[cat]]
        cats.append(f"{cat},{min(numbers)},{max(numbers)},{len(numbers)},{n}")
        crow = ["code,number,name,frequency,coverage"]
        for code, (name, num) in enumerate(VOCAB[cat], start=1):
            f, c = int(freq[cat][num]), float(cov[cat][num])
            labels.append(f"{num},{name},{cat}({f}),{f},{c:.6f},")
            crow.append(f"{code},{num},{name},{f},{c:.6f}")
        atomic_write_text(out / f"c_{cat}.csv", "\n".join(crow) + "\n")
    atomic_write_text(out / "label.csv", "\n".join(labels) + "\n")
    atomic_write_text(out / "category.csv", "\n".join(cats) + "\n")

