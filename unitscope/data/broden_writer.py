"""The Broden format's writer: mask PNGs and label tables, shared by every folder unitscope writes.

    from unitscope.data.broden_writer import encode_mask, write_label_tables
    png = encode_mask(labels)                    # uint16/int64 [h, w] -> PNG bytes, label = R + 256·G
    write_label_tables(out, ["object"], {"object": [("house", 5)]}, freq, cov, n=100)

The probe world (:func:`unitscope.world.make_world`) and segmenter-labelled folders
(:func:`unitscope.segment.label_folder`) both write through here; :mod:`unitscope.data.broden`
reads what they write (``decode_mask`` is :func:`encode_mask`'s inverse). Torch-free, so the
world's worker processes stay light.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from unitscope.runs import atomic_write_text


def encode_mask(label: np.ndarray) -> bytes:
    """A label map [h, w] (numbers below 65,536) as Broden's mask PNG: R = label & 255, G = label >> 8."""
    from PIL import Image

    rgb = np.zeros(label.shape + (3,), np.uint8)
    rgb[..., 0] = label & 255
    rgb[..., 1] = label >> 8
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_label_tables(
    out: Path,
    categories: Sequence[str],
    vocab: Mapping[str, Sequence[tuple[str, int]]],
    freq: Mapping[str, np.ndarray],
    cov: Mapping[str, np.ndarray] | None,
    n: int,
) -> None:
    """``label.csv``, ``category.csv`` and ``c_<category>.csv`` for ``vocab[cat]`` = (name, number) pairs.

    ``freq[cat][number]``: images in which the label occurs; ``cov[cat][number]``: its summed pixel
    share (written as 0 when ``cov`` is None: a labeller that does not measure it)."""
    labels = ["number,name,category,frequency,coverage,syns"]
    table = ["name,first,last,count,frequency"]
    for cat in categories:
        numbers = [num for _, num in vocab[cat]]
        table.append(f"{cat},{min(numbers)},{max(numbers)},{len(numbers)},{n}")
        crow = ["code,number,name,frequency,coverage"]
        for code, (name, num) in enumerate(vocab[cat], start=1):
            f = int(freq[cat][num])
            c = f"{float(cov[cat][num]):.6f}" if cov is not None else "0"
            labels.append(f"{num},{name},{cat}({f}),{f},{c},")
            crow.append(f"{code},{num},{name},{f},{c}")
        atomic_write_text(out / f"c_{cat}.csv", "\n".join(crow) + "\n")
    atomic_write_text(out / "label.csv", "\n".join(labels) + "\n")
    atomic_write_text(out / "category.csv", "\n".join(table) + "\n")
