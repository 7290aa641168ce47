"""One config dataclass per command is the single source of its defaults.

    @dataclass
    class DissectConfig:
        model: str = field(metadata=help_("model name, see `unitscope models`"))
        quantile: float = 0.005

    add_config_args(parser, DissectConfig)       # --model, --quantile ...
    cfg = config_from_args(DissectConfig, args)  # CLI values overlay the defaults
    write_config(cfg, run_dir / "config.json")   # the resolved config, next to the results

Field types map onto argparse: ``bool`` becomes ``--flag/--no-flag``, ``list[str]`` takes a
comma-separated value (``--layers a,b``), ``Optional[X]`` accepts X. A field without a default is
a required option unless its metadata says ``positional=True``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def help_(text: str, *, positional: bool = False, nargs: str | None = None) -> dict[str, Any]:
    """Field metadata: the ``--help`` text, and whether the field is positional."""
    return {"help": text, "positional": positional, "nargs": nargs}


def same_as(cls: type, name: str, **changes: Any) -> Any:
    """A config field with the default and help text of field ``name`` of dataclass ``cls`` (one
    place for both: ``quantile: float = same_as(Options, "quantile")``); ``changes`` replaces either."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    meta = help_(changes.pop("help", f.metadata.get("help", "")))
    if f.default_factory is not dataclasses.MISSING and "default" not in changes:
        return field(default_factory=f.default_factory, metadata=meta)
    return field(default=changes.pop("default", f.default), metadata=meta)


@dataclass
class ModelOptions:
    """Options of every command that builds a model; mix into its config (``class C(ModelOptions)``).

    ``pretrained=None`` leaves the choice to the model (``--no-pretrained`` gives the untrained,
    randomly initialised baseline of a timm/torchvision/EfficientNet-Lite model).
    """

    checkpoint: str | None = field(default=None, kw_only=True, metadata=help_("local weights for the model"))
    pretrained: bool | None = field(
        default=None,
        kw_only=True,
        metadata=help_(
            "load the model's pretrained weights; --no-pretrained: random initialisation (the untrained baseline)"
        ),
    )

    def create_model(self, name: str | None = None, **kw: Any):
        """``unitscope.models.create_model`` with these options (``name`` defaults to ``self.model``)."""
        from unitscope.models import create_model

        return create_model(name or self.model, checkpoint=self.checkpoint, pretrained=self.pretrained, **kw)


def _base_type(tp: Any) -> tuple[Any, bool]:
    """``Optional[X]`` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _parse_list(item_type: Any):
    def parse(text: str) -> list:
        return [item_type(t.strip()) for t in text.split(",") if t.strip()]

    parse.__name__ = f"comma-separated {item_type.__name__} list"
    return parse


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one option per field of dataclass ``cls`` to ``parser``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, _ = _base_type(hints[f.name])
        meta = f.metadata or {}
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else f.default_factory()
            if f.default_factory is not dataclasses.MISSING
            else None
        )
        text = meta.get("help", "")
        if has_default and default is not None and not isinstance(default, bool):
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            text = f"{text} (default: {shown})"
        kw: dict[str, Any] = {"help": text, "dest": f.name}
        if tp is bool:
            parser.add_argument(
                f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, **kw
            )
            continue
        if typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            if meta.get("nargs"):
                kw["type"], kw["nargs"] = item, meta["nargs"]
            else:
                kw["type"] = _parse_list(item)
        else:
            kw["type"] = tp
        if meta.get("positional"):
            kw.pop("dest")
            if has_default and "nargs" not in kw:
                kw["nargs"] = "?"
            parser.add_argument(f.name, default=argparse.SUPPRESS, **kw)
        else:
            parser.add_argument(
                f"--{f.name.replace('_', '-')}", default=argparse.SUPPRESS, required=not has_default, **kw
            )


def config_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from parsed ``args``: only options the user gave override the defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if k in names}
    given.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**given)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def write_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as JSON, atomically."""
    from unitscope.runs import atomic_write_text

    atomic_write_text(Path(path), json.dumps(config_to_dict(cfg), indent=2, sort_keys=True) + "\n")


def load_config(cls: type[T], path: str | Path, **overrides: Any) -> T:
    """Read a config file written by :func:`write_config` (or by hand) and overlay ``overrides``."""
    data = json.loads(Path(path).read_text())
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}; known keys are {sorted(known)}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**data)
