"""The audit count (unitscope.audit.count): on two hand-built models with exactly 2 and 1 planted red
units (layers feat1, feat2) and a reference with 1 and 0, dissection and descriptions on a small probe
world give exactly those counts; significance counts follow Benjamini-Hochberg; the report shows them."""

import json
from pathlib import Path

import pytest

from tests.helpers.audit_models import colour_layers
from unitscope.audit.count import audit_counts, count_units, format_counts, write_counts
from unitscope.catalog import Catalog

MODELS = str(Path(__file__).parents[1] / "helpers" / "audit_models.py")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from unitscope.data import BrodenDataset
    from unitscope.describe.run import Options, describe_run
    from unitscope.dissect import dissect
    from unitscope.models import get_info
    from unitscope.world import make_world

    world = make_world(tmp_path_factory.mktemp("world") / "w64", n=30, size=64, seed=3, workers=1, progress=False)
    out = {}
    for planted in ("audited", "reference"):
        model = colour_layers(str(world), planted)
        ds = BrodenDataset(world, transform=get_info(model).transform())
        run = tmp_path_factory.mktemp(planted) / "run"
        dissect(
            model,
            ds,
            ["feat1", "feat2"],
            run,
            quantile=0.3,
            topk=4,
            batch_size=10,
            progress=False,
            keep_cache=True,
            null_draws=0,
            exemplar_images=False,
            config={"data": str(world)},
        )
        describe_run(run, opts=Options(quantile=0.5, draws=20, progress=False))
        out[planted] = run
    return out


def test_planted_units_are_counted_exactly(runs):
    rows = count_units(runs["audited"], "red")
    got = {r["layer"]: (r["units"], r["detectors"], r["described"], r["significant"]) for r in rows}
    assert got == {"feat1": (3, 2, 2, None), "feat2": (4, 1, 1, None)}  # no p-values without null draws
    ref = {r["layer"]: (r["detectors"], r["described"]) for r in count_units(runs["reference"], "red")}
    assert ref == {"feat1": (1, 1), "feat2": (0, 0)}
    blue = {r["layer"]: (r["detectors"], r["described"]) for r in count_units(runs["audited"], "blue")}
    assert blue == {"feat1": (0, 0), "feat2": (2, 2)}


def test_counts_go_to_the_catalog_and_the_report(runs):
    rows = audit_counts(runs["audited"], runs["reference"], "Red")
    assert [(r["role"], r["layer"], r["detectors"]) for r in rows] == [
        ("audited", "feat1", 2),
        ("audited", "feat2", 1),
        ("reference", "feat1", 1),
        ("reference", "feat2", 0),
    ]
    write_counts(runs["audited"], rows)
    with Catalog(runs["audited"] / "catalog.sqlite", create=False) as cat:
        stored = cat.rows("audit_counts", concept="red", role="reference")
        assert {r["layer"]: r["detectors"] for r in stored} == {"feat1": 1, "feat2": 0}
        assert {r["name"] for r in stored} == {"colour_layers_reference"}
        from unitscope.facts import unit_facts

        f = unit_facts(cat, "colour_layers_audited", "feat1", 0)["audit_counts"]
        assert f.rows["audits"] == [{"concept": "red", "detects": True, "describes": True}]
        assert "audit_counts" not in unit_facts(cat, "colour_layers_audited", "feat1", 2)  # a green unit
    text = format_counts(rows)
    assert "feat1" in text.splitlines()[1] and text.splitlines()[1].split()[2:5] == ["2", "-", "2"]
    from unitscope.report import write_report

    write_report(runs["audited"], title="audit")
    layers = json.loads((runs["audited"] / "report.json").read_text())["layers"]
    part = next(ly for ly in layers if ly["layer"] == "feat1")["parts"]["audit_counts"]["concepts"][0]
    assert part["concept"] == "red" and part["reference"] == "colour_layers_reference"
    assert [(t["audited"]["detectors"], t["reference"]["detectors"]) for t in part["table"]] == [(2, 1), (1, 0)]
    second = next(ly for ly in layers if ly["layer"] == "feat2")["parts"]["audit_counts"]["concepts"][0]
    assert "table" not in second and second["here"]["audited"]["described"] == 1


def test_unknown_concept_is_a_clear_error(runs):
    with pytest.raises(ValueError, match="did you mean red"):
        count_units(runs["audited"], "redd")


def test_significant_detectors_follow_benjamini_hochberg(tmp_path):
    """Hand-written dissection rows: 4 units labelled red and detectors, p-values 0.001, 0.004, 0.03, 0.5 in a
    layer of 5 (the fifth: 0.0001, another concept). BH at 0.01 over 5 keeps p <= 0.01 * rank / 5: 0.0001
    (rank 1), 0.001 (2: 0.004), 0.004 (3: 0.006), not 0.03 -- so 2 of the red detectors are significant."""
    run = tmp_path / "run"
    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace("layers", [{"model": "m", "layer": "l", "units": 5, "iou_threshold": 0.04}], model="m")
        cat.replace(
            "dissection",
            [
                {
                    "model": "m",
                    "layer": "l",
                    "unit": u,
                    "concept": c,
                    "category": "color",
                    "iou": 0.2,
                    "is_detector": 1,
                    "threshold": 1.0,
                    "p_value": p,
                }
                for u, (c, p) in enumerate(
                    [("red", 0.001), ("red", 0.004), ("red", 0.03), ("red", 0.5), ("sky", 0.0001)]
                )
            ],
            model="m",
        )
    (r,) = count_units(run, "red")
    assert (r["detectors"], r["significant"], r["described"]) == (4, 2, 0)


def test_cli_count_reuses_described_runs(runs, tmp_path, capsys):
    import shutil

    from unitscope.cli import main

    out = tmp_path / "audit"
    shutil.copytree(runs["audited"], out / "model")
    shutil.copytree(runs["reference"], out / "reference")
    assert (
        main(
            [
                "audit",
                "count",
                "--model",
                f"{MODELS}:colour_layers",
                "--reference",
                "x",
                "--concept",
                "blue",
                "--out",
                str(out),
                "--data",
                "unused",
                "--no-progress",
            ]
        )
        == 0
    )
    said = capsys.readouterr().out
    assert "feat2" in said and "audit_counts" in said
    with Catalog(out / "model" / "catalog.sqlite", create=False) as cat:
        assert {(r["role"], r["layer"]): r["detectors"] for r in cat.rows("audit_counts", concept="blue")} == {
            ("audited", "feat1"): 0,
            ("audited", "feat2"): 2,
            ("reference", "feat1"): 0,
            ("reference", "feat2"): 2,
        }
