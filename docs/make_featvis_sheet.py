"""Render docs/featvis_lite0.png: EfficientNet-Lite0 units from early, middle and late stages and
a few class logits (512 steps each, Lucid's defaults otherwise; see the note on size below).

    nice -n 10 python docs/make_featvis_sheet.py [--steps 512] [--out docs/featvis_lite0.png]
    # or one group per process, then the sheet from the saved groups:
    for g in 0 1 2 3 4; do python docs/make_featvis_sheet.py --group $g --save /tmp/g$g.pt & done; wait
    python docs/make_featvis_sheet.py --assemble /tmp/g0.pt /tmp/g1.pt /tmp/g2.pt /tmp/g3.pt /tmp/g4.pt

Each group is one batch (image i serves unit i) and stops the forward pass after its last layer.
On the shared 2-core CPU the sheet is rendered at 128 px fed to the network directly
(``upsample=False``, as Lucid feeds InceptionV1) instead of upsampled to 224: a third of the cost.
The committed sheet was rendered with 512 steps (Lucid's default), one group per process, two at
a time with one thread each: 189, 254, 208, 419 and 240 s for the five groups (the fourth shared
the CPU with a dissection), 11 minutes for the sheet. The late rows are rendered before ReLU6
(``bn2:pre``): rendered after it, the head ``bn2`` units reach ReLU6's cap of 6 within the run
(their objectives end at 6.0), after which they get no gradient and their pictures stay faint;
before it their objectives reach 28-37 (``blocks.5.3.bn2``: 14-34) and the pictures have the
contrast of the logits'. What the sheet shows: flat colours and colour edges in the stem (``bn1``
units 1-3 want one colour everywhere), stripes and gratings in blocks 1-2, textures and repeated
scales in blocks 3-4, eyes, fur and animal-like parts before the head's ReLU6, and in the logits
orange fish shapes (goldfish) and dog fur (golden retriever). Units 1 and 2 of ``blocks.3.2.bn2`` end
near the cap (5.93, 5.53) and stay faint there too.
"""

from __future__ import annotations

import argparse
import time

import torch

from unitscope.featvis import channel, class_logit, render, sheet, stack
from unitscope.models import create_model, get_info

# (row title, [(layer, unit) or ("class", index)]) -- layers are post-ReLU6, a privileged basis;
# "<layer>:pre" is the same units before their ReLU6, for the late layers whose units reach the cap.
GROUPS = [
    (
        "early: stem bn1 (112x112 at 224 px), blocks.1.1.bn2 (56x56)",
        [("bn1", u) for u in (0, 1, 2, 3)] + [("blocks.1.1.bn2", u) for u in (0, 1, 2, 3)],
    ),
    (
        "early-middle: blocks.2.1.bn2 (28x28), blocks.3.2.bn2 (14x14)",
        [("blocks.2.1.bn2", u) for u in (0, 1, 2, 3)] + [("blocks.3.2.bn2", u) for u in (0, 1, 2, 3)],
    ),
    ("middle: blocks.4.1.bn2 (14x14)", [("blocks.4.1.bn2", u) for u in (0, 1, 2, 3, 4, 5)]),
    (
        "late, before ReLU6 (:pre): blocks.5.3.bn2 (7x7), head bn2 (7x7, 1280 units)",
        [("blocks.5.3.bn2:pre", u) for u in (0, 1, 2, 3)] + [("bn2:pre", u) for u in (0, 1, 2, 3)],
    ),
    ("class logits", [("class", c) for c in (1, 207, 340, 954)]),
]


def render_group(model, index: int, steps: int) -> dict:
    names = get_info(model).class_names
    title, items = GROUPS[index]
    objs = [class_logit(i, names=names) if layer == "class" else channel(layer, i) for layer, i in items]
    t = time.perf_counter()
    result = render(model, stack(objs), batch=len(objs), steps=steps, upsample=False, desc=title[:20])
    print(
        f"{title}: {time.perf_counter() - t:.0f} s, final objectives {[round(v, 2) for v in result.values.tolist()]}",
        flush=True,
    )
    captions = [f"{names[i]} (logit)" if layer == "class" else f"{layer} #{i}" for layer, i in items]
    return {"title": title, "images": result.images, "captions": captions}


def assemble(groups: list[dict], out: str) -> None:
    images, captions, titles = [], [], {}
    for g in groups:
        titles[len(images)] = g["title"]
        images += list(g["images"])
        captions += g["captions"]
    sheet(images, captions, per_row=8, panel=160, titles=titles).save(out)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--out", default="docs/featvis_lite0.png")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--group", type=int, default=None, help="render only this group and --save it")
    ap.add_argument("--save", default=None)
    ap.add_argument("--assemble", nargs="+", default=None, help="saved groups to put on the sheet")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.assemble:
        assemble([torch.load(p) for p in args.assemble], args.out)
        return
    model = create_model("efficientnet_lite0")
    if args.group is not None:
        torch.save(render_group(model, args.group, args.steps), args.save)
        return
    assemble([render_group(model, i, args.steps) for i in range(len(GROUPS))], args.out)


if __name__ == "__main__":
    main()
