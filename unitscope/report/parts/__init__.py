"""Report parts: every analysis adds its layer section and its rows on unit cards by registration.

    from unitscope.report.parts import ReportPart, register_part
    register_part(ReportPart(
        "ablation", "Ablation", tables=("ablation",),
        units=lambda cat, model, layer: {r["unit"]: {"drop": r["drop"]}
                                         for r in cat.rows("ablation", model=model, layer=layer)},
        script="mypackage.report:ablation.js", order=30))

A part is used for a run when one of its ``tables`` has a row in the run's catalog. The report's
layers are the union of the (model, layer) pairs of every used part's tables, and each layer's
cards the union of the units the parts return. In ``report.json`` a layer carries
``"parts": {name: layer(...)}`` and each card ``"parts": {name: units(...)[unit]}``; run-level
data (``run(cat)``) goes to ``report["parts"][name]``, and data only the unit pages need
(``page(cat, model, layer)``) to the layer's ``"unit_pages": {name: ...}``.

On the page, a part's script sets ``window.UNITSCOPE_PARTS[name] = {layer(el, data, layer),
card(el, data, card), unit(el, data, card), words(data), sorts, flags, nav(data)}`` (every member
optional; see ``index.html``); ``unit`` fills the part's box on the unit page
(``index.html#model/layer/unit``; ``card.page`` is the part's ``unit_pages`` block), and a part
without one shows its card renderer there. The writer inlines the scripts of the parts used, so
file:// keeps working.

A part's ``facts(cat, model, layer, unit) -> UnitFacts | None`` is what the analysis knows about
one unit (label, rows, images, links; :mod:`unitscope.facts`). Registering the part registers it
as the analysis' unit facts, which ``serve``'s ``/api/unit``, ``unitscope explain`` and
``open_run(...).unit()`` read, so one registration reaches all of them; a part without ``units``
gets its facts as card data, drawn plainly on cards and unit pages when it has no script.

Where parts come from (:func:`load_parts`, called by the report writer, not on import):
every module in this package (``dissection``, ``featvis``, ...), then the modules, parts or registering
functions named by the ``unitscope.report_parts`` entry-point group of installed packages.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.metadata import entry_points

from unitscope.catalog import Catalog
from unitscope.facts import FactsReader, FactsSource, UnitFacts, fact_units, register_facts, unregister_facts

ENTRY_POINT_GROUP = "unitscope.report_parts"


@dataclass(frozen=True)
class ReportPart:
    """One analysis' share of the report.

    ``tables``: catalog tables it reads (the part is skipped when none has rows);
    ``layer(cat, model, layer)``: that layer's section data, or None for no section;
    ``units(cat, model, layer)``: ``{unit: data}`` for the units' cards;
    ``run(cat)``: data for the whole run (``report["parts"][name]``), or None;
    ``page(cat, model, layer)``: extra data for the layer's unit pages, only needed there
    (``layer["unit_pages"][name]``), or None;
    ``facts(cat, model, layer, unit)``: what the analysis knows about one unit, a
    :class:`~unitscope.facts.UnitFacts` or None -- the one reader behind ``serve``'s ``/api/unit``,
    ``unitscope explain`` and ``open_run(...).unit()`` (default: the ``units`` card data as rows;
    a part without ``units`` has its facts on the cards, drawn plainly when it has no script);
    ``script``: a JS file in this package (``"featvis.js"``) or in another one
    (``"package.module:file.js"``); ``order``: sections and card rows in ascending order.
    """

    name: str
    title: str
    tables: tuple[str, ...]
    layer: Callable[[Catalog, str, str], dict | None] | None = None
    units: Callable[[Catalog, str, str], dict[int, dict]] | None = None
    script: str | None = None
    order: int = 100
    run: Callable[[Catalog], dict | None] | None = None
    page: Callable[[Catalog, str, str], dict | None] | None = None
    facts: FactsReader | None = None


_PARTS: dict[str, ReportPart] = {}
_LOADED = False


def register_part(part: ReportPart) -> None:
    """Add ``part``; registering the same part again does nothing, another one of that name is an error."""
    if not part.name or not part.name.replace("_", "").isalnum():
        raise ValueError(f"report part name {part.name!r}: use letters, digits and '_' only")
    if not part.tables:
        raise ValueError(f"report part {part.name!r} names no tables; it would never be used")
    old = _PARTS.get(part.name)
    if old is not None and old != part:
        raise ValueError(
            f"a different report part named {part.name!r} is already registered "
            f"(tables {old.tables}); pick another name"
        )
    if part.script is not None:
        part_script(part)  # fail now, naming the file, rather than when a report is written
    _PARTS[part.name] = part
    if part.facts is not None:
        register_facts(FactsSource(part.name, part.title, part.tables, part.facts, part.order))
    else:
        register_facts(
            FactsSource(
                part.name,
                part.title,
                part.tables,
                _card_facts(part),
                part.order,
                read_layer=lambda cat, model, layer: _card_layer(part, cat, model, layer),
            )
        )


def _card_layer(part: ReportPart, cat: Catalog, model: str, layer: str) -> dict[int, UnitFacts]:
    """A part without ``facts``: its card data (``units``) as each unit's rows."""
    cards = part.units(cat, model, layer) if part.units is not None else {}
    return {int(u): UnitFacts(rows=dict(d)) for u, d in cards.items() if isinstance(d, dict)}


