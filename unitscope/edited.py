"""Saved unit edits: a small JSON naming a model and the units removed from it, loaded as a model.

    from unitscope.edited import EditFile, load_edited
    EditFile("world_scenes_cue", [{"layer": "features.relu5", "units": [3, 17], "mode": "zero"}]).save("cue.edit.json")
    model = create_model("cue.edit.json")     # the base model with the units removed by forward hooks
    # CLI: unitscope classify --model cue.edit.json ...; unitscope serve ... --model cue.edit.json

The file (``"kind": "unitscope.edit"``) holds the base model's name (anything ``create_model``
takes, with an optional ``checkpoint``), and per layer the units and how they are replaced
(``zero``, or ``constant`` with ``value``). Loading builds the base model and keeps one
:class:`unitscope.hooks.Ablate` per layer open on it (``unitscope.edits.Edits`` underneath), so
every forward pass, traced or not, sees the edited units. Extra keys (how the units were found,
the measured effect) are kept as they are, for the reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

KIND = "unitscope.edit"
EDIT_MODES = ("zero", "constant")


@dataclass
class EditFile:
    """``model`` (a name for ``create_model``), ``layers``: ``[{"layer", "units", "mode", "value"?}]``."""

    model: str
    layers: list[dict]
    checkpoint: str | None = None
    about: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for entry in self.layers:
            if not isinstance(entry, dict) or "layer" not in entry or "units" not in entry:
                raise ValueError(f"an edit entry needs 'layer' and 'units', got {entry!r}")
            mode = entry.setdefault("mode", "zero")
            if mode not in EDIT_MODES:
                raise ValueError(f"edit mode {mode!r} of layer {entry['layer']!r}: choose {' or '.join(EDIT_MODES)}")
            if mode == "constant" and "value" not in entry:
                raise ValueError(f"a constant edit of layer {entry['layer']!r} needs 'value'")
            entry["units"] = [int(u) for u in entry["units"]]

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"kind": KIND, "model": self.model, "layers": self.layers}
        if self.checkpoint:
            out["checkpoint"] = self.checkpoint
        if self.about:
            out["about"] = self.about
        return out

    def save(self, path: str | Path) -> Path:
        from unitscope.runs import atomic_write_text

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> EditFile:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a readable edit file ({err})") from None
        if not isinstance(data, dict) or data.get("kind") != KIND:
            raise ValueError(f'{path}: not an edit file (no "kind": "{KIND}"); make one with `unitscope edit`')
        return cls(data["model"], data.get("layers", []), data.get("checkpoint"), data.get("about", {}))


def is_edit_file(name: str) -> bool:
    """Whether ``name`` names an existing edit file (a ``.json`` whose kind is an edit)."""
    p = Path(name)
    if p.suffix != ".json" or not p.is_file():
        return False
    try:
        return json.loads(p.read_text()).get("kind") == KIND
    except (OSError, ValueError, AttributeError):
        return False


def apply_edit(model: nn.Module, edit: EditFile) -> nn.Module:
    """Hook ``edit``'s removals into ``model`` (in place, for good); returns ``model``."""
    from unitscope.hooks import Ablate

    held = []
    for entry in edit.layers:
        value = entry.get("value")
        held.append(Ablate(model, entry["layer"], entry["units"], entry["mode"], value=value).__enter__())
    object.__setattr__(model, "unitscope_edit_hooks", held)  # kept alive with the model
    return model


def load_edited(path: str | Path, create: Any, **kw: Any) -> nn.Module:
    """The model an edit file names, built with ``create`` (``models.create_model``), with its edits."""
    import dataclasses

    from unitscope.models import attach_info, get_info

    edit = EditFile.read(path)
    if edit.checkpoint and "checkpoint" not in kw:
        kw["checkpoint"] = edit.checkpoint
    model = apply_edit(create(edit.model, **kw), edit)
    info = get_info(model)
    removed = sum(len(e["units"]) for e in edit.layers)
    return attach_info(
        model,
        dataclasses.replace(info, name=f"{info.name}+edit", source=f"{info.source}; {path}: {removed} units edited"),
    )
