"""The probe world: procedural scenes with dense concept labels, written in the Broden format.

    from unitscope.data import BrodenDataset
    from unitscope.world import make_world
    path = make_world("worlds/w224", n=10_000, size=224, seed=0)   # idempotent; parallel over cores
    ds = BrodenDataset(path)                                         # the same reader as real Broden
    sample = render_image(seed=0, index=3, size=224)                 # arrays only, no files
    make_world("worlds/p224", n=5000, style="photo")                 # real photographs (see photo.py)

The cartoon world (``style="cartoon"``): every image is one of eight scenes (street, forest,
beach, ski slope, bedroom, harbour, field, kitchen); the scene makes some objects likely, with
noise. Pixels are labelled in Broden's six categories: colour (the colour each pixel is rendered
in), object, part, material and texture as masks, and scene per image. ``style="photo"`` and
``"mixed"`` compose real photographs instead (:mod:`unitscope.world.photo`), with an extra
``object`` plane of coarse parents. Image ``i`` depends only on ``(seed, i, size, mask_size)``
and the style's sources, so any number of worker processes writes byte-identical folders.
"""

from __future__ import annotations

import io
import json
import multiprocessing as mp
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unitscope.data.broden_writer import encode_mask, write_label_tables
from unitscope.runs import atomic_write_bytes, atomic_write_text
from unitscope.world.scenes import render_scene, scene_of
from unitscope.world.vocab import CATEGORIES, NUM_LABELS, VOCAB, color_labels

GENERATOR_VERSION = 3  # 2: plain colour and scene names; 3: no kitchen carpets
MARKER = "world.json"  # written last: its presence and content mark a complete world
PARTIAL = ".world-partial.json"  # written first: a folder holding only this is ours to rebuild
IMAGE_DIR = "world"  # under images/
VAL_EVERY = 5  # image i is in the val split when i % VAL_EVERY == VAL_EVERY - 1 (20 %)
JPEG_QUALITY = 92


STYLES = ("cartoon", "photo", "mixed")


class CartoonStyle:
    """The procedural cartoon world; the photo styles (``photo.py``) offer the same attributes."""

    name = "cartoon"
    categories = CATEGORIES
    planes = (
        ("color", "color"),
        ("object", "object"),
        ("part", "part"),
        ("material", "material"),
        ("texture", "texture"),
    )  # (category, layer name): one mask file per plane
    vocab = VOCAB
    num_labels = NUM_LABELS

    def params(self) -> dict:
        return {}  # the cartoon world's marker is unchanged from before styles existed

    def compose(self, seed: int, index: int, size: int):
        rgb, layers, scene = render_scene(seed, index, size)
        return rgb, layers, scene, []

    def scene_of(self, seed: int, index: int) -> int:
        return scene_of(seed, index)


def world_style(style: str = "cartoon", sources: str | Path | None = None, system: bool = True):
    """The style object for ``style``; the photo styles look for their photographs here (see
    :func:`unitscope.world.sources.find_sources`) and raise MissingSources without them."""
    if style == "cartoon":
        return CartoonStyle()
    if style not in STYLES:
        raise ValueError(f"unknown world style {style!r}; choose one of {', '.join(STYLES)}")
    from unitscope.world.photo import MixedStyle, PhotoStyle
    from unitscope.world.sources import find_sources

    src = find_sources(sources, system=system)
    return PhotoStyle(src) if style == "photo" else MixedStyle(src)


@dataclass
class WorldImage:
    """One rendered image: ``rgb`` uint8 [S, S, 3]; ``labels[plane]`` uint16 [sh, sw] for every mask
    plane of the style (cartoon: colour, object, part, material, texture; photo adds ``parent``);
    ``scene`` index into the style's scenes; ``full`` the non-colour planes at image resolution
    [S, S]; ``placed`` the photo cut-outs in drawing order; ``scene_label`` its label number."""

    rgb: np.ndarray
    labels: dict[str, np.ndarray]
    scene: int
    full: dict[str, np.ndarray]
    scene_label: int = 0
    placed: list = field(default_factory=list)


def _box_down(rgb: np.ndarray, sh: int, sw: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((sw, sh), Image.BOX))


