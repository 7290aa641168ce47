"""``unitscope describe RUN`` (unit descriptions in plain English, scored) and ``unitscope search RUN TEXT``.

unitscope describe runs/lite0 --layers bn2
unitscope describe --model efficientnet_lite0 --images photos/ --layers bn2 --out runs/photos --no-labels --captioner default
unitscope search runs/lite0 "canine"
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from unitscope.config import add_config_args, config_from_args, help_
from unitscope.describe.defaults import BEAM, DRAWS, EXEMPLARS, LAMBDA, LENGTH, VALIDATE_TOP


@dataclass
class DescribeConfig:
    run: str = field(
        default="",
        metadata=help_(
            "a dissection run folder made with --keep-cache (or, with --model and --images, none)", positional=True
        ),
    )
    model: str = field(
        default="",
        metadata=help_("with --images: the model whose units to describe (a name or path/to/file.py:factory)"),
    )
    images: str = field(
        default="",
        metadata=help_(
            "describe on this image folder, no dissection run needed: the exemplars are computed first (into "
            "--out); class sub-folders (ImageFolder layout) are labels, else only --captioner describes"
        ),
    )
    out: str = field(default="", metadata=help_("with --images: the run folder to write (rerun: reused)"))
    batch_size: int = field(default=32, metadata=help_("with --images: images per forward pass"))
    layers: list[str] = field(
        default_factory=list, metadata=help_("comma-separated layers; default: every dissected layer")
    )
    lam: float = field(
        default=LAMBDA,
        metadata=help_(
            "weight of the prior in log p(d | exemplars) - lam * log p(d) (MILAN's 0.2; 0: maximum likelihood)"
        ),
    )
    beam: int = field(default=BEAM, metadata=help_("beam width of the formula search"))
    length: int = field(default=LENGTH, metadata=help_("concepts per formula at most"))
    exemplars: int = field(default=EXEMPLARS, metadata=help_("top images per unit (MILAN: 15)"))
    draws: int = field(default=DRAWS, metadata=help_("random pairings of held-out images behind each p-value"))
    validate: int = field(
        default=VALIDATE_TOP,
        metadata=help_(
            "choose among this many top-PMI candidates by F1 on validation images (every fifth search image, "
            "set aside; 1: the best PMI, MILAN's rule)"
        ),
    )
    seed: int = field(default=0, metadata=help_("seed of the permutation null"))
    captioner: str = field(
        default="",
        metadata=help_(
            "also caption each unit's exemplars from images and masks alone: 'default' (the shipped exemplar "
            "captioner, trained on the cartoon probe world), 'photo' (the same, trained on the photo world) or "
            "path/to/file.py:factory (factory() returns a callable (images, masks) -> str); rows of kind 'caption'"
        ),
    )
    labels: bool = field(
        default=True,
        metadata=help_(
            "describe from the data set's labels (turn off to caption only, for images without usable labels)"
        ),
    )
    progress: bool = field(default=True, metadata=help_("say what each stage took"))


@dataclass
class SearchConfig:
    run: str = field(
        metadata=help_("a run folder with descriptions (`unitscope describe` wrote them)", positional=True)
    )
    query: str = field(metadata=help_('what to look for, e.g. "faces" or "canine"', positional=True))
    layers: list[str] = field(default_factory=list, metadata=help_("comma-separated layers; default: all"))
    kind: str = field(
        default="pmi",
        metadata=help_(
            "which descriptions: pmi (chosen), ml, fair_label (single label chosen on the search images), "
            "label (the dissection's) or caption (describe --captioner)"
        ),
    )
    limit: int = field(default=20, metadata=help_("units to list (0: all)"))
    json: bool = field(default=False, metadata=help_("print the hits as JSON"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "describe",
        help="describe every unit in plain English, with held-out scores",
        description="Per unit: formulas of up to three concepts (AND, OR, AND NOT, positions "
        "relative to objects) found on its top-15 exemplars, the one with the best "
        "pointwise mutual information chosen (MILAN's rule), and F1, IoU, AUPRC and "
        "Pearson simulation on held-out images, each with its base rate and a "
        "permutation p-value. Rows go to the catalog table `descriptions`.",
    )
    add_config_args(p, DescribeConfig)
    p.set_defaults(func=run_describe)
    p = sub.add_parser(
        "search",
        help="find units whose descriptions match a text query",
        description="Rank units by how well their descriptions match a query: its words, "
        "their synonyms and the kinds of things they name (WordNet, when "
        "Debian's wordnet-base is installed), and the concepts nearest in meaning "
        "(sentence embeddings, when the extra `embed` is installed).",
    )
    add_config_args(p, SearchConfig)
    p.set_defaults(func=run_search)


def run_describe(args: argparse.Namespace) -> int:
    from unitscope.describe.run import Options, describe_run
    from unitscope.errors import UsageError

    cfg = config_from_args(DescribeConfig, args)
    if not cfg.labels and not cfg.captioner:
        raise UsageError("--no-labels leaves nothing to do: add --captioner default (or file.py:factory)")
    folder = _check_folder(cfg)
    cap = None
    if cfg.captioner:
        from unitscope.describe.captioner import load_captioner

        cap = load_captioner(cfg.captioner)  # a bad spec fails before any work
    opts = Options(
        lam=cfg.lam,
        beam=cfg.beam,
        length=cfg.length,
        exemplars=cfg.exemplars,
        draws=cfg.draws,
        validate=cfg.validate,
        seed=cfg.seed,
        progress=cfg.progress,
    )
    if folder is not None:
        cfg.run = str(_folder_run(cfg, folder))
    out = describe_run(cfg.run, cfg.layers or None, opts) if cfg.labels else None
    if cap is not None:
        from unitscope.describe.captioner import caption_run

        for layer, rows in caption_run(cfg.run, cfg.layers or None, cap, cfg.exemplars).items():
            said = [r for r in rows if r.get("description")]
            print(
                f"{layer}: {len(said)} of {len(rows)} units captioned by {cfg.captioner}, "
                f"{len({r['description'] for r in said})} distinct captions"
            )
    for layer in out or ():
        print(out.layer_summary(layer))
    return 0


def _check_folder(cfg: DescribeConfig):
    """With ``--images``: the folder (checked before any work), else None (a run folder is needed)."""
    from unitscope.errors import UsageError

    if not cfg.images:
        if cfg.model or cfg.out:
            raise UsageError("--model and --out go with --images FOLDER (describe a model on an image folder)")
        if not cfg.run:
            raise UsageError(
                "describe needs a dissection run folder (describe RUN), or --model M --images FOLDER "
                "--layers L --out RUN to compute the exemplars on an image folder"
            )
        return None
    if cfg.run or not cfg.model or not cfg.out or not cfg.layers:
        raise UsageError("with --images FOLDER give --model M, --layers L and --out RUN, and no run folder")
    from unitscope.describe.folder import FolderData

    data = FolderData(cfg.images)  # no images: a clear error here
    if cfg.labels and not data.labelled:
        raise UsageError(
            f"{cfg.images} has no labels (no class sub-folders): describe it with --no-labels "
            "--captioner default (or file.py:factory)"
        )
    return data


def _folder_run(cfg: DescribeConfig, data):
    from unitscope.describe.folder import exemplar_run
    from unitscope.models import create_model

    model = create_model(cfg.model)
    return exemplar_run(model, data.root, cfg.layers, cfg.out, batch_size=cfg.batch_size, progress=cfg.progress)


def run_search(args: argparse.Namespace) -> int:
    import json

    from unitscope.describe.search import per_layer, search_units

    cfg = config_from_args(SearchConfig, args)
    hits = search_units(cfg.run, cfg.query, layers=cfg.layers or None, kind=cfg.kind, limit=0)
    shown = hits[: cfg.limit] if cfg.limit else hits
    if cfg.json:
        print(json.dumps({"hits": shown, "per_layer": per_layer(hits)}, indent=1))
        return 0
    if not hits:
        print(f"no unit's description matches {cfg.query!r}")
        return 0
    counts = ", ".join(f"{layer} {n}" for layer, n in per_layer(hits).items())
    print(f"{len(hits)} units match {cfg.query!r} ({counts})")
    for h in shown:
        f1 = f"F1 {h['f1']:.2f} (p {h['p_f1']:.2g})" if h.get("f1") is not None and h.get("p_f1") is not None else ""
        print(f"  {h['layer']} unit {h['unit']:>4}  {h['match']:.2f}  {h['description']}  {f1}")
    return 0
