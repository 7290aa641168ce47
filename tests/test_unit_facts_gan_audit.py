"""The generator (``gan``) and editing (``audit``) analyses' unit facts, from hand-written catalog
rows: exact facts per unit, the same through ``layer_facts``, ``open_run(...).unit()``, serve's
``/api/unit`` facts block (``RunInfo``) and the report's cards, and nothing for a unit they do not name."""

from __future__ import annotations

import json

import pytest

from unitscope.catalog import Catalog
from unitscope.facts import UnitFacts, layer_facts, unit_facts
from unitscope.results import open_run
from unitscope.serve.runinfo import RunInfo

RUN_LAYERS = {"relu": [("red", 0.3), ("dog", 0.01), ("blue", 0.2), ("striped", 0.05)]}
WHERE = dict(model="colour", layer="relu")


@pytest.fixture
def run(make_run, tmp_path):
    """A dissected run; the generator analysis has rows for units 0..2 (ACE for 'door' on 0..2,
    artifacts on 0..2), a removal grid with unit 0 off, an artifacts grid with units 2 and 0 off and
    an older grid without its units; the editing analysis found units 1 and 3 for two queries."""
    run = make_run(tmp_path / "run", model="colour", layers=RUN_LAYERS, rotations={})
    import unitscope.audit.tables  # noqa: F401  (declares the tables)
    import unitscope.gan.tables  # noqa: F401

    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace(
            "gan_unit_effects",
            [
                {"unit": 0, "iou": 0.5, "iou_rank": 1, "ace_remove": 0.9, "ace_insert": 0.75, "ace_rank": 1},
                {"unit": 1, "iou": 0.25, "iou_rank": 2, "ace_remove": 0.125, "ace_insert": 0.5, "ace_rank": 3},
                {"unit": 2, "iou": 0.0, "iou_rank": 3, "ace_remove": 0.25, "ace_insert": float("nan"), "ace_rank": 2},
            ],
            concept="door",
            **WHERE,
        )
        cat.replace(
            "gan_unit_effects",
            [{"unit": 0, "iou": 0.125, "iou_rank": 2, "ace_remove": 0.5, "ace_insert": 0.25, "ace_rank": 1}],
            concept="bed",
            **WHERE,
        )
        cat.replace(
            "gan_artifacts",
            [
                {"unit": 0, "gain": 0.01, "gain_all": 0.002, "rank": 2},
                {"unit": 1, "gain": 0.0, "gain_all": 0.0, "rank": 3},
                {"unit": 2, "gain": 0.05, "gain_all": 0.02, "rank": 1},
            ],
            **WHERE,
        )
        cat.replace(
            "gan_examples",
            [{"rank": 0, "path": "gan/relu/removal_door.png", "caption": "top 1 off", "units": json.dumps([0])}],
            kind="removal:door",
            **WHERE,
        )
        cat.replace(
            "gan_examples",
            [{"rank": 0, "path": "gan/relu/artifacts.png", "caption": "2 and 0 off", "units": json.dumps([2, 0])}],
            kind="artifacts",
            **WHERE,
        )
        cat.replace(
            "gan_examples",
            [{"rank": 0, "path": "gan/relu/insertion_door.png", "caption": "older run", "units": None}],
            kind="insertion:door",
            **WHERE,
        )
        unit = dict(layer="relu", formula="sign", match=0.8)
        cat.replace(
            "edit_units",
            [
                {**unit, "unit": 1, "rank": 0, "description": "red signs", "single_accuracy": 0.75, "removed": 1},
                {**unit, "unit": 3, "rank": 1, "description": "stripes", "single_accuracy": 0.5, "removed": 0},
            ],
            model="colour",
            query="sign",
        )
        cat.replace(
            "edit_units",
            [
                {
                    **unit,
                    "unit": 1,
                    "rank": 2,
                    "description": "red signs",
                    "match": 0.6,
                    "single_accuracy": 0.625,
                    "removed": 0,
                }
            ],
            model="colour",
            query="red",
        )
        cat.replace(
            "edit_results",
            [{"kind": "none", "draw": 0, "units": 0, "clean": 0.9, "agree": 0.95, "conflict": 0.3}],
            model="colour",
            query="sign",
        )
    return run


