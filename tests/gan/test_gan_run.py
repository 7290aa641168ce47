"""`unitscope gan` on a dissected hand-built generator (tests/helpers/gan_models.py's soft door generator):
every stage writes its catalog rows with the numbers the generator implies, a rerun resumes (skips
what is done), the report carries the generator section and the unit card rows, and the command
runs from a generator file and a segmenter file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.gan_models import SoftSegmenter, soft_generator
from unitscope.catalog import Catalog
from unitscope.dissect import Options, dissect_sources
from unitscope.errors import UsageError
from unitscope.gan import GeneratorActivations, SegmenterLabels
from unitscope.gan.run import Settings, analyse, unit_order

HERE = Path(__file__).parents[1] / "helpers"


SETTINGS = dict(
    layer="feat",
    concept="door",
    insert=["door"],
    samples=100,
    ks=[1, 2, 3],
    random_draws=2,
    ace_samples=50,
    ace_steps=40,
    ace_lr=0.2,
    insert_samples=20,
    artifact_samples=100,
    grid=4,
    grid_k=1,
    batch_size=50,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ganrun") / "run"
    acts = GeneratorActivations(soft_generator(), ["feat"], n=300, seed=0)
    dissect_sources(
        acts,
        SegmenterLabels(SoftSegmenter()),
        out,
        Options(quantile=0.05, batch_size=100, exemplar_images=False, progress=False),
        config={
            "model": f"{HERE / 'gan_models.py'}:soft_generator",
            "segmenter": f"{HERE / 'gan_models.py'}:soft_segmenter",
        },
    )
    done = analyse(out, soft_generator(), SoftSegmenter(), Settings(**SETTINGS), log=lambda line: None)
    assert set(done) == {"removal", "ace", "ace_insert", "ace_removal", "insertion:door", "artifacts"}
    return out


@pytest.fixture
def own_run(run: Path, tmp_path: Path) -> Path:
    """A copy of the module's run for a test that reruns stages with other settings: the other tests
    read the rows of SETTINGS, whatever order pytest-randomly runs them in."""
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


def test_every_stage_writes_the_rows_the_generator_implies(run: Path) -> None:
    assert unit_order(run, "feat", "door")[0][0] == 0
    with Catalog(run / "catalog.sqlite") as cat:
        assert sorted((r["analysis"], r["concept"]) for r in cat.rows("gan_effects")) == [
            ("ace", "door"),
            ("artifacts", ""),
            ("insertion", "door"),
            ("removal", "door"),
        ]
        door = {(r["ranking"], r["k"]): r["change"] for r in cat.rows("gan_removal", label="door")}
        assert door[("iou", 1)] == -1.0 and door[("ace", 1)] == -1.0
        assert {door[("random", k)] for k in (1, 2)} <= {-1.0, -0.5, 0.0}  # mean of 2 draws of 0 or -100%
        assert door[("random", 3)] == -1.0
        units = {r["unit"]: r for r in cat.rows("gan_unit_effects", concept="door")}
        assert units[0]["ace_rank"] == 1 and units[0]["iou_rank"] == 1 and units[0]["ace_remove"] > 0.9
        ins = {r["context"]: r for r in cat.rows("gan_insertion", concept="door")}
        # the sky rows' cells are sky or, under a blotch, none
        assert ins["sky"]["trials"] + ins["none"]["trials"] == 8 * 20 and ins["none"]["trials"] > 0
        assert ins["sky"]["appeared"] == ins["none"]["appeared"] == 0 and ins["wall"]["rate"] == 1.0
        art = {r["unit"]: r for r in cat.rows("gan_artifacts")}
        assert art[2]["rank"] == 1 and art[2]["gain"] > 0 and art[1]["gain"] == 0.0
        examples = {r["kind"]: r["path"] for r in cat.rows("gan_examples")}
        assert sorted(examples) == ["artifacts", "insertion:door", "removal:door"]
        assert all((run / p).read_bytes()[:4] == b"\x89PNG" for p in examples.values())
        edited = {r["kind"]: json.loads(r["units"]) for r in cat.rows("gan_examples")}
        assert edited["removal:door"] == [0] and edited["artifacts"][0] == 2 and edited["insertion:door"][0] == 0
        from unitscope.facts import unit_facts

        gan = unit_facts(cat, cat.rows("gan_effects")[0]["model"], "feat", 0)["gan"]
        assert gan.images["removal:door"] == examples["removal:door"] and gan.rows["effects"][0]["ace_rank"] == 1


def test_a_rerun_skips_finished_stages_and_redoes_one_whose_settings_changed(own_run: Path) -> None:
    run = own_run
    assert analyse(run, soft_generator(), SoftSegmenter(), Settings(**SETTINGS), log=lambda line: None) == {}
    changed = analyse(
        run, soft_generator(), SoftSegmenter(), Settings(**{**SETTINGS, "ks": [1, 2]}), log=lambda line: None
    )
    assert set(changed) == {"removal", "ace", "ace_insert", "ace_removal"}  # ks is theirs; insertion, artifacts kept
    with Catalog(run / "catalog.sqlite") as cat:
        assert sorted({r["k"] for r in cat.rows("gan_removal", ranking="iou")}) == [1, 2]
    with pytest.raises(UsageError, match="did you mean door"):
        analyse(run, soft_generator(), SoftSegmenter(), Settings(**{**SETTINGS, "concept": "doors"}))
    with pytest.raises(UsageError, match="unknown stages paint"):
        analyse(run, soft_generator(), SoftSegmenter(), Settings(**{**SETTINGS, "stages": ["paint"]}))


def test_the_report_has_the_generator_section_and_card_rows(run: Path) -> None:
    from unitscope.report import write_report

    write_report(run, title="soft door")
    report = json.loads((run / "report.json").read_text())
    (layer,) = [layer for layer in report["layers"] if "gan" in layer["parts"]]
    gan = layer["parts"]["gan"]
    (removal,) = gan["removal"]
    assert removal["concept"] == "door" and removal["curves"]["iou"]["change"][0] == -1.0
    assert {"iou", "ace", "random"} <= set(removal["curves"])
    assert gan["insertion"]["door"][0]["context"] == "wall" and gan["artifacts"][0]["unit"] == 2
    cards = {c["unit"]: c["parts"]["gan"] for c in layer["cards"] if "gan" in c["parts"]}
    assert cards[0]["effects"][0]["ace_rank"] == 1 and cards[2]["artifact_rank"] == 1
    assert [g["kind"] for g in cards[0]["grids"] if g["kind"].startswith("removal")] == ["removal:door"]
    assert "UNITSCOPE_PARTS.gan" in (run / "index.html").read_text() + (run / "report.js").read_text()


def test_the_command_reads_the_run_and_refuses_a_layer_it_did_not_dissect(own_run: Path, capsys) -> None:
    run = own_run
    from unitscope.cli import main

    assert main(["gan", str(run), "--concept", "door", "--layer", "feet", "--no-report"]) == 2
    assert "the run dissected feat, not 'feet'" in capsys.readouterr().err
    assert (
        main(
            [
                "gan",
                str(run),
                "--concept",
                "door",
                "--stages",
                "removal",
                "--samples",
                "50",
                "--ks",
                "1",
                "--random-draws",
                "0",
                "--threads",
                "1",
                "--no-report",
            ]
        )
        == 0
    )
    with Catalog(run / "catalog.sqlite") as cat:
        assert [r["samples"] for r in cat.rows("gan_effects", analysis="removal")] == [50]


def test_the_demo_removes_world_generator_wide_s_tree_units_by_their_iou_order(tmp_path: Path) -> None:
    """``unitscope demo``'s removal step on the shipped wide decoder, at a tenth of its sizes: the rows it
    writes are the IoU order of its own dissection, the curve's ks and one random draw of each."""
    from unitscope.commands.gan import run_wide_removal_demo

    path = run_wide_removal_demo(tmp_path / "wide", samples=100, removal_samples=20)
    assert path.exists()
    order = unit_order(tmp_path / "wide", "relu2", "tree")[0]
    with Catalog(tmp_path / "wide" / "catalog.sqlite") as cat:
        rows = cat.rows("gan_removal", label="tree")
        assert {(r["ranking"], r["k"]) for r in rows} == {(g, k) for g in ("iou", "random") for k in (5, 10, 20)}
        assert {r["model"] for r in rows} == {"world_generator_wide"}
        examples = {r["kind"]: json.loads(r["units"]) for r in cat.rows("gan_examples")}
    assert examples["removal:tree"] == order[:20]
