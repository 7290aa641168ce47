"""``unitscope edit``: remove the units whose descriptions match a text query; measure and save the edit.

    unitscope edit --model world_scenes_cue --out runs/cue-edit --query sign   # world, dissect, describe, edit
    unitscope edit --model world_scenes_cue --out runs/cue-edit --run runs/cue  # reuse a described run
    unitscope classify --model runs/cue-edit/edit.json ...                      # the edited model

The experiment of docs/audit.md: a probe world with signs (``--cue-share`` of its images) is dissected
(``--keep-cache``) and described, the units matching ``--query`` are ordered by single-unit validation
accuracy on cue-conflicting images and removed, and the test accuracy is compared with removing as many
random units (``--draws``) and as many most important units. Rows go to the run's catalog
(``edit_units``, ``edit_results``); the edit to ``OUT/edit.json``, loadable as a model.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from unitscope.config import ModelOptions, add_config_args, config_from_args, help_


@dataclass
class EditConfig(ModelOptions):
    model: str = field(default="world_scenes_cue", metadata=help_("model to edit (its classes: the world's scenes)"))
    out: str = field(default="runs/cue-edit", metadata=help_("run folder: dissection, descriptions, tables, edit.json"))
    query: str = field(default="sign", metadata=help_("text the removed units' descriptions must match"))
    run: Optional[str] = field(
        default=None, metadata=help_("an already dissected and described run of the model (default: make one in OUT)")
    )
    layers: list[str] = field(default_factory=list, metadata=help_("layers to dissect (default: the model's own)"))
    images: int = field(default=2000, metadata=help_("probe images to dissect and describe"))
    cue_share: float = field(default=0.5, metadata=help_("share of the probe images that carry a sign"))
    val_images: int = field(default=1000, metadata=help_("validation images per set (world seed 4)"))
    test_images: int = field(default=2000, metadata=help_("test images per set (world seed 3)"))
    min_match: float = field(default=0.5, metadata=help_("least search match of a unit's description"))
    tolerance: float = field(default=0.02, metadata=help_("most clean validation accuracy the edit may cost"))
    draws: int = field(default=5, metadata=help_("random-unit draws of the control"))
    seed: int = field(default=0, metadata=help_("seed of the random draws"))
    cache: Optional[str] = field(
        default=None, metadata=help_("where rendered worlds are kept (default: $UNITSCOPE_CACHE or ~/.cache/unitscope)")
    )
    progress: bool = field(default=True, metadata=help_("show progress"))


def _prepare_run(cfg: EditConfig, cache: Path) -> Path:
    """Dissect and describe the model on a probe world with signs, unless that is done already."""
    from unitscope.commands.dissect import DissectConfig, run_dissection
    from unitscope.describe.run import Options, describe_run
    from unitscope.describe.tables import has_descriptions
    from unitscope.world import make_world
    from unitscope.world.cue import CueSpec

    out = Path(cfg.out)
    if has_descriptions(out):
        return out
    spec = CueSpec(cfg.cue_share, 1.0)
    world = cache / f"probe-world-n{cfg.images}-s64-seed0-{spec.key()}"
    print(f"probe world with signs: {world}")
    make_world(world, n=cfg.images, size=64, seed=0, progress=cfg.progress, cue=spec)
    dcfg = DissectConfig(
        model=cfg.model,
        data=str(world),
        out=str(out),
        layers=cfg.layers,
        batch_size=100,
        progress=cfg.progress,
        keep_cache=True,
        checkpoint=cfg.checkpoint,
        pretrained=cfg.pretrained,
        report=False,
    )
    run_dissection(dcfg)
    describe_run(out, opts=Options(progress=cfg.progress))
    return out


def require_scene_classifier(name: str, model, needs: str) -> None:
    """A UsageError unless ``model`` (called ``name``) classifies the probe world's scenes; ``needs``
    ends the message (what the experiment needs, with an example model)."""
    from unitscope.errors import UsageError
    from unitscope.models import get_info
    from unitscope.world.vocab import SCENES

    if list(get_info(model).class_names) != list(SCENES):
        raise UsageError(f"{name} does not classify the probe world's scenes ({', '.join(SCENES)}); {needs}")


def require_classifier(name: str, model, needs: str) -> None:
    """A UsageError unless ``model`` (called ``name``) takes images and answers with class scores
    (not a generator, not a segmenter): ``needs`` ends the message."""
    from unitscope.errors import UsageError
    from unitscope.models import get_info

    info = get_info(model)
    if info.kind != "image" or len(info.output_size) > 1:
        raise UsageError(f"{name} is no image classifier (its input is {info.kind!r}); {needs}")


def run_edit(args: argparse.Namespace) -> int:
    from unitscope.audit.edit import cue_sets, edit_experiment, write_tables
    from unitscope.commands.dissect import cache_dir
    from unitscope.describe.tables import has_descriptions
    from unitscope.errors import UsageError

    cfg = config_from_args(EditConfig, args)
    if not 0.0 < cfg.cue_share <= 1.0:
        raise UsageError(f"--cue-share must lie in (0, 1], got {cfg.cue_share}")
    if min(cfg.val_images, cfg.test_images, cfg.images) < 8:
        raise UsageError("--images, --val-images and --test-images must be at least 8")
    start = time.perf_counter()
    cache = cache_dir(cfg.cache)
    model = cfg.create_model()
    require_scene_classifier(cfg.model, model, "the edit experiment needs such a model, e.g. world_scenes_cue")
    from unitscope.models import get_info

    info = get_info(model)
    run = Path(cfg.run) if cfg.run else _prepare_run(cfg, cache)
    if cfg.run and not has_descriptions(run):
        raise UsageError(f"{run} has no descriptions: run `unitscope describe {run}` first")
    size = info.input_size[-1]
    val = cue_sets(cache / "organisms", seed=4, n=cfg.val_images, size=size, progress=cfg.progress)
    test = cue_sets(cache / "organisms", seed=3, n=cfg.test_images, size=size, progress=cfg.progress)
    out = edit_experiment(
        model,
        run,
        cfg.query,
        val,
        test,
        layers=cfg.layers or None,
        min_match=cfg.min_match,
        tolerance=cfg.tolerance,
        draws=cfg.draws,
        seed=cfg.seed,
        model_name=cfg.model,
        checkpoint=cfg.checkpoint,
    )
    write_tables(run, out)
    path = out["edit"].save(Path(cfg.out) / "edit.json")
    (Path(cfg.out) / "edit-curve.json").write_text(json.dumps(out["curve"], indent=1) + "\n")
    print(f"{'':12s} {'units':>5s} {'clean':>6s} {'agree':>6s} {'conflict':>8s}")
    for r in out["results"]:
        label = r["kind"] + (f" {r['draw']}" if r["kind"] == "random" else "")
        print(f"{label:12s} {r['units']:5d} {r['clean']:6.3f} {r['agree']:6.3f} {r['conflict']:8.3f}")
    try:
        from unitscope.report import write_report

        write_report(run, title=f"Network Dissection of {cfg.model}")
    except Exception as err:  # the tables are written; a report problem must not hide them
        print(f"(report not written: {err})")
    print(
        f"{path}: the edit ({sum(len(e['units']) for e in out['edit'].layers)} units); load it as a model "
        f"(--model {path}); {time.perf_counter() - start:.0f} s"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edit",
        help="remove the units whose descriptions match a query; measure and save the edit",
        description="MILAN's editing experiment: find units by their descriptions, order them by "
        "single-unit validation accuracy on cue-conflicting images, remove them, and "
        "compare with as many random and as many most important units (docs/audit.md).",
    )
    add_config_args(p, EditConfig)
    p.set_defaults(func=run_edit)
