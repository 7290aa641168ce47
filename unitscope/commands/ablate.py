"""``unitscope ablate``: what the network does with a layer's units (ablation experiments).

unitscope ablate eval --model M --layer L --data D --out RUN --units 3,7 --mode zero
unitscope ablate importance|curves|selectivity|steer|attack --model M --layer L --data D --out RUN
unitscope ablate all --model M --layer L --data D --out RUN [--twin M2]   # everything + report
unitscope ablate critical --model M --layer L --data D --out DISSECT_RUN --bases units,ica,sae --ns 5,10,20
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from unitscope.config import ModelOptions, add_config_args, config_from_args, help_, write_config
from unitscope.runs import CONFIG


@dataclass
class AblateConfig(ModelOptions):
    model: str = field(metadata=help_("model name (see `unitscope models`)"))
    layer: str = field(
        metadata=help_(
            "layer whose units to ablate; pick the one after the nonlinearity (see `unitscope layers MODEL`)"
        )
    )
    data: str = field(
        metadata=help_(
            "labelled images: a Broden-format folder (scene per image) or an image folder with one sub-folder per class"
        )
    )
    out: str = field(metadata=help_("run folder for the results (catalog.sqlite, report)"))
    class_map: str | None = field(
        default=None,
        metadata=help_(
            "how model outputs stand for the data's classes: by name (default), `imagenet` (photo-world classes "
            "-> ImageNet indices, photo_sources/imagenet_classes.txt) or a table file of `class 3,7-9` lines"
        ),
    )
    mode: str = field(
        default="zero",
        metadata=help_("how a unit is removed: zero, mean or noise (Gaussian with the unit's own mean and std)"),
    )
    units: list[int] = field(default_factory=list, metadata=help_("units to remove (ablate eval)"))
    seeds: int = field(default=5, metadata=help_("random unit orders per ablation curve"))
    ns: list[int] = field(
        default_factory=lambda: [1, 2, 3, 4, 5, 10, 20, 50, 100, 200, 500],
        metadata=help_("top-N sizes removed per class on the val split"),
    )
    steer_units: int = field(default=5, metadata=help_("key units per class for steering and the unit attack"))
    steer_quantile: float = field(default=0.99, metadata=help_("quantile the target's key units are driven to"))
    attack_images: int = field(default=64, metadata=help_("correctly classified val images to attack"))
    attack_steps: int = field(default=10, metadata=help_("PGD steps"))
    epsilons: list[float] = field(default_factory=lambda: [4.0, 8.0], metadata=help_("L-inf budgets in 1/255 units"))
    twin: str | None = field(
        default=None,
        metadata=help_(
            "a second model (e.g. the memorising twin) whose ablation curves and selectivity to compare (ablate all)"
        ),
    )
    bases: list[str] = field(
        default_factory=lambda: ["units"],
        metadata=help_("ablate critical: bases of the layer saved in --out by `dissect --basis` (and units)"),
    )
    split: str = field(
        default="",
        metadata=help_("ablate critical: train and val positions as START:END,START:END (default: the data's split)"),
    )
    limit: int | None = field(default=None, metadata=help_("use only the first N images of each split"))
    batch_size: int = field(default=64, metadata=help_("images per head pass"))
    max_batch: int = field(default=512, metadata=help_("images x edits per tail pass"))
    device: str = field(default="cpu", metadata=help_("torch device, e.g. cpu or cuda"))
    report: bool = field(default=True, metadata=help_("write index.html and report.json (ablate all)"))
    progress: bool = field(default=True, metadata=help_("show progress bars"))


def experiment(cfg: AblateConfig, model_name: str | None = None):
    import torch

    from unitscope.ablate.experiment import Experiment
    from unitscope.ablate.split import LabelledData, load_class_table
    from unitscope.models import get_info

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    name = model_name or cfg.model
    model = cfg.create_model(name) if model_name is None else ModelOptions().create_model(name)
    data = LabelledData(cfg.data, transform=get_info(model).transform())
    exp = Experiment(
        model,
        cfg.layer,
        data,
        cfg.out,
        mode=cfg.mode,
        seeds=cfg.seeds,
        ns=cfg.ns,
        batch_size=cfg.batch_size,
        max_batch=cfg.max_batch,
        limit=cfg.limit,
        device=cfg.device,
        progress=cfg.progress,
        model_key=f"{name}|{cfg.checkpoint if model_name is None else ''}",
        class_table=load_class_table(cfg.class_map),
    )
    if not exp.cut.exact_tail:
        print(f"note: {exp.cut.reason}")
    write_config(cfg, exp.folder / CONFIG)
    return exp


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def print_importance(exp, imp) -> None:
    import torch

    drop = torch.tensor(imp["drop"])
    ranking = exp.ranking()
    names = exp.data.class_names
    print(
        f"{exp.name} {exp.layer}: {exp.units} units, {imp['images']} train images, accuracy {_pct(imp['base_accuracy'])}"
    )
    for y, name in enumerate(names):
        top = ranking[y, :3].tolist()
        print(f"  {name:14s} key units " + ", ".join(f"#{u} ({_pct(float(drop[u, y])).strip()})" for u in top))


def print_top_n(exp, rows) -> None:
    print(f"top-N units of each class removed on val ({len(exp.val_pos)} images): mean over classes")
    print(f"  {'N':>4} {'class acc':>10} {'others':>8} {'random N: class':>16} {'keep only N':>12}")
    by = {}
    for r in rows:
        by.setdefault((r["kind"], r["n"]), []).append(r)
    base = by[("none", 0)]
    print(
        f"  {0:>4} {_pct(sum(r['class_accuracy'] for r in base) / len(base)):>10} "
        f"{_pct(sum(r['other_accuracy'] for r in base) / len(base)):>8}"
    )
    for n in sorted({n for kind, n in by if kind == "remove"}):
        rem, rnd, keep = by[("remove", n)], by[("random", n)], by[("keep", n)]
        mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)
        print(
            f"  {n:>4} {_pct(mean(rem, 'class_accuracy')):>10} {_pct(mean(rem, 'other_accuracy')):>8} "
            f"{_pct(mean(rnd, 'class_accuracy')):>16} {_pct(mean(keep, 'class_accuracy')):>12}"
        )


def print_curves(exp, curves) -> None:
    import numpy as np

    for mode in ("zero", "noise"):
        if mode in curves:
            area = np.asarray(curves["area"][mode])
            acc = np.asarray(curves[mode])
            print(
                f"  {exp.name} {mode:5s} ablation curve area {area.mean():.3f} ± {area.std():.3f} "
                f"({len(area)} seeds); accuracy at 0/50/100%: {acc[:, 0].mean():.3f} / "
                f"{acc[:, len(acc[0]) // 2].mean():.3f} / {acc[:, -1].mean():.3f}"
            )


def print_selectivity(sel) -> None:
    c, t = sel["correlation_overall"], sel["correlation_top_class"]
    note = " (the layer has negative values: SI is meant for post-ReLU maps)" if sel["negative"] else ""
    print(
        f"  class selectivity: mean {sum(sel['si']) / len(sel['si']):.3f}{note}; vs overall accuracy drop "
        f"r={c['pearson']:.3f} rho={c['spearman']:.3f}; vs the top class's drop r={t['pearson']:.3f} rho={t['spearman']:.3f}"
    )


def print_steering(st) -> None:
    print(
        f"  steering ({st['n']} units per class, target units to q{st['quantile']}): A->B flip rate "
        f"{_pct(st['flip_rate'])} over {len(st['rows'])} pairs (without the edit {_pct(st['base_rate'])})"
    )


def print_attacks(at) -> None:
    for r in at["rows"]:
        print(
            f"  {r['method']:6s} PGD eps {r['epsilon'] * 255:.0f}/255: success {_pct(r['success_rate'])} of "
            f"{r['images']} images; max L-inf {r['max_linf'] * 255:.2f}/255; key units shift source "
            f"{r['source_shift']:+.3f} target {r['target_shift']:+.3f}; moved most: {r['moved_units']}"
        )


def run_stage(args: argparse.Namespace) -> int:
    cfg = config_from_args(AblateConfig, args)
    exp = experiment(cfg)
    stage = args.stage
    if stage == "eval":
        r = exp.evaluate(cfg.units)
        print(f"{exp.name} {exp.layer}: units {cfg.units} removed ({r['mode']}), {r['images']} val images")
        print(f"  accuracy {_pct(r['accuracy'][0])} -> {_pct(r['accuracy'][1])}")
        for name in exp.data.class_names:
            a, b = r["class_accuracy"][name], r["balanced"][name]
            print(f"  {name:14s} accuracy {_pct(a[0])} -> {_pct(a[1])}   balanced {_pct(b[0])} -> {_pct(b[1])}")
    if stage in ("importance", "all"):
        print_importance(exp, exp.importance())
        exp.write_layer_row()
        print_top_n(exp, exp.top_n())
    if stage in ("curves", "all"):
        print_curves(exp, exp.curves())
    if stage in ("selectivity", "all"):
        print_selectivity(exp.selectivity())
    if stage in ("steer", "all"):
        from unitscope.ablate.steer import steering_stage

        print_steering(steering_stage(exp, n=cfg.steer_units, quantile=cfg.steer_quantile))
    if stage in ("attack", "all"):
        from unitscope.ablate.attack import attack_stage

        print_attacks(
            attack_stage(
                exp,
                epsilons=[e / 255 for e in cfg.epsilons],
                images=cfg.attack_images,
                steps=cfg.attack_steps,
                n=cfg.steer_units,
            )
        )
    if stage == "critical":
        from unitscope.bases.critical import critical_stage, print_critical

        print_critical(critical_stage(exp, cfg.bases, cfg.ns, cfg.split, cfg.seeds))
    if stage == "all" and cfg.twin:
        twin = experiment(cfg, cfg.twin)
        twin.write_layer_row()
        print_curves(twin, twin.curves())
        print_selectivity(twin.selectivity())
    if stage in ("all", "critical") and cfg.report:
        from unitscope.report import write_report

        write_report(exp.out, title=f"Ablation of {exp.name}")
        print(f"report: {(exp.out / 'index.html').resolve()}")
    print(f"catalog: {(exp.out / 'catalog.sqlite').resolve()}")
    return 0


_STAGES = {
    "eval": "remove --units and report accuracy, per-class and balanced accuracy (val split)",
    "importance": "ablate every unit alone on train, rank units per class; top-N removal on val",
    "curves": "cumulative ablation curves (random unit fractions, zero and noise, several seeds)",
    "selectivity": "class selectivity index per unit and its correlation with importance",
    "steer": "turn class A's key units off and B's up; how often A flips to B",
    "attack": "PGD through key units vs targeted PGD on the logits (L-inf budgets)",
    "all": "every stage above (resumable), the twin's curves if --twin, and the report",
    "critical": "class-critical directions of --bases (saved in --out by dissect --basis) against units: "
    "each class's top --ns removed on val, against as many random (--seeds draws); catalog rows and the report",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablate",
        help="causal role of units: ablation, importance, curves, steering, attacks",
        description="Ablation experiments on one layer (Bau et al. PNAS 2020; Morcos et al. 2018). "
        "Units are ranked on the train split and tested on val. Rerun to resume.",
    )
    stages = p.add_subparsers(dest="stage", metavar="STAGE")
    stages.required = True
    for stage, text in _STAGES.items():
        s = stages.add_parser(stage, help=text, description=text)
        add_config_args(s, AblateConfig)
        s.set_defaults(func=run_stage, stage=stage)
