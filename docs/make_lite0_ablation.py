"""The EfficientNet-Lite0 ablation of docs/ablation.md: per-class importance of the head's units
(``bn2``'s 1,280 units after ReLU6, taken after the global average pool) on photo-world images
whose dominant object is an ImageNet class.

    unitscope world make runs/p224 --n 6000 --size 224 --style photo --seed 0
    unitscope world imagefolder runs/p224 --out runs/p224-lite0 --imagenet --classes dog,aircraft,...
    nice -n 10 python docs/make_lite0_ablation.py --data runs/p224-lite0 --out runs/lite0 [--layer global_pool]

The layer is ``global_pool``: the head ``bn2``'s units averaged over the 7x7 map. Zeroing a unit
there is exactly zeroing it in ``bn2`` (the average of zeros is zero; likewise for mean ablation),
but each ablation then costs one 1,280 x 1,000 matrix product per image instead of copying and
pooling a 1,280 x 7 x 7 map: ~50x less memory traffic (at ``bn2`` the importance pass alone was
on course for 50 minutes on the loaded 2-core CPU).

One process runs the stages that ``unitscope ablate all`` runs, so the head's pass over the
images is cached once: importance on the train split, the top-N test on val, cumulative ablation
curves, class selectivity, steering and the PGD attacks (``--attack-images`` correctly classified
val images, 40 forward and backward passes of Lite0 each; 0 skips them); then the report. Stages resume as in
``unitscope ablate`` (rerun to continue). Prints the figures docs/ablation.md quotes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from unitscope.ablate.attack import attack_stage
from unitscope.ablate.experiment import Experiment
from unitscope.ablate.split import LabelledData, load_class_table
from unitscope.ablate.steer import steering_stage
from unitscope.commands.ablate import (
    print_attacks,
    print_curves,
    print_importance,
    print_selectivity,
    print_steering,
    print_top_n,
)
from unitscope.models import create_model, get_info

NS = [1, 2, 3, 5, 10, 20, 50, 100]


def per_class_table(out: str, layer: str, names: list[str], ns=(5, 20), model: str = "efficientnet_lite0") -> None:
    """The top-N test per class from the stored stage (no model run): the markdown table of the docs
    (also for docs/ablation.md's world_scenes table: ``model="world_scenes", ns=(10, 20)``)."""
    rows = json.loads((Path(out) / "ablation" / model / layer / "top_n.json").read_text())["result"]
    at = {(r["class"], r["n"], r["kind"]): r for r in rows}
    head = " | ".join(f"top {n}: class / others | random {n}: class" for n in ns)
    print(f"| class | val accuracy | {head} |\n|---|---|" + "---|---|" * len(ns))
    pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731
    for y, name in enumerate(names):
        cells = [
            f"{pct(at[(y, n, 'remove')]['class_accuracy'])} / {pct(at[(y, n, 'remove')]['other_accuracy'])} | "
            f"{pct(at[(y, n, 'random')]['class_accuracy'])}"
            for n in ns
        ]
        print(f"| {name} | {pct(at[(y, 0, 'none')]['class_accuracy'])} | " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="runs/p224-lite0")
    p.add_argument("--out", default="runs/lite0")
    p.add_argument("--layer", default="global_pool")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--attack-images", type=int, default=48, help="val images to attack (0: no attacks)")
    p.add_argument("--attack-units", type=int, default=20, help="key units per class for the unit attack")
    p.add_argument("--table", action="store_true", help="only print the per-class table of a finished run")
    args = p.parse_args()
    if args.table:
        per_class_table(args.out, args.layer, LabelledData(args.data).class_names)
        return
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = create_model("efficientnet_lite0")
    data = LabelledData(args.data, transform=get_info(model).transform())
    exp = Experiment(
        model,
        args.layer,
        data,
        args.out,
        seeds=args.seeds,
        ns=NS,
        batch_size=32,
        max_batch=2048,
        class_table=load_class_table("imagenet"),
        model_key="efficientnet_lite0|",
    )
    stages = [
        ("importance", lambda: print_importance(exp, exp.importance())),
        ("layer row", exp.write_layer_row),
        ("top-N", lambda: print_top_n(exp, exp.top_n())),
        ("curves", lambda: print_curves(exp, exp.curves())),
        ("selectivity", lambda: print_selectivity(exp.selectivity())),
        ("steering", lambda: print_steering(steering_stage(exp, n=5, quantile=0.99))),
    ]
    if args.attack_images > 0:
        stages.append(
            (
                "attacks",
                lambda: print_attacks(attack_stage(exp, images=args.attack_images, n=args.attack_units, batch_size=16)),
            )
        )
    for name, stage in stages:
        t = time.perf_counter()
        stage()
        print(f"[{name}: {time.perf_counter() - t:.0f} s]", flush=True)
    from unitscope.report import write_report

    write_report(exp.out, title="Ablation of EfficientNet-Lite0 on the photo world")
    print(f"report: {exp.out / 'index.html'}; total {time.perf_counter() - t0:.0f} s")
    per_class_table(args.out, exp.layer, data.class_names)


if __name__ == "__main__":
    main()
