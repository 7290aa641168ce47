"""``unitscope dissect`` (Network Dissection of chosen layers) and ``unitscope demo``.

unitscope dissect --model efficientnet_lite0 --data probe-world --out runs/lite0
torchrun --standalone --nproc_per_node 2 -m unitscope dissect ...   # the same run, two processes
unitscope dissect --model world_generator --segmenter world_segmenter --samples 10000 --quantile 0.01 --out runs/gan
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from unitscope.config import ModelOptions, add_config_args, config_from_args, config_to_dict, help_, same_as
from unitscope.dissect.options import FIELDS as OPTION_FIELDS
from unitscope.dissect.options import Options
from unitscope.errors import UsageError
from unitscope.runs import CATALOG

#: the config fields named otherwise in Options
OPTION = {"iou": "iou_threshold", "workers": "num_workers"}


@dataclass
class DissectConfig(ModelOptions):
    model: str = field(metadata=help_("model name (see `unitscope models`)"))
    out: str = field(metadata=help_("run folder for the results"))
    data: str | None = field(
        default=None, metadata=help_("a Broden-format folder (`unitscope world make` writes one); not for a generator")
    )
    segmenter: str | None = field(
        default=None,
        metadata=help_(
            "a generator is dissected against what this segmenter finds in its samples (a name, e.g. "
            "world_segmenter, or path/to/file.py:factory)"
        ),
    )
    samples: int = field(default=10_000, metadata=help_("a generator's samples (z drawn from --sample-seed)"))
    sample_seed: int = field(default=0, metadata=help_("seed of a generator's latent vectors"))
    layers: list[str] = field(
        default_factory=list,
        metadata=help_(
            "comma-separated layer names (see `unitscope layers MODEL --spatial`); default: the model's own choice"
        ),
    )
    # the dissection's settings: defaults and help from unitscope.dissect.Options (OPTION names the two renamed)
    quantile: float = same_as(Options, "quantile")
    iou: float = same_as(Options, "iou_threshold")
    topk: int = same_as(Options, "topk")
    rotations: int = same_as(Options, "rotations")
    seed: int = same_as(Options, "seed")
    basis: list[str] = same_as(Options, "basis")
    null_draws: int = same_as(Options, "null_draws")
    denominator: str = same_as(Options, "denominator")
    values: str = same_as(Options, "values")
    categories: list[str] = field(
        default_factory=list, metadata=help_("concept categories to use; default: all in the data")
    )
    limit: int | None = same_as(Options, "limit")
    batch_size: int = same_as(Options, "batch_size")
    # the one default that differs: a command loads with worker processes, a Python call in its own
    workers: str = same_as(Options, "num_workers", default="auto")
    device: str = same_as(Options, "device")
    precision: str = same_as(Options, "precision")
    memory_format: str = same_as(Options, "memory_format")
    checkpoint_every: int = same_as(Options, "checkpoint_every")
    cache_gb: float = same_as(Options, "cache_gb")
    report: bool = field(default=True, metadata=help_("write index.html and report.json"))
    fresh: bool = same_as(Options, "fresh")
    keep_cache: bool = same_as(Options, "keep_cache")
    skip_bad_images: bool = same_as(Options, "skip_bad_images")
    progress: bool = same_as(Options, "progress")
    dist_timeout: float = field(
        default=600.0,
        metadata=help_("under torchrun: seconds a process waits for the others at a merge before the run fails"),
    )


def dissect_options(cfg: DissectConfig, device: str, **changes) -> Options:
    """The config's dissection settings as :class:`~unitscope.dissect.Options`, by field name."""
    given = {OPTION.get(k, k): getattr(cfg, k) for k in vars(cfg)}
    given.update(device=device, **changes)
    return Options(**{k: v for k, v in given.items() if k in OPTION_FIELDS})


def run_dissection(cfg: DissectConfig):
    """Everything `unitscope dissect` does; returns the :class:`~unitscope.dissect.DissectResult`.
    Under torchrun every rank dissects a shard; rank 0 writes the run folder and the report."""
    from unitscope.dissect.distributed import end_process_group, peers_checked, start_process_group

    device, started = start_process_group(cfg.device, cfg.dist_timeout)
    try:
        with peers_checked():
            return _run_dissection(cfg, device)
    finally:
        if started:
            end_process_group()


