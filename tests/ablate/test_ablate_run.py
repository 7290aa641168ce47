"""`unitscope ablate` end to end on a colour classifier with set weights: catalog rows, resume,
the report part, attack budgets, and no hook left behind (also after an exception)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers.ablate_models import colour_classifier, write_colour_folder
from unitscope.ablate.attack import logit_objective, pgd, pixel_distance, unit_objective
from unitscope.ablate.cut import HookCut, cut_model
from unitscope.catalog import Catalog
from unitscope.cli import main

MODEL = str(Path(__file__).parents[1] / "helpers" / "ablate_models.py") + ":colour_classifier"
TWIN = str(Path(__file__).parents[1] / "helpers" / "ablate_models.py") + ":twin_classifier"


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    write_colour_folder(root / "data")
    args = [
        "ablate",
        "all",
        "--model",
        MODEL,
        "--layer",
        "act",
        "--data",
        str(root / "data"),
        "--out",
        str(root / "run"),
        "--seeds",
        "2",
        "--attack-images",
        "3",
        "--attack-steps",
        "3",
        "--ns",
        "1,2",
        "--steer-units",
        "1",
        "--twin",
        TWIN,
        "--no-progress",
    ]
    assert main(args) == 0
    return root, args


def test_importance_rows_are_exact(colour_run):
    root, _ = colour_run
    with Catalog(root / "run" / "catalog.sqlite") as cat:
        rows = {(r["unit"], r["class"]): r["accuracy_drop"] for r in cat.rows("unit_importance")}
        layer = cat.rows("ablation_layers")[0]
        sel = {r["unit"]: (r["selectivity"], r["top_class"]) for r in cat.rows("unit_selectivity")}
    assert len(rows) == 4 * 3
    # split by position (i % 5 == 4 is val): 24 train images, 8 per class
    assert (layer["train_images"], layer["val_images"], layer["base_accuracy"], layer["cut"]) == (24, 6, 1.0, "fx")
    assert rows[(1, "green")] == 1.0 and rows[(2, "red")] == 1.0
    assert rows[(0, "blue")] == 0.0  # blue images without their unit fall back to "blue" (all-zero logits)
    with Catalog(root / "run" / "catalog.sqlite") as cat:
        prob = {(r["unit"], r["class"]): r["probability_drop"] for r in cat.rows("unit_importance")}
    # ... but their probability of blue falls from softmax(4m, 0, 0) to 1/3: the tie-break ranks unit 0 first
    assert prob[(0, "blue")] > 0.3 and prob[(3, "blue")] == 0.0
    assert all(v == 0.0 for (u, c), v in rows.items() if (u, c) not in ((1, "green"), (2, "red")))
    # each colour unit fires for one class only: SI = (m - 0) / (m + 0) = 1; the dead unit 0
    assert [round(sel[u][0], 6) for u in range(4)] == [1.0, 1.0, 1.0, 0.0]
    assert [sel[u][1] for u in range(3)] == ["blue", "green", "red"]


def test_steering_and_top_n_rows(colour_run):
    root, _ = colour_run
    with Catalog(root / "run" / "catalog.sqlite") as cat:
        steer = {(r["source"], r["target"]): r for r in cat.rows("ablation_steering")}
        topn = {(r["class"], r["n"], r["kind"]): r for r in cat.rows("ablation_topn")}
        curves = cat.rows("ablation_curves", model="colours", mode="zero", fraction=0.0)
    # green's unit off, red's unit to its 99th percentile: every green val image becomes red
    assert steer[("green", "red")]["flip_rate"] == 1.0 and steer[("green", "red")]["base_rate"] == 0.0
    assert topn[("red", 1, "remove")]["class_accuracy"] == 0.0 and topn[("red", 1, "remove")]["other_accuracy"] == 1.0
    assert [r["accuracy"] for r in curves] == [1.0, 1.0]


def test_attacks_stay_inside_their_budget(colour_run):
    root, _ = colour_run
    with Catalog(root / "run" / "catalog.sqlite") as cat:
        rows = cat.rows("ablation_attacks")
        examples = cat.rows("ablation_examples", kind="attack")
    assert {(r["method"], round(r["epsilon"] * 255)) for r in rows} == {
        (m, e) for m in ("units", "logits") for e in (4, 8)
    }
    for r in rows:
        assert 0 < r["max_linf"] <= r["epsilon"] + 1e-6
        if r["method"] == "units":
            # each image's own colour unit falls by eps; the target's unit sits at 0, where the ReLU
            # passes no gradient, so it cannot be raised
            assert r["source_shift"] == pytest.approx(-r["epsilon"], abs=1e-5)
            assert r["target_shift"] == 0.0
    assert examples and all((root / "run" / e["path"]).is_file() for e in examples)


def test_rerun_resumes_without_recomputing(colour_run):
    root, args = colour_run
    stages = sorted((root / "run" / "ablation").rglob("*.json"))
    before = {p: p.stat().st_mtime_ns for p in stages if p.name != "config.json"}
    assert main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_report_shows_curves_and_key_units_with_dissection_labels(colour_run, tmp_path):
    import shutil

    from unitscope.report import write_report

    root, _ = colour_run
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace(
            "dissection",
            [{"unit": 2, "concept": "red", "category": "color", "iou": 0.5, "is_detector": 1, "threshold": 0.1}],
            model="colours",
            layer="act",
        )
    write_report(run)
    report = json.loads((run / "report.json").read_text())
    layer = next(layer for layer in report["layers"] if layer["layer"] == "act")
    part = layer["parts"]["ablation"]
    assert part["curves"]["zero"]["mean"][0] == 1.0 and part["curves"]["zero"]["seeds"] == 2
    red = next(c for c in part["importance"] if c["class"] == "red")
    assert red["units"][0] == {"unit": 2, "drop": 1.0, "concept": "red", "image": None}
    card = next(c for c in layer["cards"] if c["unit"] == 2)["parts"]["ablation"]
    assert card["drops"][0] == {"class": "red", "drop": 1.0} and card["top_class"] == "red"
    assert "ablation" in report["part_order"]
    # the twin's curves are drawn on the same chart: at fraction 0 it is as accurate as the model
    assert part["twins"]["colours_twin"]["zero"]["mean"][0] == 1.0


def test_pgd_stays_in_budget_and_raises_its_objective():
    torch.manual_seed(0)
    model = colour_classifier()
    x = torch.rand(4, 3, 8, 8) * 0.5
    target = torch.tensor([0, 1, 2, 0])
    objective = unit_objective(model, "act", torch.tensor([[1], [2], [0], [1]]), target.reshape(-1, 1))
    for eps in (4 / 255, 8 / 255):
        adv = pgd(x, target, objective, eps=eps, mean=(0, 0, 0), std=(1, 1, 1), steps=5)
        assert float(pixel_distance(x, adv, (1, 1, 1)).max()) <= eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1
        with torch.no_grad():
            assert (objective(adv, target) > objective(x, target)).all()
    adv = pgd(x, target, logit_objective(model), eps=8 / 255, mean=(0, 0, 0), std=(1, 1, 1), steps=5)
    assert float(pixel_distance(x, adv, (1, 1, 1)).max()) <= 8 / 255 + 1e-6
    assert hook_count(model) == 0


def test_logit_objective_of_a_class_with_several_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    x, target = torch.rand(3, 3, 2, 2), torch.tensor([0, 1, 1])
    p = model(x).softmax(1)
    # outputs 0, 2 stand for class 0; 1, 3 for class 1; output 4 for nothing
    got = logit_objective(model, torch.tensor([0, 1, 0, 1, 2]))(x, target)
    want = torch.log(torch.stack([p[0, 0] + p[0, 2], p[1, 1] + p[1, 3], p[2, 1] + p[2, 3]]))
    torch.testing.assert_close(got, want)
    one_to_one = logit_objective(model, torch.arange(5))(x, torch.tensor([4, 0, 2]))
    torch.testing.assert_close(one_to_one, logit_objective(model)(x, torch.tensor([4, 0, 2])))


class Failing(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()
        self.fail = False

    def forward(self, x):
        h = self.act(x)
        if self.fail:
            raise RuntimeError("boom")
        return h.mean((2, 3))


def test_no_hook_remains_after_an_exception():
    model = Failing()
    x = torch.rand(2, 3, 4, 4)
    cut = HookCut(model, "act")
    cache = cut.head(x)
    model.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        cut.tail(cache)
    assert hook_count(model) == 0
    objective = unit_objective(model, "act", torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.long))
    model.act.register_forward_hook(lambda *a: (_ for _ in ()).throw(ValueError("inside")))
    with pytest.raises(ValueError, match="inside"):
        pgd(x, torch.zeros(2, dtype=torch.long), objective, eps=0.01, mean=(0, 0, 0), std=(1, 1, 1), steps=1)
    model.act._forward_hooks.clear()
    assert hook_count(model) == 0
    assert cut_model(Failing(), "act").exact_tail  # fx traces it: the flag is a plain attribute


def test_unknown_layer_and_mismatched_classes_fail_clearly(tmp_path, capsys):
    write_colour_folder(tmp_path / "data", per_class=2)
    base = ["ablate", "eval", "--model", MODEL, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    assert main(base + ["--layer", "actt", "--units", "0"]) == 2
    assert "close matches: act" in capsys.readouterr().err.lower()
    os.rename(tmp_path / "data" / "red", tmp_path / "data" / "rouge")
    assert main(base + ["--layer", "act", "--units", "0"]) == 2
    assert "rouge" in capsys.readouterr().err


def test_class_map_table_lets_a_class_stand_for_several_outputs(tmp_path, capsys):
    """`--class-map FILE`: "cool" is the blue and green outputs, "warm" the red one."""
    import shutil

    write_colour_folder(tmp_path / "colours", per_class=5)
    for cls, parts in (("cool", ("blue", "green")), ("warm", ("red",))):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for part in parts:
            for f in (tmp_path / "colours" / part).iterdir():
                shutil.copy(f, tmp_path / "data" / cls / f"{part}_{f.name}")
    (tmp_path / "table.txt").write_text("cool 0-1   # blue, green\nwarm 2\n")
    args = [
        "ablate",
        "eval",
        "--model",
        MODEL,
        "--layer",
        "act",
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "run"),
        "--units",
        "2",
        "--no-progress",
    ]
    assert main(args) == 2  # without the table the folder names are not the model's classes
    assert "--class-map" in capsys.readouterr().err
    assert main(args + ["--class-map", str(tmp_path / "table.txt")]) == 0
    out = capsys.readouterr().out
    # red images without unit 2 have all-zero logits: output 0 (blue) wins, which is "cool"
    assert "cool           accuracy 100.0% -> 100.0%" in out
    assert "warm           accuracy 100.0% ->   0.0%" in out


def test_ablate_layer_returns_one_result_with_a_summary(tmp_path):
    from unitscope.ablate import AblationResult, ablate_layer
    from unitscope.ablate.split import LabelledData
    from unitscope.models import get_info

    write_colour_folder(tmp_path / "data")
    model = colour_classifier()
    data = LabelledData(tmp_path / "data", transform=get_info(model).transform())
    r = ablate_layer(
        model,
        "act",
        data,
        tmp_path / "run",
        seeds=2,
        ns=[1],
        progress=False,
        stages=("importance", "top_n", "selectivity"),
    )
    assert isinstance(r, AblationResult) and (r.units, r.class_names) == (4, ["blue", "green", "red"])
    # each colour's own unit first (blue's unit 0 through the probability tie-break: no prediction changes)
    assert {c: units[0] for c, units in r.key_units().items()} == {"blue": 0, "green": 1, "red": 2}
    means = r.top_n_means()
    assert means["none", 0] == 1.0 and means["remove", 1] == pytest.approx(1 / 3)  # green, red lose all
    assert r.summary() == (
        "colours act: 4 units, train accuracy 100.0% (24 images); top 1 of each class removed: "
        f"class accuracy 100.0% -> 33.3% (random 1: {100 * means['random', 1]:.1f}%); "
        "mean class selectivity 0.750"
    )
    page = r._repr_html_()
    assert "<td>green</td><td>#1 (100.0%)" in page and __import__("html").escape(r.summary()) in page
    with pytest.raises(ValueError, match="unknown ablation stages"):
        ablate_layer(model, "act", data, tmp_path / "run", stages=("curve",))
