"""``unitscope audit``: audit a model through its unit descriptions (MILAN's auditing and analysis).

    unitscope audit count --model world_scenes_hidden_cabinet --reference world_scenes --concept cabinet \\
        --out runs/audit-cabinet          # dissect + describe both on the plain world; count per layer
    unitscope audit ablate --model world_scenes --layer features.relu5 --out runs/scenes
                                          # cumulative ablation in orders given by the units' descriptions
    unitscope audit ablate --model efficientnet_lite0 --layer bn2 --out runs/lite0 --data photo-world-n1000 \\
        --test-data photo-world-n5000 --test-offset 1000 --test-images 1000   # fidelity on held-out photos

``count`` dissects and describes the audited model (``OUT/model``) and the reference (``OUT/reference``)
on the same probe world (``--data``, default: the plain 64-px world of ``--images`` images, where the
concept shows), unless those runs are already described, and writes per layer the units that detect
and describe ``--concept`` to ``OUT/model``'s catalog (``audit_counts``) and report.
``ablate`` describes ``OUT`` (a run of ``--model``) the same way if needed, then ablates ``--layer``
cumulatively in three orders (``unitscope.audit.analysis``) and in both directions of each of
``--features`` (``unitscope.audit.features``), on held-out images of world seed 3 (or of
``--test-data`` from ``--test-offset``), scoring ``--metric`` accuracy (scene classifiers) or
fidelity (agreement with the unablated top-1: any classifier, e.g. EfficientNet-Lite0 on the photo
world); rows go to ``desc_ablation``/``desc_ablation_units``/``desc_ablation_summary``, the plot to
``OUT/desc-ablation-LAYER.png``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from unitscope.config import ModelOptions, add_config_args, config_from_args, help_


@dataclass
class CountConfig(ModelOptions):
    model: str = field(default="world_scenes_hidden_cabinet", metadata=help_("the audited model"))
    reference: Optional[str] = field(
        default="world_scenes", metadata=help_("the unedited model to count against ('' for none)")
    )
    concept: str = field(default="cabinet", metadata=help_("the concept to count units for"))
    out: str = field(default="runs/audit-cabinet", metadata=help_("folder: OUT/model and OUT/reference runs"))
    data: Optional[str] = field(
        default=None,
        metadata=help_("probe data set to dissect both on (default: the plain world of --images 64-px images, seed 0)"),
    )
    images: int = field(default=2000, metadata=help_("images of the default probe world"))
    layers: list[str] = field(default_factory=list, metadata=help_("layers to dissect (default: the model's own)"))
    cache: Optional[str] = field(
        default=None, metadata=help_("where rendered worlds are kept (default: $UNITSCOPE_CACHE or ~/.cache/unitscope)")
    )
    progress: bool = field(default=True, metadata=help_("show progress"))


@dataclass
class AblateConfig(ModelOptions):
    model: str = field(default="world_scenes", metadata=help_("model whose layer to ablate (the world's scenes)"))
    layer: str = field(default="features.relu5", metadata=help_("layer to ablate"))
    out: str = field(default="runs/desc-ablation", metadata=help_("run folder (dissected and described if not yet)"))
    data: Optional[str] = field(
        default=None,
        metadata=help_("probe data set to describe on (default: the plain world of --images 64-px images, seed 0)"),
    )
    images: int = field(default=2000, metadata=help_("images of the default probe world"))
    test_images: int = field(default=2000, metadata=help_("held-out images to measure accuracy on (world seed 3)"))
    seeds: int = field(default=5, metadata=help_("random orders (and tails of the description orders)"))
    steps: int = field(default=20, metadata=help_("fractions 0, 1/steps, ..., 1"))
    features: list[str] = field(
        default_factory=lambda: ["length", "f1", "lift"],
        metadata=help_("description features whose high-first and low-first orders to add too ('' for none)"),
    )
    metric: str = field(
        default="auto",
        metadata=help_(
            "accuracy (a classifier of the world's scenes), fidelity (top-1 agreement with the unablated "
            "model: any classifier) or auto (accuracy where the model classifies the scenes, else fidelity)"
        ),
    )
    test_data: Optional[str] = field(
        default=None,
        metadata=help_("Broden-format data set to take the held-out images from (default: plain world seed 3)"),
    )
    test_offset: int = field(
        default=0, metadata=help_("first image of --test-data to use (skip the images the run was described on)")
    )
    cache: Optional[str] = field(
        default=None, metadata=help_("where rendered worlds are kept (default: $UNITSCOPE_CACHE or ~/.cache/unitscope)")
    )
    progress: bool = field(default=True, metadata=help_("show progress"))


def probe_world(data: str | None, images: int, cache: Path, progress: bool) -> Path:
    """``data``, or the plain 64-px probe world of ``images`` images (made once in ``cache``)."""
    from unitscope.world import make_world

    if data:
        return Path(data)
    world = cache / f"probe-world-n{images}-s64-seed0"
    make_world(world, n=images, size=64, seed=0, progress=progress)
    return world


def prepare_run(
    model: str,
    out: Path,
    world: Path,
    layers: list[str],
    progress: bool,
    checkpoint: str | None = None,
    pretrained: bool | None = None,
) -> Path:
    """Dissect and describe ``model`` on ``world`` into ``out``, unless that is done already."""
    from unitscope.commands.dissect import DissectConfig, run_dissection
    from unitscope.describe.run import Options, describe_run
    from unitscope.describe.tables import has_descriptions

    if has_descriptions(out):
        return out
    print(f"dissecting and describing {model} on {world} into {out}")
    dcfg = DissectConfig(
        model=model,
        data=str(world),
        out=str(out),
        layers=layers,
        batch_size=100,
        progress=progress,
        keep_cache=True,
        checkpoint=checkpoint,
        pretrained=pretrained,
        report=False,
    )
    run_dissection(dcfg)
    describe_run(out, opts=Options(progress=progress))
    return out


def _report(run: Path, title: str) -> None:
    try:
        from unitscope.report import write_report

        write_report(run, title=title)
    except Exception as err:  # the tables are written; a report problem must not hide them
        print(f"(report not written: {err})")


def run_count(args: argparse.Namespace) -> int:
    from unitscope.audit.count import audit_counts, format_counts, write_counts
    from unitscope.commands.dissect import cache_dir
    from unitscope.errors import UsageError

    cfg = config_from_args(CountConfig, args)
    if cfg.images < 8:
        raise UsageError("--images must be at least 8")
    start = time.perf_counter()
    out = Path(cfg.out)
    world = probe_world(cfg.data, cfg.images, cache_dir(cfg.cache), cfg.progress)
    run = prepare_run(cfg.model, out / "model", world, cfg.layers, cfg.progress, cfg.checkpoint, cfg.pretrained)
    ref = prepare_run(cfg.reference, out / "reference", world, cfg.layers, cfg.progress) if cfg.reference else None
    try:
        rows = audit_counts(run, ref, cfg.concept, cfg.layers or None)
    except ValueError as err:
        raise UsageError(str(err)) from None
    write_counts(run, rows)
    print(
        f"units of {cfg.model} that detect / describe {cfg.concept!r}"
        + (f", against {cfg.reference}" if ref else "")
        + ":"
    )
    print(format_counts(rows))
    _report(run, f"Audit of {cfg.model}: {cfg.concept}")
    print(f"{run / 'catalog.sqlite'}: table audit_counts; {time.perf_counter() - start:.0f} s")
    return 0


def _metric(cfg: AblateConfig, model) -> str:
    """The metric ``--metric`` names (``auto`` resolved), after checking the model can be scored by it."""
    from unitscope.audit.analysis import METRICS
    from unitscope.commands.edit import require_classifier, require_scene_classifier
    from unitscope.errors import UsageError
    from unitscope.models import get_info
    from unitscope.world.vocab import SCENES

    if cfg.metric not in METRICS + ("auto",):
        raise UsageError(f"unknown --metric {cfg.metric!r}; choose accuracy, fidelity or auto")
    metric = cfg.metric
    if metric == "auto":
        metric = "accuracy" if list(get_info(model).class_names) == list(SCENES) and not cfg.test_data else "fidelity"
    if metric == "accuracy":
        require_scene_classifier(
            cfg.model, model, "--metric accuracy needs one, e.g. world_scenes; --metric fidelity takes any classifier"
        )
        if cfg.test_data:
            raise UsageError(
                "--metric accuracy scores the plain world's scenes: leave out --test-data, or use fidelity"
            )
    else:
        require_classifier(cfg.model, model, "--metric fidelity compares the top-1 outputs of a classifier")
    return metric


def held_out_images(cfg: AblateConfig, cache: Path, info):
    """The held-out images: ``--test-images`` of ``--test-data`` from ``--test-offset`` (model's transform),
    or of the plain world seed 3 at the model's input size."""
    import torch

    from unitscope.audit.analysis import EvalSet, plain_set
    from unitscope.errors import UsageError

    if not cfg.test_data:
        return plain_set(
            cache / "organisms", seed=3, n=cfg.test_images, size=info.input_size[-1], progress=cfg.progress
        )
    from unitscope.data import BrodenDataset

    ds = BrodenDataset(cfg.test_data, transform=info.transform(), validate="none")
    if cfg.test_offset < 0 or cfg.test_offset + cfg.test_images > len(ds):
        raise UsageError(
            f"{cfg.test_data} has {len(ds)} images: --test-offset {cfg.test_offset} + --test-images "
            f"{cfg.test_images} does not fit; lower them"
        )
    pick = range(cfg.test_offset, cfg.test_offset + cfg.test_images)
    x = torch.stack([ds.get(i, labels=False)["image"] for i in pick])
    return EvalSet(x, torch.zeros(len(pick), dtype=torch.long))


def run_ablate(args: argparse.Namespace) -> int:
    from unitscope.audit.analysis import description_ablation, plot_curves, write_ablation
    from unitscope.audit.features import FEATURES
    from unitscope.commands.dissect import cache_dir
    from unitscope.errors import UsageError
    from unitscope.models import get_info

    cfg = config_from_args(AblateConfig, args)
    if cfg.seeds < 1 or cfg.steps < 1 or cfg.test_images < 8:
        raise UsageError("--seeds and --steps must be at least 1, --test-images at least 8")
    features = [f for f in cfg.features if f]
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise UsageError(f"unknown description feature {unknown[0]!r}; known: {', '.join(FEATURES)}")
    start = time.perf_counter()
    cache = cache_dir(cfg.cache)
    model = cfg.create_model()
    metric = _metric(cfg, model)
    info = get_info(model)
    out = Path(cfg.out)
    world = probe_world(cfg.data, cfg.images, cache, cfg.progress)
    run = prepare_run(cfg.model, out, world, [cfg.layer], cfg.progress, cfg.checkpoint, cfg.pretrained)
    test = held_out_images(cfg, cache, info)
    try:
        result = description_ablation(
            model,
            run,
            cfg.layer,
            test,
            seeds=cfg.seeds,
            steps=cfg.steps,
            model_name=cfg.model,
            features=features,
            metric=metric,
        )
    except ValueError as err:
        raise UsageError(str(err)) from None
    write_ablation(run, result)
    from unitscope.report.parts.audit_analysis import plot_name

    png = plot_curves(result, run / plot_name(cfg.layer))
    print(f"{metric} at fractions " + " ".join(f"{f:.2f}" for f in result["fractions"]))
    for name, mean in result["mean"].items():
        print(f"{name:12s} " + " ".join(f"{a:.3f}" for a in mean))
    print(f"area under the mean curve ({len(test.x)} images; seeds range, 95% bootstrap; gap to random):")
    for r in result["summary"]:
        print(
            f"{r['ordering']:12s} {r['auc']:.4f} ({r['auc_min']:.4f}-{r['auc_max']:.4f}; "
            f"{r['auc_lo']:.4f}-{r['auc_hi']:.4f})  {r['gap']:+.4f} ({r['gap_lo']:+.4f} to {r['gap_hi']:+.4f})"
        )
    _report(run, f"Network Dissection of {cfg.model}")
    print(f"{png}: the curves; {time.perf_counter() - start:.0f} s")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit",
        help="audit a model through its unit descriptions (count concept units; ablate by description)",
        description="MILAN's auditing and analysis experiments (docs/audit.md).",
    )
    inner = p.add_subparsers(dest="audit_command", required=True)
    c = inner.add_parser(
        "count",
        help="units that still detect or describe a concept, per layer, against a reference",
        description="Dissect and describe the audited model and the reference on one probe world "
        "and count, layer by layer, the units that detect or describe the concept.",
    )
    add_config_args(c, CountConfig)
    c.set_defaults(func=run_count)
    a = inner.add_parser(
        "ablate",
        help="cumulative ablation in orders given by the units' descriptions",
        description="Remove a layer's units cumulatively: compositional descriptions joining "
        "unrelated concepts first, single concepts first, at random, and by description features "
        "(length, F1, lift; highest and lowest first); score accuracy or fidelity.",
    )
    add_config_args(a, AblateConfig)
    a.set_defaults(func=run_ablate)
