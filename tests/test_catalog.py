import sqlite3

import numpy as np
import pytest

from unitscope.catalog import SCHEMA_VERSION, Catalog, layer_keys, layer_summary


def _diss(unit, concept="dog", iou=0.1, **kw):
    return dict(unit=unit, concept=concept, category="object", iou=iou, is_detector=iou > 0.04, threshold=0.5, **kw)


def test_create_replace_query(tmp_path):
    path = tmp_path / "run" / "catalog.sqlite"
    with Catalog(path) as cat:
        assert {
            "layers",
            "dissection",
            "dissection_category",
            "exemplars",
            "unit_images",
            "rotations",
            "concepts",
        } <= set(cat.tables())
        cat.replace("dissection", [_diss(1, "cat", 0.02), _diss(0, "dog", np.float32(0.25))], model="m", layer="l4")
        cat.replace("dissection", [_diss(0, "car", 0.3)], model="m", layer="l3")
        rows = cat.rows("dissection", model="m", layer="l4")
        assert [r["unit"] for r in rows] == [0, 1]  # ordered by primary key
        assert rows[0]["concept"] == "dog" and rows[0]["iou"] == pytest.approx(0.25)
        assert rows[0]["is_detector"] == 1 and rows[1]["is_detector"] == 0
        # replace only touches the rows matching where
        cat.replace("dissection", [_diss(5, "tree", 0.07)], model="m", layer="l4")
        assert [(r["layer"], r["unit"]) for r in cat.rows("dissection")] == [("l3", 0), ("l4", 5)]
        got = cat.query("SELECT unit FROM dissection WHERE layer = ? AND concept = ? AND is_detector", ("l4", "tree"))
        assert got == [{"unit": 5}]
    # reopening keeps rows and the schema version
    with Catalog(path, create=False) as cat:
        assert len(cat.rows("dissection")) == 2
        assert cat.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION


