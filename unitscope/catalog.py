"""The run catalog: one SQLite file of rows about units, keyed by (model, layer, unit).

    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace("dissection", rows, model="resnet18", layer="layer4")   # one transaction
        cat.query("SELECT unit, iou FROM dissection WHERE layer = ? AND concept = ? "
                  "AND is_detector ORDER BY iou DESC", ("layer4", "dog"))

``PRAGMA user_version`` records the schema version, :data:`SCHEMA_VERSION` when this code
writes; a file without one, 0, is from before versions were recorded and opens, its missing tables
and columns added; a newer version fails with :class:`CatalogVersionError`, naming both.

Each analysis declares its tables with :func:`define_table` in its own torch-free ``tables.py``
(``unitscope.dissect.tables``, ``unitscope.ablate.tables``, ``unitscope.featvis.tables``,
``unitscope.describe.tables``); every :class:`Catalog` opened afterwards creates the declared
tables it lacks. Dissection's tables are in every catalog: the first :class:`Catalog` loads
``unitscope.dissect.tables`` (named as a string, :data:`PLUGINS`: this module sits below the
analyses), as does any module of the ``unitscope.catalog_tables`` entry-point group.

``with cat.transaction():`` groups several ``replace`` calls into one all-or-nothing write.
Indexes on ``(concept, model, layer)`` make "which units of layer X detect concept Y" a lookup.
"""

from __future__ import annotations

import numbers
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import repeat
from pathlib import Path
from typing import Any

from unitscope.errors import UnitscopeError
from unitscope.faults import fault
from unitscope.plugins import Plugins

SCHEMA_VERSION = 1

#: table -> (columns as (name, SQL type), primary key columns)
TABLES: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {}
#: index name -> (table, columns)
INDEXES: dict[str, tuple[str, tuple[str, ...]]] = {}
#: modules that declare tables every catalog has (a bare module declares them on import)
PLUGINS = Plugins("unitscope.catalog_tables", builtin=("unitscope.dissect.tables",))


def define_table(
    name: str,
    columns: Iterable[tuple[str, str]],
    primary_key: Iterable[str],
    indexes: Mapping[str, Iterable[str]] | None = None,
) -> None:
    """Declare a catalog table; every :class:`Catalog` opened afterwards creates it if missing."""
    columns, primary_key = tuple(columns), tuple(primary_key)
    names = [c for c, _ in columns]
    missing = [k for k in primary_key if k not in names]
    if missing:
        raise ValueError(f"table {name!r}: primary key columns {missing} are not columns {names}")
    if name in TABLES and TABLES[name] != (columns, primary_key):
        raise ValueError(f"table {name!r} is already defined with a different schema")
    TABLES[name] = (columns, primary_key)
    for index, cols in (indexes or {}).items():
        INDEXES[index] = (name, tuple(cols))


class CatalogVersionError(UnitscopeError, ValueError):
    """A catalog written by a newer unitscope, with a schema version this one does not know."""


def _unitscope_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("unitscope")
    except PackageNotFoundError:
        return "(source checkout)"


def _keep(value: Any) -> Any:
    return value


def _as_bool(value: Any) -> int:
    return int(bool(value))


# the conversion each scalar type got (a dissection stores some 260,000 values: the ABC checks
# below cost more than the SQL); types whose conversion depends on the value are not recorded
_BY_TYPE: dict[type, Any] = {}
_PLAIN_TYPES = (int, float, str, bytes, type(None))  # what sqlite3 stores as it is


def _plain(value: Any) -> Any:
    """NumPy/torch scalars and bools -> int/float/str that sqlite3 stores."""
    convert = _BY_TYPE.get(type(value))
    if convert is not None:
        return convert(value)
    if value is None or isinstance(value, (str, bytes)):
        convert = _keep
    elif isinstance(value, bool) or type(value).__name__ == "bool_":
        convert = _as_bool
    elif isinstance(value, numbers.Integral):
        convert = int
    elif isinstance(value, numbers.Real):
        convert = float
    elif hasattr(value, "item"):  # 0-d arrays and tensors
        return _plain(value.item())
    else:
        raise TypeError(f"cannot store {type(value).__name__} {value!r} in the catalog")
    _BY_TYPE[type(value)] = convert
    return convert(value)


