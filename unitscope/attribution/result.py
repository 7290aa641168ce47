"""One explained image as one value: what :func:`~unitscope.attribution.page.explain` returns.

result = explain(model, "cat.jpg", "blocks.4.1.bn2", run_dir)
result.summary()    # "m blocks.4.1.bn2 on cat.jpg: predicts tabby (81.2%); for tabby: units #12 (0.41), ..."
result["channels"]  # the page's data, as before (a mapping: explain.json's keys)
result              # in a notebook: the summary, the input beside its attribution map, the top units
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHOWN = 3  # units named in the summary


@dataclass(eq=False)
class ExplainResult(Mapping):
    """The explain page's data (``explain.json``: classes, target, channels, dictionary, groups, grid;
    image paths relative to ``page``) and the folder its images were written to."""

    data: dict[str, Any]
    page: Path

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def summary(self) -> str:
        d = self.data
        top = d["classes"][0] if d["classes"] else None
        said = f"predicts {top['name']} ({100 * top['p']:.1f}%)" if top else "no prediction"
        units = ", ".join(
            f"#{c['unit']} ({c['integrated']:.3g}{', ' + c['label'] if c.get('label') else ''})"
            for c in d["channels"][:SHOWN]
        )
        return (
            f"{d['model']} {d['layer']} on {d['image']}: {said}; for {d['target']['name']} the top units by "
            f"integrated gradients: {units or 'none'}; {len(d['groups'])} neuron groups"
        )

    def _repr_html_(self) -> str:
        """The summary, the input and its attribution map inline, the top units with their labels."""
        esc = html.escape
        images = "".join(_inline(self.page / name, name) for name in ("input.png", "attribution.png"))
        rows = "".join(
            f"<tr><td>{c['unit']}</td><td>{esc(c.get('label') or '')}</td><td>{c['attribution']:.4g}</td>"
            f"<td>{c['integrated']:.4g}</td></tr>"
            for c in self.data["channels"]
        )
        return (
            f"<div class='unitscope-explain'><b>{esc(self.summary())}</b><br>{images}"
            "<table><tr><th>unit</th><th>label</th><th>attribution</th><th>integrated</th></tr>"
            f"{rows}</table></div>"
        )


def _inline(path: Path, alt: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img src='data:image/png;base64,{data}' style='height:128px;margin:2px' alt='{html.escape(alt)}'>"