def test_demo_query_uses_index(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        plan = cat.query(
            "EXPLAIN QUERY PLAN SELECT unit FROM dissection WHERE model = 'm' AND layer = 'l' AND concept = 'dog'"
        )
        assert any("dissection_concept" in r["detail"] for r in plan), plan


def test_replace_is_transactional(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        cat.replace("dissection", [_diss(0), _diss(1)], model="m", layer="l")
        before = cat.dump()
        # the duplicate primary key fails the second insert after the delete already ran
        with pytest.raises(sqlite3.IntegrityError):
            cat.replace("dissection", [_diss(7), _diss(7)], model="m", layer="l")
        assert cat.dump() == before
        with pytest.raises(TypeError):
            cat.replace("dissection", [_diss(8), _diss(9, threshold=object())], model="m", layer="l")
        assert cat.dump() == before


def test_transaction_groups_writes(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        cat.replace("dissection", [_diss(0)], model="m", layer="l")
        before = cat.dump()
        with pytest.raises(RuntimeError, match="crash"):
            with cat.transaction():
                cat.replace("layers", [dict(units=1)], model="m", layer="l")
                cat.replace("dissection", [_diss(0, "cat")], model="m", layer="l")
                raise RuntimeError("crash")
        assert cat.dump() == before
        with cat.transaction():
            cat.replace("layers", [dict(units=1)], model="m", layer="l")
            with pytest.raises(sqlite3.IntegrityError):  # a failed replace inside undoes only itself
                cat.replace("dissection", [_diss(3), _diss(3)], model="m", layer="l")
            cat.replace("dissection", [_diss(0, "cat")], model="m", layer="l")
        assert [r["units"] for r in cat.rows("layers")] == [1]
        assert [r["concept"] for r in cat.rows("dissection")] == ["cat"]
    # and the data reached the file
    with Catalog(tmp_path / "c.sqlite", create=False) as cat:
        assert [r["concept"] for r in cat.rows("dissection")] == ["cat"]


def test_unknown_columns_and_tables(tmp_path):
    with Catalog(tmp_path / "c.sqlite") as cat:
        with pytest.raises(ValueError, match=r"\['colour'\] not in table 'dissection'.*concept"):
            cat.replace("dissection", [dict(_diss(0), colour="red")], model="m", layer="l")
        with pytest.raises(ValueError, match="where columns"):
            cat.replace("dissection", [], modle="m")
        with pytest.raises(ValueError, match="lacks key columns"):
            cat.replace("dissection", [{"concept": "dog"}], model="m", layer="l")
        with pytest.raises(ValueError, match="layer='l3' but replace"):
            cat.replace("dissection", [dict(_diss(0), layer="l3")], model="m", layer="l")
        with pytest.raises(KeyError, match="no table 'dissections'"):
            cat.rows("dissections")
    with pytest.raises(FileNotFoundError, match="missing.sqlite"):
        Catalog(tmp_path / "missing.sqlite", create=False)


def test_dump_is_stable(tmp_path):
    rows = [_diss(u, iou=u / 10) for u in range(5)]
    with Catalog(tmp_path / "a.sqlite") as a, Catalog(tmp_path / "b.sqlite") as b:
        a.replace("dissection", rows, model="m", layer="l")
        b.replace("dissection", rows[::-1], model="m", layer="l")
        a.replace("concepts", [{"name": "dog", "category": "object"}, {"name": "red", "category": "color"}])
        b.replace("concepts", [{"name": "red", "category": "color"}, {"name": "dog", "category": "object"}])
        da, db = a.dump(), b.dump()
        assert da == db
        assert list(da) == sorted(da)
        assert [r["unit"] for r in da["dissection"]] == [0, 1, 2, 3, 4]
        assert [r["name"] for r in da["concepts"]] == ["dog", "red"]
        b.replace("dissection", [_diss(0, iou=0.9)], model="m", layer="l")
        assert b.dump() != da


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(ValueError, match="upgrade unitscope"):
        Catalog(path)


def test_layer_summary(synthetic_run):
    with Catalog(synthetic_run / "catalog.sqlite") as cat:
        assert layer_keys(cat) == [("toy", "layer3"), ("toy", "layer4")]
        s = layer_summary(cat, "toy", "layer4")
        assert (s["units"], s["detectors"], s["unique_concepts"]) == (20, 13, 9)
        assert [(c["category"], c["detectors"], c["unique_concepts"]) for c in s["categories"]] == [
            ("object", 8, 4),
            ("scene", 1, 1),
            ("part", 2, 2),
            ("material", 1, 1),
            ("color", 1, 1),
        ]


def test_plain_converts_by_type_the_same_the_second_time():
    """``_plain`` remembers each scalar type's conversion: the second value of a type converts as the first."""
    import numpy as np
    import torch

    from unitscope.catalog import _plain

    values = [None, "a", b"b", True, np.bool_(False), 3, np.int64(4), np.float32(0.5), 2.5, torch.tensor(3)]
    values += [np.array(2.5), torch.tensor(True), np.uint8(7)]
    want = [None, "a", b"b", 1, 0, 3, 4, 0.5, 2.5, 3, 2.5, 1, 7]
    for _ in range(2):
        got = [_plain(v) for v in values]
        assert got == want and [type(g) for g in got] == [type(w) for w in want]
    with pytest.raises(TypeError, match="cannot store"):
        _plain(object())


def test_replace_columns_writes_the_rows_replace_writes(tmp_path):
    rows = [
        _diss(u, concept, np.float32(iou)) for u, concept, iou in [(0, "dog", 0.25), (1, None, 0.0), (2, "sky", 0.5)]
    ]
    with Catalog(tmp_path / "a.sqlite") as a, Catalog(tmp_path / "b.sqlite") as b:
        a.replace("dissection", rows, model="m", layer="l")
        a.replace("dissection", [_diss(0, "car")], model="m", layer="other")
        b.replace("dissection", [_diss(0, "car")], model="m", layer="other")
        b.replace("dissection", [_diss(9)], model="m", layer="l")  # replaced, as by replace
        columns = {c: [r[c] for r in rows] for c in rows[0]}
        columns["unit"] = np.arange(3)  # an array: its tolist()
        b.replace_columns("dissection", columns, model="m", layer="l")  # NumPy scalars: converted
        assert a.dump() == b.dump()
        assert [type(r["iou"]) for r in b.rows("dissection", layer="l")] == [float] * 3
        with pytest.raises(ValueError, match="differ in length"):
            b.replace_columns("dissection", {"unit": [0, 1], "iou": [0.1]}, model="m", layer="l")
        with pytest.raises(ValueError, match=r"columns \['colour'\] not in table"):
            b.replace_columns("dissection", {"unit": [0], "colour": ["red"]}, model="m", layer="l")
        with pytest.raises(ValueError, match="lack key column 'unit'"):
            b.replace_columns("dissection", {"unit": [0, None]}, model="m", layer="l")
        with pytest.raises(ValueError, match="lack key column 'layer'"):
            b.replace_columns("dissection", {"unit": [0]}, model="m")
        with pytest.raises(ValueError, match=r"\['layer'\] of 'dissection' are given both"):
            b.replace_columns("dissection", {"unit": [0], "layer": ["l"]}, model="m", layer="l")
        assert a.dump() == b.dump()  # a refused call changed nothing
        b.replace_columns("dissection", {}, model="m", layer="l")  # no rows: the layer's rows removed
        assert b.rows("dissection", layer="l") == []
