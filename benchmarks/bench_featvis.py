"""Feature visualisation: per-unit cost of rendering a layer's units in one batch vs one at a time.

    python benchmarks/bench_featvis.py [--layer blocks.3.0.bn1] [--batch 64] [--steps 3] [--device cpu]

EfficientNet-Lite0, Lucid's defaults (128 px Fourier image, standard transforms, upsampled to 224,
forward pass stopped after the layer). Times ``--steps`` steps of a batch of ``--batch`` units and
of ``--single`` units rendered alone, alternating the two ``--repeats`` times and keeping the
fastest (so load from other processes hits both alike); prints seconds per unit-step and the
ratio (target: batch 64 at least 5x cheaper per unit on CPU). On a GPU it also prints steps/s of
the batch.
"""

from __future__ import annotations

import argparse
import time

import torch

from unitscope.featvis import channel, render
from unitscope.models import create_model


def timed(model, layer: str, units: list[int], steps: int, device: str, upsample: bool) -> float:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t = time.perf_counter()
    render(
        model, channel(layer, units), batch=len(units), steps=steps, device=device, upsample=upsample, progress=False
    )
    sync()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer", default="blocks.3.0.bn1", help="a post-ReLU6 layer, 240 units at 28x28")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--single", type=int, default=4, help="units rendered one at a time")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-upsample", dest="upsample", action="store_false", help="feed the 128 px image directly")
    args = p.parse_args()

    model = create_model("efficientnet_lite0").to(args.device)
    units = list(range(args.batch))
    timed(model, args.layer, units[:2], 1, args.device, args.upsample)  # warm-up
    batch_s, single_s = [], []
    for _ in range(args.repeats):
        batch_s.append(timed(model, args.layer, units, args.steps, args.device, args.upsample))
        single_s.append(
            sum(timed(model, args.layer, [u], args.steps, args.device, args.upsample) for u in units[: args.single])
        )
    per_unit_batch = min(batch_s) / (args.steps * args.batch)
    per_unit_single = min(single_s) / (args.steps * args.single)
    print(
        f"device {args.device}, threads {torch.get_num_threads()}, layer {args.layer}, "
        f"128 px {'upsampled to 224' if args.upsample else 'fed directly'}, {args.steps} steps"
    )
    print(
        f"batch of {args.batch}: {per_unit_batch * 1e3:.1f} ms per unit-step "
        f"({args.steps / min(batch_s):.2f} steps/s for the batch)"
    )
    print(f"one at a time: {per_unit_single * 1e3:.1f} ms per unit-step")
    print(f"batched is {per_unit_single / per_unit_batch:.1f}x cheaper per unit (target: >= 5x)")


if __name__ == "__main__":
    main()