def render_image(seed: int, index: int, size: int = 224, mask_size: int | None = None, style=None) -> WorldImage:
    """Render image ``index`` of world ``seed`` with its label planes, without writing anything.
    ``style`` is a :func:`world_style` object (default: the cartoon world)."""
    style = style or CartoonStyle()
    sh = mask_size or max(1, size // 2)
    rgb, layers, scene, placed = style.compose(seed, index, size)
    rows = ((np.arange(sh) + 0.5) * size / sh).astype(np.int64)
    labels = {"color": color_labels(_box_down(rgb, sh, sh)).astype(np.uint16)}
    for name, layer in layers.items():
        labels[name] = layer[rows[:, None], rows[None, :]]
    return WorldImage(rgb, labels, scene, layers, style.vocab["scene"][scene][1], placed)


_STYLE = None  # the style being written; set in every worker process by _use_style


def _use_style(style) -> None:
    global _STYLE
    _STYLE = style


def _stats(labels: dict[str, np.ndarray], style) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per pixel category: the labels present in any of its planes, and their area fractions."""
    stats = {}
    for cat in dict.fromkeys(c for c, _ in style.planes):
        counts = sum(
            np.bincount(labels[name].ravel(), minlength=style.num_labels) for c, name in style.planes if c == cat
        )
        present = np.flatnonzero(counts[1:]) + 1
        stats[cat] = (present, counts[present] / labels[cat].size)
    return stats


def _write_one(job: tuple[str, int, int, int, int, bool]) -> tuple[int, int, dict]:
    """Render and write image ``i`` (masks first, JPEG last); return (i, scene, {cat: (labels, fractions)}).
    With ``resume``, an image whose files all exist is read back instead of rendered again."""
    out, seed, i, size, sh, resume = job
    style = _STYLE
    folder = Path(out) / "images" / IMAGE_DIR
    jpg = folder / f"{i:06d}.jpg"
    masks = {name: folder / f"{i:06d}_{name}.png" for _, name in style.planes}
    if resume and jpg.exists() and all(p.exists() for p in masks.values()):
        from unitscope.data.broden import decode_mask

        return i, style.scene_of(seed, i), _stats({name: decode_mask(p) for name, p in masks.items()}, style)
    im = render_image(seed, i, size, sh, style)
    for name, path in masks.items():
        atomic_write_bytes(path, encode_mask(im.labels[name]), fsync=False)  # whole or absent; cheap to redo
    buf = io.BytesIO()
    Image.fromarray(im.rgb).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    atomic_write_bytes(jpg, buf.getvalue(), fsync=False)
    return i, im.scene, _stats(im.labels, style)


def _params(n: int, size: int, seed: int, mask_size: int) -> dict:
    return {
        "format": "broden",
        "generator": "unitscope.world",
        "generator_version": GENERATOR_VERSION,
        "n": n,
        "size": size,
        "seed": seed,
        "mask_size": mask_size,
    }


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


def make_world(
    out: str | Path,
    n: int,
    size: int = 224,
    seed: int = 0,
    workers: int | None = None,
    mask_size: int | None = None,
    progress: bool = True,
    style: str = "cartoon",
    sources: str | Path | None = None,
    system_sources: bool = True,
    cue=None,
    hide=None,
) -> Path:
    """Write a Broden-format probe world of ``n`` images of ``size``² pixels into ``out``.

    Masks are ``mask_size``² (default ``size // 2``, as Broden). Idempotent: a folder that already
    holds a complete world with the same parameters is returned at once; a half-written one (an
    interrupted run) is completed: images whose files are all present are kept (every file is
    renamed into place whole), the rest are rendered again. ``workers`` processes render in
    parallel (default: all cores); output is
    byte-identical for any number of workers. ``style`` is "cartoon", "photo" or "mixed"; the
    photo styles read the Debian packages' photographs (if ``system_sources``) and a folder
    ``sources`` of the user's own (see :mod:`unitscope.world.sources`). ``cue`` (a
    :class:`unitscope.world.cue.CueSpec`, cartoon style only) stamps scene-naming signs into a share
    of the images; without it the world is exactly the plain one. ``hide`` (a
    :class:`unitscope.world.hide.HideSpec`, cartoon style only) blurs or fills one concept out of
    every image, its masks kept.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    sh = int(mask_size or size // 2)
    if not 1 <= sh <= size:
        raise ValueError(f"mask_size must be between 1 and size ({size}), got {mask_size}")
    out = Path(out)
    if cue is not None and hide is not None:
        raise ValueError("a world takes the cue option or the hide option, not both")
    if cue is not None:
        if style != "cartoon":
            raise ValueError(f"the cue option draws on the cartoon world only, not style {style!r}")
        from unitscope.world.cue import CueStyle

        look = CueStyle(cue)
    elif hide is not None:
        if style != "cartoon":
            raise ValueError(f"the hide option draws on the cartoon world only, not style {style!r}")
        from unitscope.world.hide import HideStyle

        look = HideStyle(hide)
    else:
        look = world_style(style, sources, system_sources)
    params = {**_params(n, size, seed, sh), **look.params()}
    state = _prepare(out, params)
    if state == "done":
        _label_store(out)  # a world written before the store came, or whose store went stale
        return out
    (out / "images" / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / PARTIAL, json.dumps(params, indent=1) + "\n")
    for tmp in (out / "images" / IMAGE_DIR).glob(".*.tmp"):  # left by an interrupted run
        tmp.unlink()

    freq = {c: np.zeros(look.num_labels, np.int64) for c in look.categories}
    cov = {c: np.zeros(look.num_labels, np.float64) for c in look.categories}
    scenes = np.zeros(n, np.int64)
    jobs = [(str(out), seed, i, size, sh, state == "resume") for i in range(n)]
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    from tqdm import tqdm

    bar = tqdm(total=n, desc="world", unit="img", disable=not progress)
    if workers > 1 and n > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers, initializer=_use_style, initargs=(look,)) as pool:
            results = pool.imap_unordered(_write_one, jobs, chunksize=max(1, min(32, n // (workers * 8))))
            for result in results:
                _tally(result, freq, cov, scenes, look)
                bar.update()
    else:
        _use_style(look)
        for job in jobs:
            _tally(_write_one(job), freq, cov, scenes, look)
            bar.update()
    bar.close()
    _write_tables(out, n, size, sh, scenes, freq, cov, look)
    atomic_write_text(out / MARKER, json.dumps(params, indent=1) + "\n")
    (out / PARTIAL).unlink(missing_ok=True)
    _label_store(out)
    return out


def _label_store(out: Path) -> None:
    """The world's label planes decoded once for every dissection that reads them
    (:mod:`unitscope.data.label_store`), unless a fresh store is there already."""
    import warnings

    from unitscope.data import BrodenDataset, write_label_store

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a stale store is rebuilt here, not reported
        fresh = BrodenDataset(out, validate="none").label_store == "fresh"
    if not fresh:
        try:
            write_label_store(out)
        except OSError as exc:  # a read-only folder: the PNGs are decoded as before
            warnings.warn(f"no label store for {out} ({exc}); its label planes are decoded from the PNGs", stacklevel=3)


def _tally(result, freq, cov, scenes, style) -> None:
    i, scene, stats = result
    scenes[i] = scene
    for cat, (present, frac) in stats.items():
        freq[cat][present] += 1
        cov[cat][present] += frac
    label = style.vocab["scene"][scene][1]
    freq["scene"][label] += 1
    cov["scene"][label] += 1.0


def _write_tables(out: Path, n, size, sh, scenes, freq, cov, style) -> None:
    cats, vocab = style.categories, style.vocab
    rows = ["image,split,ih,iw,sh,sw," + ",".join(cats)]
    for i in range(n):
        split = "val" if i % VAL_EVERY == VAL_EVERY - 1 else "train"
        cells = {c: ";".join(f"{IMAGE_DIR}/{i:06d}_{name}.png" for cc, name in style.planes if cc == c) for c in cats}
        cells["scene"] = str(vocab["scene"][scenes[i]][1])
        rows.append(f"{IMAGE_DIR}/{i:06d}.jpg,{split},{size},{size},{sh},{sh}," + ",".join(cells[c] for c in cats))
    atomic_write_text(out / "index.csv", "\n".join(rows) + "\n")
    write_label_tables(out, cats, vocab, freq, cov, n)