GAN_0 = UnitFacts(
    rows={
        "effects": [
            {"concept": "bed", "iou": 0.125, "iou_rank": 2, "ace_remove": 0.5, "ace_insert": 0.25, "ace_rank": 1},
            {"concept": "door", "iou": 0.5, "iou_rank": 1, "ace_remove": 0.9, "ace_insert": 0.75, "ace_rank": 1},
        ],
        "artifact_gain": 0.01,
        "artifact_gain_all": 0.002,
        "artifact_rank": 2,
        "grids": {"artifacts": "2 and 0 off", "removal:door": "top 1 off"},
    },
    images={"artifacts": "gan/relu/artifacts.png", "removal:door": "gan/relu/removal_door.png"},
)
GAN_2 = UnitFacts(
    rows={
        "effects": [
            {"concept": "door", "iou": 0.0, "iou_rank": 3, "ace_remove": 0.25, "ace_insert": None, "ace_rank": 2}
        ],
        "artifact_gain": 0.05,
        "artifact_gain_all": 0.02,
        "artifact_rank": 1,
        "grids": {"artifacts": "2 and 0 off"},
    },
    images={"artifacts": "gan/relu/artifacts.png"},
)
AUDIT_1 = UnitFacts(
    label="red signs",
    rows={
        "queries": [
            {
                "query": "red",
                "rank": 2,
                "description": "red signs",
                "formula": "sign",
                "match": 0.6,
                "single_accuracy": 0.625,
                "removed": False,
            },
            {
                "query": "sign",
                "rank": 0,
                "description": "red signs",
                "formula": "sign",
                "match": 0.8,
                "single_accuracy": 0.75,
                "removed": True,
            },
        ],
        "removed_by": ["sign"],
    },
)


def test_gan_and_audit_facts_of_each_unit(run):
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        facts = {u: unit_facts(cat, "colour", "relu", u) for u in range(4)}
        every = layer_facts(cat, "colour", "relu")
    assert facts[0]["gan"] == GAN_0 and facts[2]["gan"] == GAN_2
    assert facts[1]["gan"] == UnitFacts(
        rows={
            "effects": [
                {"concept": "door", "iou": 0.25, "iou_rank": 2, "ace_remove": 0.125, "ace_insert": 0.5, "ace_rank": 3}
            ],
            "artifact_gain": 0.0,
            "artifact_gain_all": 0.0,
            "artifact_rank": 3,
        }
    )
    assert "gan" not in facts[3]  # no rows about unit 3
    assert facts[1]["audit"] == AUDIT_1
    assert facts[3]["audit"] == UnitFacts(
        label="stripes",
        rows={
            "queries": [
                {
                    "query": "sign",
                    "rank": 1,
                    "description": "stripes",
                    "formula": "sign",
                    "match": 0.8,
                    "single_accuracy": 0.5,
                    "removed": False,
                }
            ],
            "removed_by": [],
        },
    )
    assert "audit" not in facts[0] and "audit" not in facts[2]
    assert list(facts[1]) == ["dissection", "gan", "audit"]  # part order 0, 35, 40
    assert {u: every[u].get("gan") for u in range(4)} == {u: facts[u].get("gan") for u in range(4)}
    assert {u: every[u].get("audit") for u in range(4)} == {u: facts[u].get("audit") for u in range(4)}


def test_the_readers_show_gan_and_audit_facts(run):
    # open_run: the first label is the dissection's (unit 1's "dog" is no detector, so the edit's description)
    u = open_run(run).unit("relu", 1)
    assert u["audit"] == AUDIT_1 and u.label == "red signs" and "Editing by description" in u._repr_html_()
    assert open_run(run).unit("relu", 0)["gan"] == GAN_0 and open_run(run).unit("relu", 0).label == "red"

    # serve's /api/unit facts block: titles, JSON values, images and links as /run/ URLs
    body = RunInfo(run, model="colour").unit("relu", 0)
    assert body["facts"]["gan"] == {
        "title": "Generator effects",
        "label": None,
        **{k: v for k, v in GAN_0.to_json(lambda p: "/run/" + p).items() if k != "label"},
    }
    assert body["facts"]["gan"]["images"]["removal:door"] == "/run/gan/relu/removal_door.png"
    assert RunInfo(run, model="colour").unit("relu", 3)["facts"]["audit"]["label"] == "stripes"

    # the report: the gan cards carry the grids their unit is edited in (the unit page draws them)
    from unitscope.report import write_report

    write_report(run)
    (layer,) = json.loads((run / "report.json").read_text())["layers"]
    cards = {c["unit"]: c["parts"] for c in layer["cards"]}
    assert cards[0]["gan"]["grids"] == [
        {"kind": "artifacts", "path": "gan/relu/artifacts.png", "caption": "2 and 0 off"},
        {"kind": "removal:door", "path": "gan/relu/removal_door.png", "caption": "top 1 off"},
    ]
    assert "grids" not in cards[1]["gan"]
    assert {q["query"]: q["removed"] for q in cards[1]["audit"]["queries"]} == {"red": 0, "sign": 1}


def test_bases_needs_no_reader_its_directions_are_dissected_layers(make_run, tmp_path):
    """``basis_metrics`` has no unit rows; a basis' directions are the pseudo-layer ``LAYER#BASIS``
    of the dissection tables, so dissection's facts describe them."""
    run = make_run(
        tmp_path / "run", model="colour", layers={"relu": [("red", 0.3)], "relu#pca": [("blue", 0.2)]}, rotations={}
    )
    from unitscope.bases.tables import TABLE

    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace(
            TABLE, [{"basis_layer": "relu#pca", "basis": "pca", "spec": "pca", "directions": 1, "fvu": 0.5}], **WHERE
        )
        facts = unit_facts(cat, "colour", "relu#pca", 0)
    assert list(facts) == ["dissection"] and facts["dissection"].label == "blue"