def _run_dissection(cfg: DissectConfig, device: str):
    import torch

    from unitscope.data import BrodenDataset
    from unitscope.dissect import dissect
    from unitscope.dissect.distributed import is_main
    from unitscope.models import get_info

    out = Path(cfg.out)
    model = cfg.create_model()
    info = get_info(model)
    layers = cfg.layers or info.default_layers
    if not layers:
        raise ValueError(
            f"{cfg.model} names no default layers; pass --layers (see `unitscope layers {cfg.model} --spatial`)"
        )
    if (info.kind == "generator") != (cfg.segmenter is not None) or (cfg.segmenter is None) == (cfg.data is None):
        raise UsageError(
            f"{cfg.model} is a{' generator' if info.kind == 'generator' else 'n image model'}: a generator "
            "is dissected against a segmenter (--segmenter NAME, no --data), an image model against "
            "labelled images (--data FOLDER)"
        )
    if info.kind == "generator":
        return _dissect_generator(cfg, model, layers, device, out)
    data = BrodenDataset(cfg.data, categories=cfg.categories or None, transform=info.transform())
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    key = {
        k: v
        for k, v in config_to_dict(cfg).items()
        if k in ("model", "checkpoint", "pretrained", "data", "categories", "limit")
    }
    key["data"] = str(Path(cfg.data).resolve())
    result = dissect(model, data, layers, out, dissect_options(cfg, device), key=key, config=config_to_dict(cfg))
    if not is_main():
        return result
    if cfg.report:
        from unitscope.report import write_report

        write_report(out, title=f"Network Dissection of {info.name}")
    return result


def _dissect_generator(cfg: DissectConfig, model, layers: list[str], device: str, out: Path):
    """A generator's samples (z from ``--sample-seed``) against a segmenter's labels of them."""
    from unitscope.dissect import dissect_sources
    from unitscope.dissect.distributed import is_main
    from unitscope.gan import GeneratorActivations, SegmenterLabels
    from unitscope.models import get_info
    from unitscope.segment import create_segmenter

    model = model.to(device)
    acts = GeneratorActivations(
        model,
        layers,
        n=cfg.samples,
        seed=cfg.sample_seed,
        device=device,
        key={"segmenter": cfg.segmenter, "checkpoint": cfg.checkpoint},
    )
    labels = SegmenterLabels(create_segmenter(cfg.segmenter, device=device))
    # exemplar strips of generated samples, the unit's region outlined (drawn through GeneratorActivations.picture)
    opts = dissect_options(cfg, device)
    result = dissect_sources(acts, labels, out, opts, config=config_to_dict(cfg))
    if is_main() and cfg.report:
        from unitscope.report import write_report

        write_report(out, title=f"Generator dissection of {get_info(model).name}")
    return result


def _print_summary(result, out: Path, report: bool) -> None:
    if result.bad_images:
        print(f"skipped {len(result.bad_images)} unreadable images (listed in {out / 'bad_images.json'}):")
        for message in result.bad_images:
            print(f"  {message}")
    for layer, d in result.layers.items():
        print(d.summary())
        rot = result.rotations.get(layer, [])
        if len(rot) > 1:
            others = ", ".join(f"{det} detectors/{uc} concepts" for det, uc in rot[1:])
            print(f"  random rotations: {others} (axis-aligned: {rot[0][0]}/{rot[0][1]})")
    if report:
        print(f"report: {(out / 'index.html').resolve()}")
    print(f"catalog: {(out / 'catalog.sqlite').resolve()}")