def _plain_column(values: Sequence[Any]) -> Sequence[Any]:
    """A column's values as sqlite3 stores them: an array's ``tolist()``; a list converted value by
    value (:func:`_plain`) only when it holds other than plain Python values (exact types: a NumPy
    float64 is a float but stays a NumPy scalar)."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    if all(type(v) in _PLAIN_TYPES for v in values):
        return values
    return [_plain(v) for v in values]


class Catalog:
    """One SQLite catalog file. Use as a context manager, or call :meth:`close`.

    ``create=False`` opens an existing file only (FileNotFoundError naming it otherwise).
    """

    def __init__(self, path: str | Path, *, create: bool = True):
        PLUGINS.load()  # dissection's tables (and plug-ins') before the first file is opened
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"no catalog at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
        # what replace() says it is.
        self._con = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
        self._con.row_factory = sqlite3.Row
        version = self._con.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._con.close()
            raise CatalogVersionError(
                f"{self.path} has catalog schema version {version}, written by a newer unitscope; this unitscope "
                f"{_unitscope_version()} reads schema versions up to {SCHEMA_VERSION}: upgrade unitscope to open it"
            )
        self._create()

    def _missing_columns(self) -> list[tuple[str, str, str]]:
        """(table, column, type) of defined columns an existing table lacks."""
        have: dict[str, set[str]] = {}
        for table, column in self._con.execute(  # one query for every table (opened per request by serve)
            "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table'"
        ):
            have.setdefault(table, set()).add(column)
        return [
            (name, c, t)
            for name, (columns, _) in TABLES.items()
            if name in have
            for c, t in columns
            if c not in have[name]
        ]

    def _create(self) -> None:
        con = self._con
        have = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION and have >= set(TABLES) | set(INDEXES) and not self._missing_columns():
            return  # nothing to create: also lets a read-only file open
        con.execute("BEGIN IMMEDIATE")
        try:
            for name, (columns, key) in TABLES.items():
                cols = ", ".join(f"{c} {t}" for c, t in columns)
                con.execute(f"CREATE TABLE IF NOT EXISTS {name} ({cols}, PRIMARY KEY ({', '.join(key)}))")
            for table, column, sql_type in self._missing_columns():  # added since the file was written
                con.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
            for index, (table, indexed) in INDEXES.items():
                con.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table} ({', '.join(indexed)})")
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    # -- context manager -------------------------------------------------------------------------
    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r})"

    # -- schema helpers --------------------------------------------------------------------------
    def tables(self) -> list[str]:
        """Names of the tables in this file, sorted."""
        rows = self._con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
        return [r[0] for r in rows]

    def columns(self, table: str) -> list[str]:
        return [c for c, _ in self._table_info(table)[0]]

    def _table_info(self, table: str) -> tuple[list[tuple[str, str]], list[str]]:
        info = self._con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
        if info is None:
            raise KeyError(f"no table {table!r} in {self.path}; tables are {self.tables()}")
        cols = self._con.execute(f"PRAGMA table_info({table})").fetchall()
        columns = [(r["name"], r["type"]) for r in cols]
        key = [r["name"] for r in sorted((r for r in cols if r["pk"]), key=lambda r: r["pk"])]
        return columns, key

    def _check_columns(self, table: str, names: Iterable[str], what: str, known: list[str] | None = None) -> None:
        known = self.columns(table) if known is None else known
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"{what} {unknown} not in table {table!r}; its columns are {known}")

    # -- reading and writing ---------------------------------------------------------------------
    def replace(self, table: str, rows: list[dict], **where: Any) -> None:
        """Delete the rows matching ``where`` and insert ``rows``, in one transaction.

        ``where`` values fill in columns a row leaves out; a row that contradicts ``where`` is an
        error (the next replace with the same ``where`` would not remove it).
        """
        known, key = self._table_info(table)  # once per call, not per row
        order = [c for c, _ in known]
        names = set(order)
        self._check_columns(table, where, "where columns", order)
        where = {k: _plain(v) for k, v in where.items()}
        prepared = []
        for i, row in enumerate(rows):
            if not names.issuperset(row):
                self._check_columns(table, row, f"row {i}: columns", order)
            full = dict(where)
            for k, v in row.items():
                v = _plain(v)
                if k in where and v != where[k]:
                    raise ValueError(f"row {i} of {table!r} has {k}={v!r} but replace() was given {k}={where[k]!r}")
                full[k] = v
            prepared.append(full)
        groups: dict[tuple[str, ...], list[tuple]] = {}  # rows grouped by column set: one executemany each
        for row in prepared:
            missing = [k for k in key if row.get(k) is None]
            if missing:
                raise ValueError(f"a row of {table!r} lacks key columns {missing}: {row}")
            groups.setdefault(tuple(row), []).append(tuple(row.values()))
        self._write(table, where, groups.items())

    def replace_columns(self, table: str, columns: Mapping[str, Sequence[Any]], **where: Any) -> None:
        """:meth:`replace` with the rows given column by column: ``columns`` maps a column to its
        values, one per row (lists of equal length; a NumPy array or a list of NumPy scalars is
        converted), ``where`` fills the columns they leave out. For tables of many thousand rows:
        no dict and no type check per value. The same rows as :meth:`replace` with one dict per row."""
        known, key = self._table_info(table)
        order = [c for c, _ in known]
        self._check_columns(table, where, "where columns", order)
        self._check_columns(table, columns, "columns", order)
        both = sorted(set(columns) & set(where))
        if both:
            raise ValueError(f"columns {both} of {table!r} are given both as columns and in where")
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"the columns of {table!r} differ in length: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        plain = {c: _plain_column(v) for c, v in columns.items()}
        fixed = {k: _plain(v) for k, v in where.items()}
        for k in key:
            given = [fixed[k]] if k in fixed else plain.get(k, [None] if n else [])
            if None in given:
                raise ValueError(f"rows of {table!r} lack key column {k!r}")
        names = (*fixed, *plain)
        rows = list(zip(*(repeat(v, n) for v in fixed.values()), *plain.values())) if n else []
        self._write(table, fixed, [(names, rows)])

    def _write(self, table: str, where: dict[str, Any], groups: Iterable[tuple[tuple[str, ...], list[tuple]]]) -> None:
        """Delete the rows matching ``where`` and insert ``groups`` (column names, row tuples), in one savepoint."""
        con = self._con
        # A savepoint is its own transaction outside transaction(), and nests inside one.
        outer = con.in_transaction
        con.execute("SAVEPOINT replace_rows")
        try:
            if where:
                cond = " AND ".join(f"{k} = ?" for k in where)
                con.execute(f"DELETE FROM {table} WHERE {cond}", tuple(where.values()))
            else:
                con.execute(f"DELETE FROM {table}")
            for cols, values in groups:
                marks = ", ".join("?" for _ in cols)
                con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", values)
        except BaseException:
            con.execute("ROLLBACK TO replace_rows")
            con.execute("RELEASE replace_rows")
            raise
        if not outer:
            fault("catalog.commit")
        con.execute("RELEASE replace_rows")

    @contextmanager
    def transaction(self) -> Iterator[Catalog]:
        """Group several writes: all of them land, or (on an exception) none.

        with cat.transaction():
            cat.replace("layers", ...); cat.replace("dissection", ...)
        """
        if self._con.in_transaction:
            raise RuntimeError("Catalog.transaction() does not nest")
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        fault("catalog.commit")
        self._con.execute("COMMIT")

    def query(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> list[dict]:
        """Run one SQL statement; rows as dicts."""
        if not isinstance(params, Mapping):
            params = tuple(_plain(p) for p in params)
        return [dict(r) for r in self._con.execute(sql, params)]

    def rows(self, table: str, **where: Any) -> list[dict]:
        """Rows of ``table`` matching ``where`` (column = value), ordered by primary key."""
        columns, key = self._table_info(table)
        unknown = sorted(set(where) - {c for c, _ in columns})
        if unknown:
            raise ValueError(
                f"where columns {unknown} not in table {table!r}; its columns are {[c for c, _ in columns]}"
            )
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
        order = key or [c for c, _ in columns]
        sql += " ORDER BY " + ", ".join(order)
        return self.query(sql, tuple(where.values()))

    def dump(self) -> dict[str, list[dict]]:
        """Every table's rows, tables sorted by name, rows by primary key (compare with ==)."""
        return {t: self.rows(t) for t in self.tables()}


