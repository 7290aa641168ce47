"""Contact sheets: images of a Broden-format folder next to their label overlays.

    sheet = contact_sheet(BrodenDataset("worlds/w224"), n=16)   # PIL image
    sheet.save("sheet.png")

Each image gets one panel per pixel category (its first mask plane), coloured per label and
captioned with the largest labels; image-level labels (scene) are written under the image.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from unitscope.world.vocab import COLOR_RGB


def label_colors(names: list[str]) -> np.ndarray:
    """uint8 [L, 3]: a distinct colour per label; colour names (``red``, Broden's ``red-c``) get their colour."""
    out = np.zeros((len(names), 3), np.uint8)
    for n, name in enumerate(names):
        base = name[:-2] if name.endswith("-c") else name
        if base in COLOR_RGB:
            out[n] = COLOR_RGB[base]
        elif n:
            h = (n * 0.618034) % 1.0
            out[n] = np.array(colorsys.hsv_to_rgb(h, 0.55 + 0.4 * ((n * 7) % 3) / 2, 0.95)) * 255
    return out


def contact_sheet(ds, n: int = 16, panel: int = 128, per_row: int = 2, indices=None) -> Image.Image:
    """A sheet of ``n`` images spread evenly over ``ds`` (a BrodenDataset), ``per_row`` per row."""
    n = max(1, min(n, len(ds)))
    if indices is None:
        indices = np.linspace(0, len(ds) - 1, n).round().astype(int).tolist()
    cats = [ds.categories[g] for g in sorted(set(ds.plane_category.tolist()))]
    first_plane = {ds.categories[g]: k for k, g in reversed(list(enumerate(ds.plane_category.tolist())))}
    colors = label_colors(ds.label_names)
    font = ImageFont.load_default()
    cols = 1 + len(cats)
    cap, head = 34, 14
    rows = (len(indices) + per_row - 1) // per_row
    sheet = Image.new("RGB", (cols * panel * per_row + 6 * (per_row - 1), head + rows * (panel + cap)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r in range(per_row):
        for c, title in enumerate(["image"] + cats):
            draw.text((r * (cols * panel + 6) + c * panel + 3, 1), title, fill=(0, 0, 0), font=font)
    for k, i in enumerate(indices):
        item = ds.get(i, image=False)  # the panel is made from the file itself, not the model's input
        img = ds.load_image(i).resize((panel, panel), Image.BILINEAR)
        x0 = (k % per_row) * (cols * panel + 6)
        y0 = head + (k // per_row) * (panel + cap)
        sheet.paste(img, (x0, y0))
        words = [ds.label_names[v] for v in item["image_labels"].tolist() if v]
        draw.text((x0 + 2, y0 + panel + 1), f"#{item['index']} " + " ".join(words)[:22], fill=(0, 0, 0), font=font)
        base = np.asarray(img, np.float32)
        for c, cat in enumerate(cats):
            lab = item["labels"][first_plane[cat]].numpy()
            big = np.asarray(Image.fromarray(lab.astype(np.int32)).resize((panel, panel), Image.NEAREST))
            over = np.where((big > 0)[..., None], 0.3 * base + 0.7 * colors[big], 0.3 * base)
            sheet.paste(Image.fromarray(over.astype(np.uint8)), (x0 + (c + 1) * panel, y0))
            counts = np.bincount(lab.ravel(), minlength=len(colors))
            counts[0] = 0
            top = [v for v in np.argsort(-counts)[:3] if counts[v] > 0]
            for t, v in enumerate(top):
                yy = y0 + panel + 1 + t * 11
                xx = x0 + (c + 1) * panel + 2
                draw.rectangle([xx, yy + 2, xx + 7, yy + 9], fill=tuple(int(u) for u in colors[v]))
                draw.text((xx + 10, yy), ds.label_names[v][:18], fill=(0, 0, 0), font=font)
    return sheet
