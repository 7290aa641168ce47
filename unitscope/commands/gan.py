"""``unitscope gan``: what a generator's units do, on the run folder of its dissection.

    unitscope dissect --model world_generator --segmenter world_segmenter --samples 2000 --quantile 0.01 \\
                      --layers relu2 --out runs/gan
    unitscope gan runs/gan --concept sky --insert window,roof      # removal, ACE, insertion, artifacts, report
    unitscope gan runs/gan --concept sky --stages ace --ace-steps 400   # one stage again with other settings

The model, segmenter and layer default to the dissection's (its ``config.json``). Each stage is
skipped when the catalog holds its rows for the same settings, so rerunning the command resumes
after the last finished stage. ``run_gan_demo`` is the generator step of ``unitscope demo``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from unitscope.config import add_config_args, config_from_args, help_
from unitscope.runs import CATALOG, CONFIG, LAYERS

if TYPE_CHECKING:
    from unitscope.gan.run import Settings


@dataclass
class GanConfig:
    run: str = field(
        metadata=help_("run folder of a generator dissection (unitscope dissect --segmenter ...)", positional=True)
    )
    concept: str = field(metadata=help_("the concept to remove and to find ACE masks for (e.g. sky, tree)"))
    layer: str | None = field(default=None, metadata=help_("layer to edit (default: the dissection's first layer)"))
    insert: list[str] = field(default_factory=list, metadata=help_("concepts to insert in context (e.g. window,roof)"))
    stages: list[str] = field(
        default_factory=lambda: ["removal", "ace", "insertion", "artifacts"], metadata=help_("stages to run")
    )
    model: str | None = field(default=None, metadata=help_("the generator (default: the dissection's --model)"))
    checkpoint: str | None = field(default=None, metadata=help_("its local weights (default: the dissection's)"))
    segmenter: str | None = field(default=None, metadata=help_("the segmenter (default: the dissection's)"))
    samples: int = field(default=1000, metadata=help_("samples of the removal curves (z from --seed)"))
    seed: int = field(default=1, metadata=help_("seed of the samples (the dissection's are seed 0)"))
    ks: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20, 30], metadata=help_("numbers of units removed"))
    random_draws: int = field(default=3, metadata=help_("random unit sets per k (the baseline)"))
    ace_samples: int = field(default=200, metadata=help_("samples the ACE masks are optimised on"))
    ace_steps: int = field(default=200, metadata=help_("optimisation steps per ACE mask"))
    ace_penalty: float = field(default=0.01, metadata=help_("weight of the L2 penalty on the mask's size"))
    insert_samples: int = field(default=100, metadata=help_("samples per insertion (x cells of the layer's map)"))
    artifact_samples: int = field(default=500, metadata=help_("samples scored with every unit removed alone"))
    worst: float = field(
        default=0.1, metadata=help_("fraction of least realistic samples artifact units are ranked on")
    )
    threads: int = field(default=0, metadata=help_("torch threads (0: every core)"))
    report: bool = field(default=True, metadata=help_("write index.html and report.json again"))


def _from_run(cfg: GanConfig) -> tuple[str, str | None, str, str]:
    """(model, checkpoint, segmenter, layer), filled in from the run's config.json."""
    from unitscope.errors import UsageError

    run = Path(cfg.run)
    if not (run / CATALOG).exists() or not (run / LAYERS).exists():
        raise UsageError(
            f"{run} is not a dissection's run folder (no catalog.sqlite / layers.json); dissect the "
            "generator first: unitscope dissect --model G --segmenter S --out RUN"
        )
    saved = json.loads((run / CONFIG).read_text()) if (run / CONFIG).exists() else {}
    layers = list(json.loads((run / LAYERS).read_text()).values())
    model, segmenter = cfg.model or saved.get("model"), cfg.segmenter or saved.get("segmenter")
    if not model or not segmenter:
        raise UsageError(f"{run}/config.json does not name the generator and segmenter; pass --model and --segmenter")
    layer = cfg.layer or layers[0]
    if layer not in layers:
        raise UsageError(f"the run dissected {', '.join(layers)}, not {layer!r}; pick one with --layer")
    return model, cfg.checkpoint or saved.get("checkpoint"), segmenter, layer