def _card_facts(part: ReportPart) -> FactsReader:
    """A part without ``facts``: its card data (``units``) as the unit's rows."""

    def read(cat: Catalog, model: str, layer: str, unit: int) -> UnitFacts | None:
        return _card_layer(part, cat, model, layer).get(unit)

    return read


def unregister_part(name: str) -> None:
    """Remove a part and its unit facts (tests that register their own)."""
    _PARTS.pop(name, None)
    unregister_facts(name)


def load_parts() -> None:
    """Import the built-in part modules and the ``unitscope.report_parts`` entry points (once)."""
    global _LOADED
    if _LOADED:
        return
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:
            raise ImportError(f"report part entry point {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if isinstance(loaded, ReportPart):
            register_part(loaded)
        elif callable(loaded):
            loaded()  # a function that registers its parts
    _LOADED = True


def registered_parts() -> list[ReportPart]:
    """Every registered part, by ``order`` then name (loads the parts first)."""
    load_parts()
    return sorted(_PARTS.values(), key=lambda p: (p.order, p.name))


def part_script(part: ReportPart) -> str:
    """The text of a part's script."""
    package, _, name = (part.script or "").rpartition(":")
    where = resources.files(package or __name__).joinpath(name)
    if not where.is_file():
        raise FileNotFoundError(
            f"report part {part.name!r}: script {name!r} not found in package {package or __name__}"
        )
    return where.read_text(encoding="utf-8")


def card_data(part: ReportPart, cat: Catalog, model: str, layer: str) -> dict[int, dict]:
    """``{unit: data}`` for the layer's cards: ``units(...)``, or for a part without it the
    ``facts`` of every unit its tables name, as JSON (paths relative to the run folder)."""
    if part.units is not None:
        return part.units(cat, model, layer)
    if part.facts is None:
        return {}
    source = FactsSource(part.name, part.title, part.tables, part.facts, part.order)
    out = {}
    for unit in fact_units(cat, source, model, layer):
        facts = part.facts(cat, model, layer, unit)
        if facts is not None:
            out[unit] = facts.to_json()
    return out


def has_rows(cat: Catalog, table: str, present: set[str] | None = None) -> bool:
    """Whether ``table`` exists in ``cat`` and holds at least one row."""
    if table not in (present if present is not None else set(cat.tables())):
        return False
    return bool(cat.query(f"SELECT 1 AS x FROM {table} LIMIT 1"))


def used_parts(cat: Catalog) -> list[ReportPart]:
    """The registered parts with data in ``cat``, in order."""
    present = set(cat.tables())
    return [p for p in registered_parts() if any(has_rows(cat, t, present) for t in p.tables)]


def part_layers(cat: Catalog, parts: list[ReportPart]) -> set[tuple[str, str]]:
    """Every (model, layer) in the parts' tables that have those columns."""
    present = set(cat.tables())
    keys: set[tuple[str, str]] = set()
    for table in {t for p in parts for t in p.tables if t in present}:
        if {"model", "layer"} <= set(cat.columns(table)):
            keys |= {(r["model"], r["layer"]) for r in cat.query(f"SELECT DISTINCT model, layer FROM {table}")}
    return keys


__all__ = [
    "ReportPart",
    "register_part",
    "unregister_part",
    "load_parts",
    "registered_parts",
    "part_script",
    "used_parts",
    "part_layers",
    "has_rows",
    "card_data",
    "UnitFacts",
]
