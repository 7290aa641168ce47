"""open_run: a run folder's tables as DataFrames (or rows) and an inline notebook view."""

import sys

import pytest
from conftest import SYNTHETIC_LAYERS

import unitscope


def test_open_run_tables_as_dataframes(synthetic_run):
    pd = pytest.importorskip("pandas")
    run = unitscope.open_run(synthetic_run)
    assert {"dissection", "exemplars", "layers", "rotations", "unit_images"} <= set(run.tables)
    df = run["dissection"]
    assert isinstance(df, pd.DataFrame) and len(df) == sum(len(u) for u in SYNTHETIC_LAYERS.values())
    layer4 = df[df.layer == "layer4"].sort_values("iou", ascending=False)
    assert list(layer4.concept[:3]) == ["dog", "car", "dog"] and layer4.iou.iloc[0] == 0.25
    q = run.query("SELECT COUNT(*) AS n FROM dissection WHERE is_detector AND layer = ?", ("layer4",))
    assert int(q.n[0]) == 13


def test_open_run_without_pandas_gives_rows(synthetic_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    rows = unitscope.open_run(synthetic_run)["rotations"]
    assert rows == [
        {"model": "toy", "layer": "layer4", "rotation": r, "detectors": d, "unique_concepts": n}
        for r, d, n in [(0, 13, 9), (1, 4, 3), (2, 5, 4)]
    ]


def test_notebook_view_inlines_the_top_units(synthetic_run):
    page = unitscope.open_run(synthetic_run)._repr_html_()
    assert "toy / layer4: 13 of 20 units are detectors, 9 unique concepts" in page
    assert "toy / layer3: 10 of 20 units are detectors, 5 unique concepts" in page
    assert page.count("data:image/jpeg;base64,") == 16  # 8 units per layer, each with its strip
    assert page.index("<td>0</td><td>dog") < page.index("<td>19</td><td>car")  # by IoU, descending


def test_open_run_names_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no catalog.sqlite"):
        unitscope.open_run(tmp_path)
