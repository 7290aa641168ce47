"""One source of settings: ``dissect(..., options, **overrides)`` reads :class:`Options`, whose
fields hold each default and help text once; ``unitscope dissect``'s options derive from them."""

from __future__ import annotations

import dataclasses
import sqlite3

import numpy as np
import pytest

from tests.dissect.test_dissect import PLANTED, dataset, planted, world  # noqa: F401  (world is a fixture)
from unitscope.dissect.options import Options, with_overrides
from unitscope.errors import UsageError


def test_an_unknown_override_names_the_close_match():
    with pytest.raises(UsageError, match="'iou_treshold'.*did you mean iou_threshold"):
        with_overrides(None, {"iou_treshold": 0.1})
    with pytest.raises(UsageError, match="did you mean topk"):
        with_overrides(Options(), {"top_k": 3})


def test_overrides_equal_options_and_leave_the_rest():
    base = Options(quantile=0.02, seed=4)
    got = with_overrides(base, {"topk": 3, "rotations": 2})
    assert got == Options(quantile=0.02, seed=4, topk=3, rotations=2)
    assert base == Options(quantile=0.02, seed=4)  # not changed in place
    assert with_overrides(None, {}) == Options()


def test_every_cli_default_and_help_is_the_options_field():
    from unitscope.commands.dissect import OPTION, DissectConfig, dissect_options

    options = {f.name: f for f in dataclasses.fields(Options)}
    shared = {f.name: f for f in dataclasses.fields(DissectConfig) if OPTION.get(f.name, f.name) in options}
    # every setting a command can give, but the exemplar strips (a generator's are drawn by the report)
    assert {OPTION.get(n, n) for n in shared} == set(options) - {"exemplar_images"}
    for name, f in shared.items():
        o = options[OPTION.get(name, name)]
        assert f.metadata["help"] == o.metadata["help"] and o.metadata["help"], name
        if name == "workers":  # the one that differs on purpose: a command loads in worker processes
            assert (f.default, o.default) == ("auto", 0)
        else:
            assert f.default == o.default, name
    cfg = DissectConfig(model="m", out="o", iou=0.1, workers="2", rotations=3)
    assert dissect_options(cfg, "cpu") == Options(iou_threshold=0.1, num_workers="2", rotations=3)


def _bases(run) -> list[tuple]:
    with sqlite3.connect(run / "catalog.sqlite") as db:
        return db.execute("SELECT model, layer, privileged FROM layer_bases ORDER BY layer").fetchall()


def test_a_python_dissect_writes_the_layer_bases_the_command_writes(world, tmp_path, monkeypatch):  # noqa: F811
    from unitscope.cli import main
    from unitscope.dissect import dissect

    monkeypatch.setenv("PLANTED_WORLD", str(world))
    assert (
        main(
            [
                "dissect",
                "--model",
                f"{PLANTED}:colour_units",
                "--data",
                str(world),
                "--layers",
                "feat",
                "--rotations",
                "2",
                "--topk",
                "2",
                "--no-progress",
                "--no-report",
                "--workers",
                "0",
                "--out",
                str(tmp_path / "cli"),
            ]
        )
        == 0
    )
    model = planted(world)
    result = dissect(
        model, dataset(world, model), ["feat"], tmp_path / "py", Options(topk=2), rotations=2, progress=False
    )
    cli = _bases(tmp_path / "cli")
    assert cli and _bases(tmp_path / "py") == cli
    assert len(result.rotations["feat"]) == 3
    rows = {}
    for name in ("cli", "py"):
        with sqlite3.connect(tmp_path / name / "catalog.sqlite") as db:
            rows[name] = (
                db.execute("SELECT * FROM rotations ORDER BY rotation").fetchall(),
                np.array(db.execute("SELECT iou FROM dissection ORDER BY unit").fetchall()),
            )
    assert len(rows["cli"][0]) == 3 and rows["py"][0] == rows["cli"][0]
    assert np.array_equal(rows["py"][1], rows["cli"][1])


def test_an_unknown_override_stops_dissect_before_the_run_folder(world, tmp_path):  # noqa: F811
    from unitscope.dissect import dissect

    model = planted(world)
    with pytest.raises(UsageError, match="did you mean quantile"):
        dissect(model, dataset(world, model), ["feat"], tmp_path / "run", quantil=0.1)
    assert not (tmp_path / "run").exists()
