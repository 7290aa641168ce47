"""Render docs/generator_samples.png: world_generator samples beside their world_segmenter object
maps (colour per object, legend below), and print the object table of docs/organisms.md.

    python docs/make_generator_sheet.py [--n 16] [--seed 0] [--out docs/generator_samples.png]
    python docs/make_generator_sheet.py --checkpoint runs/organisms/world_generator.safetensors
    python docs/make_generator_sheet.py --table      # the Markdown table from the shipped metadata
    python docs/make_generator_sheet.py --table --recompute 500 --cache /tmp/worlds   # recount it

The same chain from the command line (the GAN-dissection input):
``unitscope organisms sample world_generator --n 64 --out samples`` then
``unitscope world label samples --segmenter world_segmenter --out samples-broden``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from unitscope.models import create_model
from unitscope.organisms.gan import generate
from unitscope.organisms.gan_eval import markdown_table, segment_objects
from unitscope.segment import create_segmenter
from unitscope.world.sheet import label_colors
from unitscope.world.vocab import OBJECTS, VOCAB


def object_rgb(maps: np.ndarray) -> np.ndarray:
    """Object label numbers [N, H, W] -> uint8 [N, H, W, 3] (black: no object)."""
    lut = np.zeros((256, 3), np.uint8)
    colors = label_colors(["none"] + OBJECTS)
    for k, (_, num) in enumerate(VOCAB["object"], start=1):
        lut[num] = colors[k]
    return lut[maps]


def sheet(images: torch.Tensor, maps: np.ndarray, per_row: int = 4, panel: int = 128) -> Image.Image:
    """Pairs (sample, segmentation) ``per_row`` to a row, and a legend of the objects shown."""
    font = ImageFont.load_default()
    rgb = (images.permute(0, 2, 3, 1) * 255).round().byte().numpy()
    seg = object_rgb(maps)
    n, gap = len(rgb), 8
    rows = (n + per_row - 1) // per_row
    shown = [name for name, num in VOCAB["object"] if (maps == num).any()]
    legend_rows = (len(shown) + 5) // 6
    w = per_row * (2 * panel + gap) - gap
    out = Image.new("RGB", (w, rows * (panel + gap) + 16 * legend_rows + 4), (255, 255, 255))
    for i in range(n):
        x0, y0 = (i % per_row) * (2 * panel + gap), (i // per_row) * (panel + gap)
        out.paste(Image.fromarray(rgb[i]).resize((panel, panel), Image.NEAREST), (x0, y0))
        out.paste(Image.fromarray(seg[i]).resize((panel, panel), Image.NEAREST), (x0 + panel, y0))
    draw = ImageDraw.Draw(out)
    colors = dict(zip(OBJECTS, label_colors(["none"] + OBJECTS)[1:]))
    for k, name in enumerate(shown):
        x, y = (k % 6) * (w // 6), rows * (panel + gap) + 16 * (k // 6)
        draw.rectangle([x, y + 2, x + 11, y + 13], fill=tuple(int(c) for c in colors[name]))
        draw.text((x + 16, y + 2), name, fill=(0, 0, 0), font=font)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seed", type=int, default=0, help="seed of the latent vectors")
    p.add_argument("--checkpoint", default=None, help="a trained world_generator.safetensors (default: shipped)")
    p.add_argument("--out", default="docs/generator_samples.png")
    p.add_argument("--table", action="store_true", help="print the object table instead of drawing the sheet")
    p.add_argument("--recompute", type=int, default=0, help="with --table: recount on this many images")
    p.add_argument("--cache", default="/tmp/unitscope-worlds", help="with --recompute: where held-out worlds are kept")
    args = p.parse_args()
    g = create_model("world_generator", checkpoint=args.checkpoint, pretrained=False if args.checkpoint else None)
    if args.table:
        if args.recompute:
            from unitscope.organisms.gan_eval import evaluate_generator

            metrics, tables = evaluate_generator(g, args.cache, n=args.recompute, progress=True)
            print(metrics)
        else:
            from unitscope.organisms.registry import weights_metadata

            tables = weights_metadata("world_generator")["object_tables"]
        print(markdown_table(tables))
        return
    images = generate(g, args.n, seed=args.seed)
    maps = segment_objects(create_segmenter("world_segmenter"), images)
    sheet(images, maps).save(args.out, optimize=True)
    print(f"{args.out}: {args.n} samples (z seed {args.seed}) beside their world_segmenter objects")


if __name__ == "__main__":
    main()
