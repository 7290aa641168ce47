"""Cost of all single-unit ablations of a layer against units x one full forward pass.

    python benchmarks/bench_ablate.py [--model world_scenes] [--layers features.relu5,features.relu3] [--images 1000]
    python benchmarks/bench_ablate.py --model standin --size 48     # random weights, no organism needed

For each layer: the bare forward pass over ``--images`` random images (batches of ``--batch``),
then what ``unitscope ablate importance`` does -- one head pass that caches the layer (and any
tensor skipping over it), then every unit ablated alone through the tail only, many ablations to
a tail batch -- and, for reference, the naive way (a full forward per unit with an ablation hook)
on a few units. Prints seconds, the ratio ``all ablations / (units x full forward)`` and the
issue's targets (last conv layer <= 0.1, a middle layer <= 0.6).

By default it times the trained probe-world scene classifier ``world_scenes`` (five conv-bn-relu
layers, 64-px input, 8x8 at the last conv layer) on random images of its input size (the cost
of dense convolutions does not depend on the pixels); ``--model standin`` builds the same layers
with random weights.
"""

from __future__ import annotations

import argparse
import time
from collections import OrderedDict

import torch
from torch import nn
from torch.utils.data import TensorDataset

from unitscope.ablate import cache_layer, cut_model, unit_importance
from unitscope.hooks import Ablate

TARGETS = {"last": 0.1, "middle": 0.6}


def standin() -> nn.Module:
    """The world_scenes architecture with random weights (speed does not depend on the weights)."""
    convs = ((3, 64, 4), (64, 64, 2), (64, 64, 1), (64, 64, 1), (64, 128, 1))
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for k, (cin, cout, stride) in enumerate(convs, start=1):
        kernel, pad = (4, 0) if stride == 4 else (3, 1)
        layers[f"conv{k}"] = nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, bias=False)
        layers[f"bn{k}"] = nn.BatchNorm2d(cout)
        layers[f"relu{k}"] = nn.ReLU()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(128, 8)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.features(x)), 1))

    return Net().eval()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="world_scenes", help="a registered model, or `standin` (random weights)")
    p.add_argument("--layers", default="features.relu5,features.relu3", help="last conv layer, then a middle one")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--size", type=int, default=None, help="input side (default: the model's own)")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--max-batch", type=int, default=1024, help="images x ablations per tail pass")
    p.add_argument("--naive-units", type=int, default=3, help="units timed the naive way (full forward + hook)")
    args = p.parse_args()

    torch.manual_seed(0)
    if args.model != "standin":
        from unitscope.models import create_model, get_info

        model = create_model(args.model)
        args.size = args.size or get_info(model).input_size[-1]
    else:
        model = standin()
        args.size = args.size or 64
    x = torch.rand(args.images, 3, args.size, args.size)
    data = TensorDataset(x, torch.randint(0, 8, (args.images,)))
    batches = x.split(args.batch)

    def full():
        with torch.no_grad():
            for b in batches:
                model(b)

    full()  # warm-up
    t_full = min(timed(full) for _ in range(3))
    print(
        f"{args.model}: {args.images} images of {args.size}px, "
        f"one full forward pass {t_full:.3f} s ({args.images / t_full:.0f} img/s), {torch.get_num_threads()} threads"
    )
    for which, layer in zip(("last", "middle"), args.layers.split(",")):
        cut = cut_model(model, layer)
        t0 = time.perf_counter()
        cache = cache_layer(cut, data, batch_size=args.batch)
        t_head = time.perf_counter() - t0
        units = cache.batches[0].layer.shape[1]
        t_abl = timed(lambda: unit_importance(cut, cache, torch.arange(8), 8, max_batch=args.max_batch))
        total = t_head + t_abl
        ratio = total / (units * t_full)

        def naive():
            with torch.no_grad():
                for u in range(args.naive_units):
                    with Ablate(model, layer, [u]):
                        for b in batches:
                            model(b)

        t_naive = timed(naive) / args.naive_units * units
        target = TARGETS[which]
        print(
            f"  {layer} ({which}, {units} units, {'fx tail' if cut.exact_tail else 'hook fallback'}): "
            f"head {t_head:.2f} s + {units + 1} ablations {t_abl:.2f} s = {total:.2f} s; "
            f"units x full forward {units * t_full:.2f} s -> ratio {ratio:.3f} (target <= {target}: "
            f"{'met' if ratio <= target else 'MISSED'}); naive full-forward ablation {t_naive:.2f} s "
            f"(ratio {t_naive / (units * t_full):.2f})"
        )


if __name__ == "__main__":
    main()