def run_dissect(args: argparse.Namespace) -> int:
    cfg = config_from_args(DissectConfig, args)
    result = run_dissection(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_summary(result, Path(cfg.out), cfg.report)
        if cfg.basis:
            _print_bases(Path(cfg.out))
    return 0


def _print_bases(out: Path) -> None:
    """Each layer's bases side by side (``unitscope.bases.tables``), as the report shows them."""
    from unitscope.bases.tables import TABLE, markdown, side_by_side
    from unitscope.catalog import Catalog

    with Catalog(out / CATALOG) as cat:
        for r in cat.query(f"SELECT DISTINCT model, layer FROM {TABLE}"):
            print(f"bases of {r['layer']}:")
            print(markdown(side_by_side(cat, r["model"], r["layer"])))


@dataclass
class DemoConfig:
    images: int = field(default=1000, metadata=help_("probe-world images to dissect"))
    out: str = field(default="runs/demo", metadata=help_("run folder for the results"))
    cache: str | None = field(
        default=None,
        metadata=help_("where the probe world is kept between runs (default: $UNITSCOPE_CACHE or ~/.cache/unitscope)"),
    )
    progress: bool = field(default=True, metadata=help_("show progress bars"))
    style: str = field(
        default="auto",
        metadata=help_(
            "probe world: auto (photo when its Debian packages are installed, else cartoon), photo, mixed or cartoon"
        ),
    )
    organism_images: int = field(
        default=2000,
        metadata=help_(
            "64-px probe-world images (seed 0, unseen in training) for the world_scenes dissection; 0 skips it"
        ),
    )
    generator_samples: int = field(
        default=200,
        metadata=help_(
            "world_generator samples for the generator dissection, removal, ACE, insertion and artifact units; 0 skips it"
        ),
    )
    wide_generator_samples: int = field(
        default=1000,
        metadata=help_(
            "world_generator_wide samples for its relu2 dissection and the tree-removal finding "
            "(300 more samples for the removal); 0 skips it"
        ),
    )


def cache_dir(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("UNITSCOPE_CACHE") or Path.home() / ".cache" / "unitscope")


def demo_style(style: str) -> str:
    """``auto``: the photo world when its photographs are installed, else (saying so) the cartoon world."""
    if style != "auto":
        return style
    from unitscope.world.sources import MissingSources, find_sources

    try:
        find_sources()
        return "photo"
    except MissingSources as exc:
        print(f"photo world unavailable ({exc}); using the cartoon world")
        return "cartoon"


def run_demo(args: argparse.Namespace) -> int:
    from unitscope.world import make_world

    cfg = config_from_args(DemoConfig, args)
    start = time.perf_counter()
    style = demo_style(cfg.style)
    name = "probe-world" if style == "cartoon" else f"{style}-world"
    world = cache_dir(cfg.cache) / f"{name}-n{cfg.images}-s224-seed0"
    print(f"{style} world: {world} ({cfg.images} images, built once and reused)")
    make_world(world, n=cfg.images, size=224, seed=0, progress=cfg.progress, style=style)
    print(f"  ready after {time.perf_counter() - start:.0f} s")
    # p-values on (DissectConfig's --null-draws 8): the null is drawn in pass 3 for the units above
    # the IoU cut-off only, a few percent of the dissection's time (benchmarks/README.md)
    dcfg = DissectConfig(model="efficientnet_lite0", data=str(world), out=cfg.out, progress=cfg.progress)
    result = run_dissection(dcfg)
    _print_summary(result, Path(cfg.out), True)
    if cfg.organism_images > 0:
        _demo_organism(cfg)
    if cfg.generator_samples > 0:  # generator dissection and its causal effects (unitscope.commands.gan)
        from unitscope.commands.gan import run_gan_demo

        run_gan_demo(Path(cfg.out) / "world_generator", samples=cfg.generator_samples, progress=cfg.progress)
    if cfg.wide_generator_samples > 0:  # the removal finding, on the wide sparse decoder (docs/gan.md)
        from unitscope.commands.gan import run_wide_removal_demo

        run_wide_removal_demo(
            Path(cfg.out) / "world_generator_wide", samples=cfg.wide_generator_samples, progress=cfg.progress
        )
    print(f"demo finished in {time.perf_counter() - start:.0f} s; open the report above in a browser")
    return 0


def _demo_organism(cfg: DemoConfig) -> None:
    """Dissect the last conv layer of world_scenes (trained on the probe world) and three random
    rotations of it: trained units align with concepts far more than random directions do (one
    rotation alone is a noisy yardstick: its count moves by a third between seeds); then describe
    its units in English (`unitscope describe`) and write the report again with them."""
    from unitscope.world import make_world

    world = cache_dir(cfg.cache) / f"probe-world-n{cfg.organism_images}-s64-seed0"
    print(f"world_scenes: probe world {world} ({cfg.organism_images} images of 64 px)")
    make_world(world, n=cfg.organism_images, size=64, seed=0, progress=cfg.progress)
    dcfg = DissectConfig(
        model="world_scenes",
        data=str(world),
        out=str(Path(cfg.out) / "world_scenes"),
        layers=["features.relu5"],
        rotations=3,
        batch_size=100,
        progress=cfg.progress,
        keep_cache=True,
    )  # the maps, for the descriptions
    result = run_dissection(dcfg)
    _print_summary(result, Path(dcfg.out), True)
    from unitscope.describe.run import Options, describe_run
    from unitscope.report import write_report

    describe_run(dcfg.out, opts=Options(progress=cfg.progress))  # plain-English descriptions, scored
    write_report(Path(dcfg.out), title="Network Dissection of world_scenes")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dissect",
        help="Network Dissection: label every unit of chosen layers with a concept",
        description="Network Dissection (Bau et al. 2017): per unit, the concept whose pixels "
        "best match where the unit fires. Rerun the same command to resume.",
    )
    add_config_args(p, DissectConfig)
    p.set_defaults(func=run_dissect)
    p = sub.add_parser(
        "demo",
        help="dissect the built-in default model on a probe world and write a report",
        description="Build a probe world (cached), dissect EfficientNet-Lite0 at an early, a "
        "middle and the last stage, and write the report; then dissect the last "
        "conv layer of world_scenes and three random rotations of it; then world_generator's "
        "units (removal, ACE, insertion, artifacts) and the tree removal on world_generator_wide.",
    )
    add_config_args(p, DemoConfig)
    p.set_defaults(func=run_demo)
