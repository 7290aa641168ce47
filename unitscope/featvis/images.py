"""Images out: ``[3, H, W]`` tensors in [0, 1] to PIL, atomic PNG writes, captioned contact sheets.

save_png(result.images[0], run / "featvis/blocks.2.0.bn1/0.png")
sheet([img0, img1], ["unit 0", "unit 1"], per_row=8).save("sheet.png")
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def to_pil(img: torch.Tensor):
    """``[3, H, W]`` in [0, 1] -> PIL RGB image."""
    from PIL import Image

    if img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(f"expected an image [3, H, W], got shape {tuple(img.shape)}")
    arr = (img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def save_png(img: torch.Tensor, path: str | Path) -> None:
    """Write ``[3, H, W]`` in [0, 1] as a PNG, atomically."""
    from unitscope.runs import atomic_write_bytes

    buf = io.BytesIO()
    to_pil(img).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue(), fsync=False)


def sheet(
    images: Sequence[torch.Tensor],
    captions: Sequence[str] | None = None,
    per_row: int = 6,
    panel: int = 160,
    caption_height: int = 28,
    titles: dict[int, str] | None = None,
):
    """A contact sheet (PIL) of ``[3, H, W]`` images with a caption under each; ``titles`` maps a
    panel index to a row heading drawn above the row that starts there."""
    from PIL import Image, ImageDraw

    captions = list(captions or [""] * len(images))
    rows, row_of, col, r = [], [], 0, 0
    for i in range(len(images)):
        if i > 0 and (col == per_row or (titles and i in titles)):
            r, col = r + 1, 0
        row_of.append((r, col))
        col += 1
    n_rows = r + 1 if images else 0
    title_h = 22 if titles else 0
    cell_h = panel + caption_height + title_h
    out = Image.new("RGB", (per_row * panel, n_rows * cell_h), "white")
    draw = ImageDraw.Draw(out)
    for i, img in enumerate(images):
        r, c = row_of[i]
        y0 = r * cell_h + title_h
        if titles and i in titles:
            draw.text((4, r * cell_h + 4), titles[i], fill="black")
        out.paste(to_pil(img).resize((panel, panel)), (c * panel, y0))
        for k, line in enumerate(_wrap(captions[i], panel)):
            draw.text((c * panel + 3, y0 + panel + 2 + 12 * k), line, fill="black")
    del rows
    return out


def _wrap(text: str, width: int, char_px: int = 6) -> list[str]:
    n = max(1, width // char_px)
    return [text[i : i + n] for i in range(0, len(text), n)][:2]
