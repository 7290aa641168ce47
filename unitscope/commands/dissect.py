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

from unitscope.errors import UsageError
from unitscope.config import ModelOptions, add_config_args, config_from_args, config_to_dict, help_


@dataclass
class DissectConfig(ModelOptions):
    model: str = field(metadata=help_("model name (see `unitscope models`)"))
    out: str = field(metadata=help_("run folder for the results"))
    data: str | None = field(default=None, metadata=help_(
        "a Broden-format folder (`unitscope world make` writes one); not for a generator"))
    segmenter: str | None = field(default=None, metadata=help_(
        "a generator is dissected against what this segmenter finds in its samples (a name, e.g. "
        "world_segmenter, or path/to/file.py:factory)"))
    samples: int = field(default=10_000, metadata=help_("a generator's samples (z drawn from --sample-seed)"))
    sample_seed: int = field(default=0, metadata=help_("seed of a generator's latent vectors"))
    layers: list[str] = field(default_factory=list, metadata=help_(
        "comma-separated layer names (see `unitscope layers MODEL --spatial`); default: the model's own choice"))
    quantile: float = field(default=0.005, metadata=help_("top fraction of activations that forms a unit's mask (paper: 0.005)"))
    iou: float = field(default=0.04, metadata=help_("a unit is a detector when its IoU is above this (IoU > 0.04, as in the paper)"))
    topk: int = field(default=10, metadata=help_("exemplar images per unit"))
    rotations: int = field(default=0, metadata=help_("also dissect this many random rotations of each layer (grandmother-neuron check)"))
    seed: int = field(default=0, metadata=help_("seed of the random rotations and of the significance null"))
    null_draws: int = field(default=8, metadata=help_(
        "draws of the chance null (masks matched to other images) behind the p-value of each unit above --iou; 0 = no p-values"))
    denominator: str = field(default="annotated", metadata=help_(
        "unit area per category over images where it is 'annotated', or only where the mask 'overlap's a "
        "pixel of it (NetDissect-Lite's rule)"))
    values: str = field(default="auto", metadata=help_(
        "values thresholded and ranked: auto (a layer that ends in a bounded activation such as ReLU6 or sigmoid "
        "before it, where its output does not tie at the cap; others as they are), pre (every layer before its "
        "activation module) or post (every layer's output)"))
    categories: list[str] = field(default_factory=list, metadata=help_("concept categories to use; default: all in the data"))
    limit: int | None = field(default=None, metadata=help_("use only the first N images"))
    batch_size: int = field(default=32, metadata=help_("images per batch"))
    workers: str = field(default="auto", metadata=help_(
        "DataLoader worker processes: auto (min(cores - 1, 8), shared among torchrun's ranks on the machine) "
        "or a number (0: load in the main process)"))
    device: str = field(default="cpu", metadata=help_("torch device, e.g. cpu or cuda"))
    precision: str = field(default="float32", metadata=help_(
        "the forward pass in float32, or under autocast in bfloat16 / float16 (statistics stay float32); "
        "compare a mixed-precision run's labels with a float32 run before relying on it"))
    checkpoint_every: int = field(default=20, metadata=help_("batches between checkpoints (a rerun resumes from the last)"))
    cache_gb: float = field(default=4.0, metadata=help_("disk for cached activations (skips a second forward pass)"))
    report: bool = field(default=True, metadata=help_("write index.html and report.json"))
    fresh: bool = field(default=False, metadata=help_("discard earlier results in the run folder and start over"))
    keep_cache: bool = field(default=False, metadata=help_(
        "keep the activation cache in the run folder for other analyses (unitscope.dissect.open_activation_cache)"))
    skip_bad_images: bool = field(default=False, metadata=help_(
        "leave unreadable images out and list them at the end, instead of stopping at the first"))
    progress: bool = field(default=True, metadata=help_("show progress bars"))
    dist_timeout: float = field(default=600.0, metadata=help_(
        "under torchrun: seconds a process waits for the others at a merge before the run fails"))


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
        raise ValueError(f"{cfg.model} names no default layers; pass --layers (see `unitscope layers {cfg.model} --spatial`)")
    if (info.kind == "generator") != (cfg.segmenter is not None) or (cfg.segmenter is None) == (cfg.data is None):
        raise UsageError(f"{cfg.model} is a{' generator' if info.kind == 'generator' else 'n image model'}: a generator "
                         "is dissected against a segmenter (--segmenter NAME, no --data), an image model against "
                         "labelled images (--data FOLDER)")
    if info.kind == "generator":
        return _dissect_generator(cfg, model, layers, device, out)
    data = BrodenDataset(cfg.data, categories=cfg.categories or None, transform=info.transform())
    bases = check_bases(model, layers) if is_main() else {}
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    key = {k: v for k, v in config_to_dict(cfg).items() if k in ("model", "checkpoint", "pretrained", "data", "categories", "limit")}
    key["data"] = str(Path(cfg.data).resolve())
    result = dissect(model, data, layers, out, quantile=cfg.quantile, iou_threshold=cfg.iou, topk=cfg.topk,
                     rotations=cfg.rotations, seed=cfg.seed, batch_size=cfg.batch_size,
                     num_workers=cfg.workers, device=device, cache_gb=cfg.cache_gb,
                     checkpoint_every=cfg.checkpoint_every, limit=cfg.limit,
                     progress=cfg.progress, key=key, skip_bad_images=cfg.skip_bad_images, fresh=cfg.fresh,
                     keep_cache=cfg.keep_cache, null_draws=cfg.null_draws, denominator=cfg.denominator,
                     precision=cfg.precision, values=cfg.values, config=config_to_dict(cfg))
    if not is_main():
        return result
    record_bases(out, info.name, bases)
    if cfg.report:
        from unitscope.report import write_report

        write_report(out, title=f"Network Dissection of {info.name}")
    return result


