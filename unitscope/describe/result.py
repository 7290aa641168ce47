"""What ``describe_run`` found, as one value: per layer the rows of each kind of description.

result = describe_run("runs/lite0", layers=["bn2"])
result.summary()            # "bn2: 41 of 64 units described, 30 distinct descriptions, 25 with held-out F1 p < 0.01"
result["bn2"]["pmi"][7]     # {"description": ..., "f1": ..., "p_f1": ...} (a mapping of layers, as before)
result                      # in a notebook: the summary and each layer's best-scored descriptions
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SIGNIFICANT = 0.01  # a description counts as significant when its held-out F1's p-value is below this
SHOWN = 10  # descriptions per layer in the notebook view


@dataclass(eq=False)
class DescribeResult(Mapping):
    """``layer -> {kind: [row per unit]}`` (kinds ``pmi``, ``ml``, ``fair_label``, ``label``; rows as in
    the catalog table ``descriptions``) with ``summary()`` and ``_repr_html_()``."""

    run_dir: Path
    layers: dict[str, dict[str, list[dict]]] = field(default_factory=dict)

    def __getitem__(self, layer: str) -> dict[str, list[dict]]:
        return self.layers[layer]

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def layer_summary(self, layer: str, kind: str = "pmi") -> str:
        rows = self.layers[layer][kind]
        described = [r for r in rows if r.get("description")]
        distinct = len({r["description"] for r in described})
        significant = sum(1 for r in described if r.get("p_f1") is not None and r["p_f1"] < SIGNIFICANT)
        return (
            f"{layer}: {len(described)} of {len(rows)} units described, {distinct} distinct descriptions, "
            f"{significant} with held-out F1 p < {SIGNIFICANT:g}"
        )

    def summary(self) -> str:
        return "; ".join(self.layer_summary(layer) for layer in self.layers) or "no layers described"

    def _repr_html_(self) -> str:
        """Per layer its summary and the ``SHOWN`` descriptions with the best held-out F1."""
        esc = html.escape
        parts = [f"<div class='unitscope-describe'><b>{esc(str(self.run_dir))}</b>"]
        for layer in self.layers:
            rows = sorted(
                (r for r in self.layers[layer]["pmi"] if r.get("description")),
                key=lambda r: (-(r.get("f1") or 0), r["unit"]),
            )[:SHOWN]
            parts.append(
                f"<h4 style='margin:10px 0 4px'>{esc(self.layer_summary(layer))}</h4>"
                "<table><tr><th>unit</th><th>description</th><th>F1</th><th>p</th></tr>"
            )
            for r in rows:
                f1, p = r.get("f1"), r.get("p_f1")
                parts.append(
                    f"<tr><td>{r['unit']}</td><td>{esc(r['description'])}</td>"
                    f"<td>{'' if f1 is None else f'{f1:.3f}'}</td><td>{'' if p is None else f'{p:.3g}'}</td></tr>"
                )
            parts.append("</table>")
        return "".join(parts) + "</div>"
