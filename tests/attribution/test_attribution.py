"""Attribution on a hand-weighted model with exact numbers; building blocks; the explain page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.featvis_models import attr
from unitscope.attribution import (
    channel_attribution,
    layer_to_layer,
    nmf_groups,
    semantic_dictionary,
    spatial_attribution,
)

# R = [[1, 2], [3, 4]], G = [[0, 1], [0, 2]] in the top-left 2x2 of a 2x4 image; zeros to the right
R = torch.tensor([[1.0, 2.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0]])
G = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
X = torch.stack([R, G, torch.zeros(2, 4)])[None]  # [1, 3, 2, 4]


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_spatial_attribution_exact_and_complete():
    model = attr()
    s = spatial_attribution(model, X, "feat", target=0)
    # logit 0 = 0.5 + mean(R) + 2 mean(G) over 8 positions: position p gets (R_p + 2 G_p) / 8
    assert torch.allclose(s[0], (R + 2 * G) / 8)
    logits = model(X)[0]
    assert torch.isclose(s.sum(), logits[0] - 0.5)  # linear after the layer: complete
    s1 = spatial_attribution(model, X, "feat", target=1)
    assert torch.allclose(s1[0], (3 * R - G) / 8) and torch.isclose(s1.sum(), logits[1])
    pooled = spatial_attribution(model, X, "pool", target=lambda out: out[:, 0] - out[:, 1])
    assert torch.allclose(pooled[0], torch.tensor([[(-2 * 10 + 3 * 3) / 8, 0.0]]))
    assert _hooks(model) == 0


def test_channel_attribution_plain_and_path_integrated():
    model = attr()
    c = channel_attribution(model, X, "feat", target=0)
    assert torch.allclose(c[0], torch.tensor([10 / 8, 2 * 3 / 8]))
    sq = attr(square=True)
    m = torch.tensor([10 / 8, 3 / 8])  # channel means
    plain = channel_attribution(sq, X, "feat", target=0)
    ig = channel_attribution(sq, X, "feat", target=0, steps=4)
    # f = m0^2 + 2 m1^2: grad x act = 2 w m^2 (twice the share); the path integral gives w m^2 exactly
    assert torch.allclose(plain[0], 2 * torch.tensor([1.0, 2.0]) * m**2)
    assert torch.allclose(ig[0], torch.tensor([1.0, 2.0]) * m**2)
    assert torch.isclose(ig.sum(), sq(X)[0, 0] - 0.5)  # completeness
    assert _hooks(sq) == 0


def test_layer_to_layer_positions():
    model = attr()
    a = layer_to_layer(model, X, "feat", "pool")  # [1, 2, 2, 4]
    assert a.shape == (1, 2, 2, 4)
    total = R + G
    expected_left = torch.zeros(2, 4)
    expected_left[:, :2] = total[:, :2] / 4
    assert torch.allclose(a[0, 0], expected_left) and torch.allclose(a[0, 1], torch.zeros(2, 4))
    assert _hooks(model) == 0
    with pytest.raises(ValueError, match="one image"):
        layer_to_layer(model, X.repeat(2, 1, 1, 1), "feat", "pool")


def test_attribution_removes_hooks_after_an_error():
    model = attr()
    with pytest.raises(ValueError, match=r"spatial \[N, C, H, W\]"):
        spatial_attribution(model, X, "fc", target=0)
    with pytest.raises(IndexError):
        spatial_attribution(model, X, "feat", target=7)
    assert _hooks(model) == 0


def test_semantic_dictionary_top_units():
    acts = torch.tensor([[[1.0, 0.0]], [[3.0, 0.0]], [[2.0, 5.0]]])  # [C=3, h=1, w=2]
    table = semantic_dictionary(acts, k=2, labels={1: "red"}, images={2: "featvis/L/2.png"})
    assert [[e["unit"] for e in cell] for cell in table[0]] == [[1, 2], [2, 0]]
    assert table[0][0][0] == {"unit": 1, "activation": 3.0, "label": "red"}
    assert table[0][1][0] == {"unit": 2, "activation": 5.0, "image": "featvis/L/2.png"}


def test_nmf_recovers_planted_groups():
    pytest.importorskip("sklearn")
    spatial = torch.zeros(2, 4, 4)
    spatial[0, :, :2] = 2.0  # group A on the left half
    spatial[1, :, 2:] = 1.0  # group B on the right half
    channels = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0, 4.0]])
    acts = torch.einsum("khw,kc->chw", spatial, channels)
    s, c = nmf_groups(acts, n_groups=2)
    assert torch.allclose(torch.einsum("khw,kc->chw", s, c), acts, atol=1e-3)
    assert torch.allclose(c[0], channels[1] / 5, atol=1e-3)  # B carries more activation: 5 x 8 vs 2.83 x 2 x 8
    assert torch.allclose(c[1], channels[0] / 2**0.5, atol=1e-3)
    assert torch.allclose(s[0], spatial[1] * 5, atol=1e-2)
    with pytest.raises(ValueError, match="non-negative"):
        nmf_groups(acts - 1)


# -- `unitscope explain` --------------------------------------------------------------------------

TINY = str(Path(__file__).parents[1] / "helpers" / "featvis_models.py") + ":tiny"


def _noise_png(path: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
    return path


def explain_run(tmp_path: Path, run: Path | None = None) -> Path:
    from unitscope.cli import main

    image = _noise_png(tmp_path / "noise.png")
    run = run or tmp_path / "run"
    assert (
        main(
            [
                "explain",
                str(image),
                "--model",
                TINY,
                "--layer",
                "relu1",
                "--out",
                str(run),
                "--cells",
                "4",
                "--icon-steps",
                "2",
                "--icon-size",
                "16",
                "--inversion-steps",
                "2",
                "--ig-steps",
                "2",
                "--groups",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    return run / "explain" / "noise"


def test_explain_writes_a_page_with_consistent_numbers(tmp_path):
    from tests.helpers.featvis_models import tiny
    from unitscope.models import get_info

    page = explain_run(tmp_path)
    data = json.loads((page / "explain.json").read_text())
    model = tiny()
    x = get_info(model).transform()(Image.open(tmp_path / "noise.png"))[None]
    target = int(model(x).argmax())
    assert data["target"]["index"] == target and data["shape"] == [4, 16, 16]
    spatial = spatial_attribution(model, x, "relu1", target)
    assert data["attribution_total"] == pytest.approx(float(spatial.sum()), rel=1e-5)
    plain = channel_attribution(model, x, "relu1", target)[0]
    for c in data["channels"]:
        assert c["attribution"] == pytest.approx(float(plain[c["unit"]]), rel=1e-5, abs=1e-7)
    assert len(data["dictionary"]) == 4 and all(len(row) == 4 and len(row[0]) == 3 for row in data["dictionary"])
    assert len(data["grid"]) == 16 and len(data["groups"]) == 2
    for rel in (
        ["input.png", "attribution.png", "inversion.png", *data["grid"]]
        + [g[k] for g in data["groups"] for k in ("map", "icon")]
        + [c["icon"] for c in data["channels"]]
    ):
        assert (page / rel).is_file(), rel
    html = (page / "index.html").read_text()
    assert "/*DATA*/" not in html and "http" not in html.replace("http-equiv", "")  # offline: no CDN


def test_explain_in_a_run_folder_uses_labels_and_visualisations(tmp_path, make_run):
    from unitscope.cli import main

    run = make_run(
        tmp_path / "run",
        model="tiny",
        layers={"relu1": [("red", 0.2), ("blue", 0.01), ("dog", 0.3), ("tree", 0.1)]},
        rotations={},
    )
    assert (
        main(
            [
                "visualize",
                "--model",
                TINY,
                "--layer",
                "relu1",
                "--units",
                "0-3",
                "--steps",
                "2",
                "--size",
                "16",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    page = explain_run(tmp_path, run)
    data = json.loads((page / "explain.json").read_text())
    labels = {0: "red", 2: "dog", 3: "tree"}  # unit 1 is no detector
    entries = [e for row in data["dictionary"] for cell in row for e in cell] + data["channels"]
    for e in entries:
        assert e.get("label") == labels.get(e["unit"])
        assert e["image"] == f"../../featvis/relu1/{e['unit']}.png" and (page / e["image"]).is_file()


def test_explain_records_its_top_units_as_unit_facts(tmp_path, make_run):
    """The page's top units by channel attribution become catalog rows, read back through the one
    reader of unit facts (open_run here; the report and /api/unit read the same)."""
    from unitscope.catalog import Catalog
    from unitscope.results import open_run

    run = make_run(tmp_path / "run", model="tiny", layers={"relu1": [("red", 0.2), ("blue", 0.01)]}, rotations={})
    page = explain_run(tmp_path, run)
    data = json.loads((page / "explain.json").read_text())
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        rows = cat.query("SELECT unit, rank, integrated, class_index FROM attribution_units ORDER BY rank")
    assert [(r["unit"], r["rank"], r["class_index"]) for r in rows] == [
        (c["unit"], i, data["target"]["index"]) for i, c in enumerate(data["channels"])
    ]
    assert [r["integrated"] for r in rows] == pytest.approx([c["integrated"] for c in data["channels"]])
    first = data["channels"][0]
    facts = open_run(run).unit("relu1", first["unit"])["attribution"]
    assert facts.rows["explained"] == [
        {
            "image": "noise",
            "class": data["target"]["name"],
            "rank": 0,
            "integrated": pytest.approx(first["integrated"]),
            "attribution": pytest.approx(first["attribution"]),
        }
    ]
    assert facts.links == {"explain noise": "explain/noise/index.html"} and (run / "explain/noise/index.html").is_file()
    explain_run(tmp_path, run)  # explained again: the image's rows are replaced, not added
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        assert len(cat.rows("attribution_units")) == len(data["channels"])


def test_explain_returns_a_result_with_a_summary(tmp_path):
    import html

    from tests.helpers.featvis_models import tiny
    from unitscope.attribution import ExplainResult, explain
    from unitscope.attribution.page import ExplainSettings

    image = _noise_png(tmp_path / "noise.png")
    settings = ExplainSettings(
        cells=4, icon_steps=2, icon_size=16, inversion_steps=2, ig_steps=2, groups=2, top_units=2, progress=False
    )
    r = explain(tiny(), image, "relu1", tmp_path / "run", settings)
    assert isinstance(r, ExplainResult) and r.page == tmp_path / "run" / "explain" / "noise"
    assert r["shape"] == [4, 16, 16] and set(r) >= {"classes", "target", "channels", "dictionary"}
    top, (a, b) = r["classes"][0], r["channels"]
    assert r.summary() == (
        f"tiny relu1 on noise.png: predicts {top['name']} ({100 * top['p']:.1f}%); for "
        f"{r['target']['name']} the top units by integrated gradients: #{a['unit']} "
        f"({a['integrated']:.3g}), #{b['unit']} ({b['integrated']:.3g}); 2 neuron groups"
    )
    page = r._repr_html_()
    assert page.count("<img src='data:image/png;base64,") == 2 and page.count("<tr><td>") == 2
    assert html.escape(r.summary()) in page
