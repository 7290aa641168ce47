"""One reader of what a run folder knows about a unit: every analysis registers its reader once.

    from unitscope.catalog import Catalog
    from unitscope.facts import unit_facts
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        facts = unit_facts(cat, "resnet18", "layer4", 7)
    facts["dissection"].label          # "dog" (a detector's concept), or None
    facts["dissection"].rows["iou"]    # 0.12 -- any JSON-able value the analysis knows
    facts["dissection"].images         # {"exemplars": "images/.../unit0007.jpg", "mask": ...}
    facts["featvis"].images            # {"visualization": "featvis/layer4/7.png"}

An analysis registers its reader with its report part (one registration covers the report's
cards and unit pages, ``serve``'s ``/api/unit``, ``unitscope explain`` and ``open_run``)::

    register_part(ReportPart("mine", "My analysis", ("my_table",), units=..., facts=my_facts))

    def my_facts(cat, model, layer, unit) -> UnitFacts | None:     # None: nothing about this unit
        rows = cat.rows("my_table", model=model, layer=layer, unit=unit)
        return UnitFacts(rows={"score": rows[0]["score"]}) if rows else None

A part without ``facts`` but with ``units`` (its card data) gets ``UnitFacts(rows=card data)``.
An analysis with no report part calls :func:`register_facts` itself (in a module the
``unitscope.unit_facts`` entry-point group names). The readers load the report parts on first
need (:mod:`unitscope.plugins`): this module sits below ``report`` in the package's layers.

``UnitFacts``: ``label`` a few words naming the unit (readers show the first label in part
order); ``rows`` the analysis' values; ``images`` pictures by kind, paths relative to the run
folder (kinds readers know: ``exemplars`` a strip of top images, ``mask`` the same with the
concept outlined, ``visualization`` a square picture the unit responds to most; ``gan``'s
before/after grids the unit is edited in, by the grid's kind: ``removal:CONCEPT``,
``insertion:CONCEPT``, ``artifacts``); ``links``
caption -> a page or file relative to the run folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from unitscope.catalog import Catalog
from unitscope.plugins import Plugins

ENTRY_POINT_GROUP = "unitscope.unit_facts"
PLUGINS = Plugins(ENTRY_POINT_GROUP, builtin=("unitscope.report.parts:load_parts",))

#: what one analysis knows about one unit: (catalog, model, layer, unit) -> facts or None
FactsReader = Callable[[Catalog, str, str, int], "UnitFacts | None"]


@dataclass
class UnitFacts:
    """What one analysis knows about one unit (see the module docstring)."""

    label: str | None = None
    rows: dict[str, Any] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def to_json(self, url: Callable[[str], str] | None = None) -> dict[str, Any]:
        """``{"label", "rows", "images", "links"}``; ``url`` maps run-relative paths (serve: ``/run/...``)."""
        at = url or (lambda p: p)
        return {
            "label": self.label,
            "rows": self.rows,
            "images": {k: at(v) for k, v in self.images.items()},
            "links": {k: at(v) for k, v in self.links.items()},
        }


@dataclass(frozen=True)
class FactsSource:
    """A registered reader: ``name`` and ``title`` (as its report part's), the ``tables`` it reads
    (skipped when none is in the catalog), ``order`` (ascending, as report parts); ``read_layer``,
    optional, the facts of a whole layer at once (``{unit: UnitFacts}``, for :func:`layer_facts`)."""

    name: str
    title: str
    tables: tuple[str, ...]
    read: FactsReader
    order: int = 100
    read_layer: Callable[[Catalog, str, str], dict[int, UnitFacts]] | None = None


_SOURCES: dict[str, FactsSource] = {}


def register_facts(source: FactsSource) -> None:
    """Add a reader; registering one of the same name again replaces it (a reloaded module)."""
    if not source.name or not source.tables:
        raise ValueError(f"unit facts {source.name!r}: give a name and the tables it reads")
    _SOURCES[source.name] = source


def unregister_facts(name: str) -> None:
    """Remove a reader (tests that register their own)."""
    _SOURCES.pop(name, None)


def sources() -> list[FactsSource]:
    """Every registered reader, by ``order`` then name (loads the report parts first)."""
    PLUGINS.load()
    return sorted(_SOURCES.values(), key=lambda s: (s.order, s.name))


def used_sources(cat: Catalog) -> list[FactsSource]:
    """The readers with at least one of their tables in ``cat``."""
    present = set(cat.tables())
    return [s for s in sources() if present.intersection(s.tables)]


def unit_facts(
    cat: Catalog, model: str, layer: str, unit: int, only: list[FactsSource] | None = None
) -> dict[str, UnitFacts]:
    """``{analysis name: UnitFacts}`` for one unit, in order; analyses that know nothing are left out."""
    out = {}
    for source in only if only is not None else used_sources(cat):
        facts = source.read(cat, model, layer, int(unit))
        if facts is not None:
            out[source.name] = facts
    return out


def layer_facts(cat: Catalog, model: str, layer: str) -> dict[int, dict[str, UnitFacts]]:
    """``{unit: {analysis name: UnitFacts}}`` for every unit of ``layer`` some analysis has rows for."""
    out: dict[int, dict[str, UnitFacts]] = {}
    used = used_sources(cat)
    for source in used:
        if source.read_layer is not None:
            found = source.read_layer(cat, model, layer)
        else:
            found = {}
            for unit in fact_units(cat, source, model, layer):
                facts = source.read(cat, model, layer, unit)
                if facts is not None:
                    found[unit] = facts
        for unit, facts in found.items():
            out.setdefault(int(unit), {})[source.name] = facts
    return dict(sorted(out.items()))  # each unit's analyses in source order already


def unit_label(facts: dict[str, UnitFacts]) -> str | None:
    """The first label among ``facts`` (in their order), or None."""
    return next((f.label for f in facts.values() if f.label), None)


def unit_image(facts: dict[str, UnitFacts], kind: str) -> str | None:
    """The first image of ``kind`` among ``facts``, or None."""
    return next((f.images[kind] for f in facts.values() if kind in f.images), None)


def _unit_tables(cat: Catalog) -> list[str]:
    """The registered readers' tables in ``cat`` with rows per unit (``model``, ``layer``, ``unit`` columns)."""
    present = set(cat.tables())
    return sorted(
        t
        for t in {t for s in sources() for t in s.tables if t in present}
        if {"model", "layer", "unit"} <= set(cat.columns(t))
    )


def fact_models(cat: Catalog) -> list[str]:
    """The models the registered readers' unit tables name."""
    found: set[str] = set()
    for table in _unit_tables(cat):
        found |= {r["model"] for r in cat.query(f"SELECT DISTINCT model FROM {table}")}
    return sorted(found - {None})


def fact_layers(cat: Catalog, model: str) -> set[str]:
    """The layers of ``model`` with rows in the registered readers' unit tables."""
    found: set[str] = set()
    for table in _unit_tables(cat):
        found |= {r["layer"] for r in cat.query(f"SELECT DISTINCT layer FROM {table} WHERE model = ?", (model,))}
    return found


def fact_units(cat: Catalog, source: FactsSource, model: str, layer: str) -> list[int]:
    """The units of ``layer`` that ``source``'s tables (those with a ``unit`` column) have rows for."""
    present = set(cat.tables())
    found: set[int] = set()
    for table in source.tables:
        if table in present and {"model", "layer", "unit"} <= set(cat.columns(table)):
            found |= {
                int(r["unit"])
                for r in cat.query(f"SELECT DISTINCT unit FROM {table} WHERE model = ? AND layer = ?", (model, layer))
            }
    return sorted(found)


__all__ = [
    "UnitFacts",
    "FactsSource",
    "FactsReader",
    "register_facts",
    "unregister_facts",
    "sources",
    "used_sources",
    "unit_facts",
    "layer_facts",
    "unit_label",
    "unit_image",
    "fact_models",
    "fact_layers",
    "fact_units",
]