def run_gan(args: argparse.Namespace) -> int:
    import torch

    from unitscope.gan.run import Settings, analyse
    from unitscope.models import create_model
    from unitscope.segment import create_segmenter

    cfg = config_from_args(GanConfig, args)
    torch.set_num_threads(cfg.threads or max(1, os.cpu_count() or 1))
    model, checkpoint, segmenter, layer = _from_run(cfg)
    g = create_model(model, checkpoint=checkpoint)
    settings = Settings(
        layer=layer,
        concept=cfg.concept,
        insert=list(cfg.insert),
        stages=list(cfg.stages),
        samples=cfg.samples,
        seed=cfg.seed,
        ks=list(cfg.ks),
        random_draws=cfg.random_draws,
        ace_samples=cfg.ace_samples,
        ace_steps=cfg.ace_steps,
        ace_penalty=cfg.ace_penalty,
        insert_samples=cfg.insert_samples,
        artifact_samples=cfg.artifact_samples,
        worst=cfg.worst,
    )
    analyse(cfg.run, g, create_segmenter(segmenter), settings)
    if cfg.report:
        from unitscope.models import get_info
        from unitscope.report import write_report

        print(f"report: {write_report(Path(cfg.run), title=f'Generator dissection of {get_info(g).name}')}")
    return 0


def _demo_generator(out: str | Path, name: str, samples: int, settings: Settings, title: str, progress: bool) -> Path:
    """Dissect generator organism ``name``'s relu2 on ``samples`` samples (seed 0) against world_segmenter,
    run ``settings``' stages on the run and write its report: the two generator steps of the demo."""
    from unitscope.dissect import Options, dissect_sources
    from unitscope.gan import GeneratorActivations, SegmenterLabels
    from unitscope.gan.run import analyse
    from unitscope.models import create_model
    from unitscope.report import write_report
    from unitscope.segment import create_segmenter

    start, out = time.perf_counter(), Path(out)
    g, seg = create_model(name), create_segmenter("world_segmenter")
    print(f"{name}: dissecting relu2 on {samples} samples against world_segmenter")
    result = dissect_sources(
        GeneratorActivations(g, ["relu2"], n=samples, seed=0),
        SegmenterLabels(seg),
        out,
        Options(quantile=0.01, batch_size=100, exemplar_images=False, progress=progress),
        config={"model": name, "segmenter": "world_segmenter", "samples": samples},
    )
    print(result.layers["relu2"].summary())
    analyse(out, g, seg, settings, log=lambda line: print("  " + line))
    path = write_report(out, title=title)
    print(f"  generator report: {path} ({time.perf_counter() - start:.0f} s)")
    return path


def run_gan_demo(out: str | Path, *, samples: int = 200, progress: bool = False) -> Path:
    """The generator step of ``unitscope demo`` (about 2 CPU minutes): dissect ``world_generator``'s
    relu2 on ``samples`` samples against ``world_segmenter``, then removal, ACE, insertion of
    roofs (the decoder generator's relu2 has roof units, none for windows: docs/gan.md) and artifact units
    on small sample counts, and the report."""
    from unitscope.gan.run import Settings

    settings = Settings(
        layer="relu2",
        concept="sky",
        insert=["roof"],
        samples=100,
        ks=[1, 5, 20],
        random_draws=1,
        ace_samples=25,
        ace_steps=30,
        ace_lr=0.2,
        insert_samples=40,
        artifact_samples=30,
        grid=6,
        batch_size=25,
        max_batch=200,
    )
    return _demo_generator(
        out, "world_generator", samples, settings, "Generator dissection of world_generator", progress
    )


def run_wide_removal_demo(
    out: str | Path, *, samples: int = 1000, removal_samples: int = 300, progress: bool = False
) -> Path:
    """The removal finding of Bau et al. 2020 in ``unitscope demo`` (issue 24 item 3; about a CPU minute):
    dissect ``world_generator_wide``'s relu2 (512 sparse units at 8x8) on ``samples`` samples (seed 0), then
    switch its top 5, 10 and 20 tree units by IoU off over ``removal_samples`` other samples (seed 1) against
    as many random units, and write the report (curves, the table of every object's change, the grid).
    docs/gan.md has the same on 1,000 samples."""
    from unitscope.gan.run import Settings

    settings = Settings(
        layer="relu2",
        concept="tree",
        stages=["removal"],
        samples=removal_samples,
        ks=[5, 10, 20],
        random_draws=1,
        grid=6,
        batch_size=50,
        max_batch=200,
    )
    title = "Generator dissection of world_generator_wide: removing trees"
    return _demo_generator(out, "world_generator_wide", samples, settings, title, progress)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gan",
        help="what a generator's units do: removal, ACE masks, insertion in context, artifact units",
        description="On a generator dissection's run folder: remove a concept's units (against random "
        "ones), optimise average-causal-effect masks and compare their ranking with IoU's, "
        "insert concepts in context, find artifact units; catalog tables and the report. "
        "Rerun to resume.",
    )
    add_config_args(p, GanConfig)
    p.set_defaults(func=run_gan)