def _dissect_generator(cfg: DissectConfig, model, layers: list[str], device: str, out: Path):
    """A generator's samples (z from ``--sample-seed``) against a segmenter's labels of them."""
    import torch

    from unitscope.dissect import Options, dissect_sources
    from unitscope.dissect.distributed import is_main
    from unitscope.gan import GeneratorActivations, SegmenterLabels
    from unitscope.models import get_info
    from unitscope.segment import create_segmenter

    model = model.to(device)
    acts = GeneratorActivations(model, layers, n=cfg.samples, seed=cfg.sample_seed, device=device,
                                key={"segmenter": cfg.segmenter, "checkpoint": cfg.checkpoint})
    labels = SegmenterLabels(create_segmenter(cfg.segmenter, device=device))
    # exemplar strips read images through a data set; a generator's are drawn by the report later
    opts = Options(quantile=cfg.quantile, iou_threshold=cfg.iou, topk=cfg.topk, rotations=cfg.rotations, seed=cfg.seed,
                   batch_size=cfg.batch_size, num_workers=cfg.workers, device=torch.device(device),
                   cache_gb=cfg.cache_gb, checkpoint_every=cfg.checkpoint_every, exemplar_images=False,
                   keep_cache=cfg.keep_cache, progress=cfg.progress, null_draws=cfg.null_draws,
                   denominator=cfg.denominator)
    result = dissect_sources(acts, labels, out, opts, fresh=cfg.fresh, config=config_to_dict(cfg))
    if is_main() and cfg.report:
        from unitscope.report import write_report

        write_report(out, title=f"Generator dissection of {get_info(model).name}")
    return result


def check_bases(model, layers: list[str]) -> dict[str, bool]:
    """Whether each layer's units are a privileged basis; one warning line per layer that is not."""
    from unitscope.layers import privileged_layers

    marks = privileged_layers(model)
    bases = {layer: bool(marks.get(layer, False)) for layer in layers}
    for layer, ok in bases.items():
        if not ok:
            print(f"warning: {layer} does not follow an elementwise nonlinearity: its units are not a privileged "
                  f"basis, so a random rotation may align with concepts as well (see `unitscope layers --spatial`)")
    return bases


