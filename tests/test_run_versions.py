"""Run folders across versions: a run this code writes opens in ``report``, the probe server's
reader and ``open_run``; so does the run unitscope 0.1.0 wrote (``tests/helpers/run_0.1.0``: its
catalog as an SQL dump, arrays, labels and config; no images), which later versions must keep
opening; a catalog without a recorded version (older code) still opens; one from a newer
unitscope fails everywhere with one clear message naming both schema versions."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

import unitscope
from unitscope.catalog import SCHEMA_VERSION, Catalog, CatalogVersionError
from unitscope.cli import main
from unitscope.errors import UnitscopeError
from unitscope.serve.runinfo import RunInfo

TINY = f"{Path(__file__).parent / 'helpers' / 'tiny_conv.py'}:tiny_conv"
RUN_0_1_0 = Path(__file__).parent / "helpers" / "run_0.1.0"


@pytest.fixture(scope="module")
def written_run(tmp_path_factory) -> Path:
    """A real run folder, written by this code's `unitscope dissect` (tiny model, 8 images)."""
    from unitscope.world import make_world

    root = tmp_path_factory.mktemp("versions")
    world = make_world(root / "world", n=8, size=64, seed=1, workers=1, progress=False)
    run = root / "run"
    assert (
        main(
            [
                "dissect",
                "--model",
                TINY,
                "--data",
                str(world),
                "--out",
                str(run),
                "--limit",
                "8",
                "--batch-size",
                "4",
                "--no-progress",
                "--null-draws",
                "0",
            ]
        )
        == 0
    )
    return run


def _copy(run: Path, tmp_path: Path, version: int | None = None) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    if version is not None:
        con = sqlite3.connect(out / "catalog.sqlite")
        con.execute(f"PRAGMA user_version = {version}")
        con.close()
    return out


def _version(run: Path) -> int:
    con = sqlite3.connect(run / "catalog.sqlite")
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def _opens_everywhere(run: Path, capsys) -> None:
    (run / "index.html").unlink(missing_ok=True)
    assert main(["report", str(run)]) == 0
    assert (run / "index.html").is_file() and "wrote" in capsys.readouterr().out
    results = unitscope.open_run(run)
    assert {"dissection", "exemplars", "layers", "unit_images"} <= set(results.tables)
    first = results.query("SELECT model, layer FROM layers ORDER BY layer LIMIT 1")  # a DataFrame with pandas
    first = first.to_dict("records") if hasattr(first, "to_dict") else first
    model, layer = first[0]["model"], first[0]["layer"]
    info = RunInfo(run, model=model)
    labels = info.labels(layer)
    assert labels and all(set(v) == {"concept", "category", "iou", "is_detector"} for v in labels.values())
    assert info.unit(layer, 0)["exemplars"]


def test_the_catalog_records_its_schema_version(written_run):
    assert _version(written_run) == SCHEMA_VERSION >= 1


def test_a_run_folder_written_now_opens_in_report_serve_and_open_run(written_run, tmp_path, capsys):
    _opens_everywhere(_copy(written_run, tmp_path), capsys)


def test_the_run_unitscope_0_1_0_wrote_still_opens(tmp_path, capsys):
    """Keep this passing: a schema change migrates old catalogs (or raises the version and says how)."""
    import json

    run = tmp_path / "run"
    shutil.copytree(RUN_0_1_0, run, ignore=shutil.ignore_patterns("catalog.sql"))
    con = sqlite3.connect(run / "catalog.sqlite")
    con.executescript((RUN_0_1_0 / "catalog.sql").read_text())
    con.close()
    assert _version(run) == 1
    _opens_everywhere(run, capsys)
    report = json.loads((run / "report.json").read_text())
    assert [(ly["model"], ly["layer"]) for ly in report["layers"]] == [("tiny-conv", "relu1"), ("tiny-conv", "relu2")]
    assert sum(len(ly["cards"]) for ly in report["layers"]) == 14
    assert len(unitscope.open_run(run).query("SELECT * FROM dissection")) == 14


def test_a_catalog_without_a_version_still_opens(written_run, tmp_path, capsys):
    """Version 0 is a catalog from before versions were recorded: it opens, and gets the version."""
    run = _copy(written_run, tmp_path, version=0)
    _opens_everywhere(run, capsys)
    assert _version(run) == SCHEMA_VERSION


def test_a_catalog_from_a_newer_unitscope_fails_naming_the_versions(written_run, tmp_path, capsys):
    future = SCHEMA_VERSION + 1
    run = _copy(written_run, tmp_path, version=future)
    wanted = rf"schema version {future}, written by a newer unitscope; .* reads schema versions up to {SCHEMA_VERSION}"
    for open_it in (unitscope.open_run, lambda r: RunInfo(r, model="tiny"), lambda r: Catalog(r / "catalog.sqlite")):
        with pytest.raises(CatalogVersionError, match=wanted) as err:
            open_it(run)
        assert isinstance(err.value, UnitscopeError) and isinstance(err.value, ValueError)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"schema version {future}" in err and f"up to {SCHEMA_VERSION}" in err
    assert _version(run) == future  # refused before anything was written


def test_the_probe_server_refuses_it_too(written_run, tmp_path):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from tests.helpers.serve_model import colour_net
    from unitscope.serve import create_app

    run = _copy(written_run, tmp_path, version=SCHEMA_VERSION + 1)
    with pytest.raises(CatalogVersionError, match="upgrade unitscope"):
        create_app(colour_net(), run)