# -- summaries shared by the report and `unitscope compare` ------------------------------------

#: NetDissect's order of Broden categories; others follow alphabetically.
CATEGORY_ORDER = ("object", "scene", "part", "material", "texture", "color")


def category_key(category: str | None) -> tuple[int, str]:
    name = category or ""
    return (CATEGORY_ORDER.index(name) if name in CATEGORY_ORDER else len(CATEGORY_ORDER), name)


def natural_key(text: str) -> tuple:
    """``features.2`` before ``features.10``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def layer_keys(cat: Catalog) -> list[tuple[str, str]]:
    """Every (model, layer) in ``layers`` or ``dissection``, in natural order."""
    rows = cat.query("SELECT model, layer FROM layers UNION SELECT DISTINCT model, layer FROM dissection")
    return sorted({(r["model"], r["layer"]) for r in rows}, key=lambda k: (natural_key(k[0]), natural_key(k[1])))


def layer_summary(cat: Catalog, model: str, layer: str) -> dict[str, Any]:
    """Units, detectors and unique concepts of one layer, overall and per category.

    Counts come from the ``dissection`` rows (``is_detector``); ``units`` from ``layers`` when
    recorded, else the number of dissected units.
    """
    rows = cat.rows("layers", model=model, layer=layer)
    meta = rows[0] if rows else {}
    (tot,) = cat.query(
        "SELECT COUNT(*) AS dissected, COALESCE(SUM(is_detector != 0), 0) AS detectors, "
        "COUNT(DISTINCT CASE WHEN is_detector != 0 THEN category || char(0) || concept END) AS unique_concepts "
        "FROM dissection WHERE model = ? AND layer = ?",
        (model, layer),
    )
    per = cat.query(
        "SELECT category, COUNT(*) AS detectors, COUNT(DISTINCT concept) AS unique_concepts "
        "FROM dissection WHERE model = ? AND layer = ? AND is_detector != 0 GROUP BY category",
        (model, layer),
    )
    units = meta.get("units")
    return {
        "model": model,
        "layer": layer,
        "units": int(units) if units is not None else tot["dissected"],
        "dissected": tot["dissected"],
        "detectors": tot["detectors"],
        "unique_concepts": tot["unique_concepts"],
        "categories": sorted(per, key=lambda r: category_key(r["category"])),
        "meta": meta,
    }