def record_bases(out: Path, model_name: str, bases: dict[str, bool]) -> None:
    """The bases into the catalog (table ``layer_bases``), where the report notes them by the rotation table."""
    from unitscope.catalog import Catalog

    with Catalog(out / "catalog.sqlite") as cat, cat.transaction():
        for layer, ok in bases.items():
            cat.replace("layer_bases", [{"privileged": ok}], model=model_name, layer=layer)


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
    return 0


@dataclass
class DemoConfig:
    images: int = field(default=1000, metadata=help_("probe-world images to dissect"))
    out: str = field(default="runs/demo", metadata=help_("run folder for the results"))
    cache: str | None = field(default=None, metadata=help_(
        "where the probe world is kept between runs (default: $UNITSCOPE_CACHE or ~/.cache/unitscope)"))
    progress: bool = field(default=True, metadata=help_("show progress bars"))
    style: str = field(default="auto", metadata=help_(
        "probe world: auto (photo when its Debian packages are installed, else cartoon), photo, mixed or cartoon"))
    organism_images: int = field(default=2000, metadata=help_(
        "64-px probe-world images (seed 0, unseen in training) for the world_scenes dissection; 0 skips it"))


def cache_dir(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("UNITSCOPE_CACHE") or Path.home() / ".cache" / "unitscope")


def demo_style(style: str) -> str:
    """``auto``: the photo world when its photographs are installed, else (saying so) the cartoon world."""
    if style != "auto":
        return style
    from unitscope.data._sources import MissingSources, find_sources

    try:
        find_sources()
        return "photo"
    except MissingSources as exc:
        print(f"photo world unavailable ({exc}); using the cartoon world")
        return "cartoon"


def run_demo(args: argparse.Namespace) -> int:
    from unitscope.data import make_world

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
    print(f"demo finished in {time.perf_counter() - start:.0f} s; open the report above in a browser")
    return 0


def _demo_organism(cfg: DemoConfig) -> None:
    """Dissect the last conv layer of world_scenes (trained on the probe world) and three random
    rotations of it: trained units align with concepts far more than random directions do (one
    rotation alone is a noisy yardstick: its count moves by a third between seeds); then describe
    its units in English (`unitscope describe`) and write the report again with them."""
    from unitscope.data import make_world

    world = cache_dir(cfg.cache) / f"probe-world-n{cfg.organism_images}-s64-seed0"
    print(f"world_scenes: probe world {world} ({cfg.organism_images} images of 64 px)")
    make_world(world, n=cfg.organism_images, size=64, seed=0, progress=cfg.progress)
    dcfg = DissectConfig(model="world_scenes", data=str(world), out=str(Path(cfg.out) / "world_scenes"),
                         layers=["features.relu5"], rotations=3, batch_size=100, progress=cfg.progress,
                         keep_cache=True)  # the maps, for the descriptions
    result = run_dissection(dcfg)
    _print_summary(result, Path(dcfg.out), True)
    from unitscope.describe.run import Options, describe_run
    from unitscope.report import write_report

    describe_run(dcfg.out, opts=Options(progress=cfg.progress))  # plain-English descriptions, scored
    write_report(Path(dcfg.out), title="Network Dissection of world_scenes")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dissect", help="Network Dissection: label every unit of chosen layers with a concept",
                       description="Network Dissection (Bau et al. 2017): per unit, the concept whose pixels "
                                   "best match where the unit fires. Rerun the same command to resume.")
    add_config_args(p, DissectConfig)
    p.set_defaults(func=run_dissect)
    p = sub.add_parser("demo", help="dissect the built-in default model on a probe world and write a report",
                       description="Build a probe world (cached), dissect EfficientNet-Lite0 at an early, a "
                                   "middle and the last stage, and write the report; then dissect the last "
                                   "conv layer of world_scenes and three random rotations of it.")
    add_config_args(p, DemoConfig)
    p.set_defaults(func=run_demo)
