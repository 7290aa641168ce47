"""Probe-world training data as in-memory arrays, rendered once and cached in chunks.

    from unitscope.organisms.data import world_arrays
    data = world_arrays("/tmp/worlds", seed=1, n=20_000, size=64)
    data["rgb"].shape        # [N, S, S, 3] uint8
    data["scene"].shape      # [N] int64, index into the world's SCENES
    data["object"].shape     # [N, S, S] uint8 Broden label numbers (also "part", "material")

Training reads pixels straight from the renderer (no JPEG round trip, no PNG decoding): a chunk of
1,000 images is rendered by worker processes and saved as one ``.npz``; an interrupted run keeps
the chunks it finished, so calling again resumes.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np

from unitscope.world import render_image

CHUNK = 1000
SEG_CATEGORIES = ("object", "part", "material")  # colour is computed from the pixels themselves


def _render(job: tuple) -> tuple[np.ndarray, int, np.ndarray]:
    seed, index, size, cue = job[:4]
    hide = job[4] if len(job) > 4 else None
    if hide is not None:  # the hidden-concept world (unitscope.world.hide)
        from unitscope.world.hide import HideStyle

        im = render_image(seed, index, size, style=HideStyle(hide))
    elif cue is None:
        im = render_image(seed, index, size)
    else:  # the sign's labels (75, 76) still fit uint8
        from unitscope.world.cue import CueStyle

        im = render_image(seed, index, size, style=CueStyle(cue))
    layers = np.stack([im.full[c] for c in SEG_CATEGORIES]).astype(np.uint8)
    return im.rgb, im.scene, layers


def _chunk(path: Path, seed: int, start: int, stop: int, size: int, workers: int, cue=None, hide=None) -> None:
    jobs = [(seed, i, size, cue, hide) for i in range(start, stop)]
    if workers > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers) as pool:
            out = pool.map(_render, jobs, chunksize=16)
    else:
        out = [_render(j) for j in jobs]
    arrays = {
        "rgb": np.stack([o[0] for o in out]),
        "scene": np.array([o[1] for o in out], np.int64),
        "layers": np.stack([o[2] for o in out]),
    }
    if cue is not None:
        from unitscope.world.cue import cue_of

        arrays["cue"] = np.array([cue_of(cue, seed, i) for i in range(start, stop)], np.int64)
    from unitscope.runs import save_arrays

    save_arrays(path, arrays)


def world_arrays(
    cache: str | Path,
    seed: int,
    n: int,
    size: int = 64,
    workers: int | None = None,
    progress: bool = True,
    cue=None,
    hide=None,
) -> dict[str, np.ndarray]:
    """Images ``0..n-1`` of world ``seed`` at ``size``² pixels with their labels (see module doc).
    With ``cue`` (a :class:`unitscope.world.cue.CueSpec`) the images carry its signs and ``data["cue"]``
    [N] int64 holds the scene each sign names (-1: none). With ``hide`` (a
    :class:`unitscope.world.hide.HideSpec`) one concept is hidden from the pixels (labels kept)."""
    from tqdm import tqdm

    from unitscope.runs import load_arrays

    folder = Path(cache) / (
        f"arrays-seed{seed}-s{size}"
        + (f"-{cue.key()}" if cue is not None else "")
        + (f"-{hide.key()}" if hide is not None else "")
    )
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    parts = []
    for start in tqdm(range(0, n, CHUNK), desc=f"world seed {seed}", unit="chunk", disable=not progress):
        stop = min(n, start + CHUNK)
        path = folder / f"{start:07d}-{stop:07d}.safetensors"
        if not path.exists():
            _chunk(path, seed, start, stop, size, workers, cue, hide)
        parts.append(load_arrays(path))
    layers = np.concatenate([p["layers"] for p in parts])
    data = {"rgb": np.concatenate([p["rgb"] for p in parts]), "scene": np.concatenate([p["scene"] for p in parts])}
    data.update({c: layers[:, k] for k, c in enumerate(SEG_CATEGORIES)})
    if cue is not None:
        data["cue"] = np.concatenate([p["cue"] for p in parts])
    return data


def resized(data: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """``data`` with its pixels resized to ``size``² (PIL bilinear, as ``ModelInfo.transform`` does);
    label maps are left out (they keep the render size)."""
    from PIL import Image

    if data["rgb"].shape[1] == size:
        return data
    rgb = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in data["rgb"]])
    return {"rgb": rgb, "scene": data["scene"], **({"cue": data["cue"]} if "cue" in data else {})}
