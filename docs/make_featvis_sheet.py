"""Render docs/featvis_lite0.png: EfficientNet-Lite0 units from early, middle and late stages and
a few class logits (512 steps each, Lucid's defaults otherwise; see the note on size below).

    nice -n 10 python docs/make_featvis_sheet.py [--steps 512] [--out docs/featvis_lite0.png]

Each group is one batch (image i serves unit i) and stops the forward pass after its last layer.
On the shared 2-core CPU the sheet is rendered at 128 px fed to the network directly
(``upsample=False``, as Lucid feeds InceptionV1) instead of upsampled to 224: a third of the cost.
"""

from __future__ import annotations

import argparse
import time

import torch

from unitscope.featvis import channel, class_logit, render, sheet, stack
from unitscope.models import create_model, get_info

# (row title, [(layer, unit) or ("class", index)]) -- layers are post-ReLU6, a privileged basis.
GROUPS = [
    ("early: blocks.1.1.bn2 (56x56 at 224 px), blocks.2.1.bn2 (28x28)",
     [("blocks.1.1.bn2", u) for u in (0, 1, 2, 3)] + [("blocks.2.1.bn2", u) for u in (0, 1, 2, 3)]),
    ("middle: blocks.4.1.bn2 (14x14)", [("blocks.4.1.bn2", u) for u in (0, 1, 2, 3, 4, 5)]),
    ("late: head bn2 (7x7, 1280 units); class logits",
     [("bn2", u) for u in (0, 1, 2)] + [("class", c) for c in (1, 207, 340, 954)]),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--out", default="docs/featvis_lite0.png")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = create_model("efficientnet_lite0")
    names = get_info(model).class_names
    images, captions, titles = [], [], {}
    for title, items in GROUPS:
        objs = [class_logit(i, names=names) if layer == "class" else channel(layer, i) for layer, i in items]
        t = time.perf_counter()
        result = render(model, stack(objs), batch=len(objs), steps=args.steps, upsample=False, desc=title[:20])
        print(f"{title}: {time.perf_counter() - t:.0f} s, final objectives {[round(v, 2) for v in result.values.tolist()]}",
              flush=True)
        titles[len(images)] = title
        images += list(result.images)
        captions += [f"{names[i]} (logit)" if layer == "class" else f"{layer} #{i}" for layer, i in items]
    sheet(images, captions, per_row=8, panel=160, titles=titles).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
