"""Dissection at a bounded activation's cap: thresholds, masks and exemplars from the pre-activation,
and the warning when a layer's thresholds sit at their maximum or its exemplars tie.

The one unit of the planted layer ``feat`` (a ReLU6) has a pre-activation of 10 + a little (image-
and column-dependent) on the pixels of colour ``HIGH``, 7 + a little on those of ``LOW``, 0
elsewhere: after ReLU6 every pixel of both colours is 6. With the quantile between the share of
``HIGH`` and that of both colours, the post-activation threshold is the cap (its mask empty), the
pre-activation threshold falls among the 7s (its mask ``HIGH``).
"""

import sqlite3

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unitscope.models import ModelInfo
from unitscope.world.vocab import color_labels

HIGH, LOW = "red", "pink"
INFO = ModelInfo(
    name="capped-colours",
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    input_size=(3, 64, 64),
    class_names=["a", "b"],
    default_layers=["feat"],
)


class CappedColours(nn.Module):
    """``feat``: ReLU6 of the planted pre-activation ``[N, 1, 32, 32]``; ``functional``: the clamp is
    ``F.hardtanh`` inside ``forward`` instead (no module whose input a hook can keep)."""

    def __init__(self, names: list[str], functional: bool = False):
        super().__init__()
        self.high, self.low = names.index(HIGH), names.index(LOW)
        self.functional = functional
        self.feat = nn.Identity() if functional else nn.Sequential(nn.Identity(), nn.ReLU6(inplace=True))
        self.head = nn.Linear(1, 2)
        object.__setattr__(self, "unitscope_info", INFO)

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x * 255).round().clamp(0, 255)
        half = (F.avg_pool2d(rgb, 2) + 0.5).floor().clamp(0, 255).to(torch.uint8)  # as the world names colours
        names = torch.from_numpy(color_labels(half.permute(0, 2, 3, 1).numpy()).astype(np.int64))[:, None]
        ramp = torch.linspace(0, 1e-3, names.shape[-1]).view(1, 1, 1, -1)
        per_image = 0.01 * x.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)  # the exemplar order below the cap
        high = (names == self.high).float() * (10 + per_image + ramp)
        low = (names == self.low).float() * (7 + ramp)
        return high + low

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.pre(x)
        feat = self.feat(F.hardtanh(z, 0.0, 6.0)) if self.functional else self.feat(z)
        return self.head(feat.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from unitscope.world import make_world

    return make_world(tmp_path_factory.mktemp("world") / "w64", n=24, size=64, seed=3, workers=1, progress=False)


@pytest.fixture(scope="module")
def data(world):
    from unitscope.data import BrodenDataset

    ds = BrodenDataset(world, transform=INFO.transform())
    shares = colour_shares(ds)
    # the premise: both colours cap more than 0.5% of the unit's positions, and the low one is there
    # to fill the quantile chosen below beyond the high one's pixels
    assert shares[HIGH] + shares[LOW] > 0.005 and shares[LOW] > 0.1 * shares[HIGH], shares
    return ds, shares


def colour_shares(ds) -> dict[str, float]:
    plane = int((ds.plane_category == ds.categories.index("color")).nonzero()[0, 0])
    planes = torch.stack([ds[i]["labels"][plane] for i in range(len(ds))])
    return {c: float((planes == ds.label_index(c)).float().mean()) for c in (HIGH, LOW)}


def quantile_for(shares) -> float:
    """Just above the high colour's share: T falls among the 7s."""
    return 1.02 * shares[HIGH]


def model_for(ds, functional: bool = False) -> CappedColours:
    return CappedColours(list(ds.label_names), functional).eval()


def test_a_capped_unit_is_labelled_from_its_pre_activation(data, tmp_path):
    from unitscope.dissect import dissect, open_activation_cache

    ds, shares = data
    model = model_for(ds)
    q = quantile_for(shares)
    assert shares[HIGH] < q < shares[HIGH] + shares[LOW]
    result = dissect(
        model,
        ds,
        ["feat"],
        tmp_path / "run",
        quantile=q,
        topk=4,
        batch_size=8,
        progress=False,
        null_draws=0,
        keep_cache=True,
    )
    d = result.layers["feat"]
    assert d.values == "pre-activation: input of ReLU6 at feat.1, floored at 0 (the output without its cap)"
    assert d.concept(0) == HIGH and d.best_iou[0] > 0.9, d.best_iou
    assert 7 < d.thresholds[0] < 7.01, d.thresholds  # among the 7s
    assert not d.saturated.any() and not d.tied.any() and "Warning" not in d.summary()
    # the exemplars: the images with the largest pre-cap values, in order, with those values
    with torch.no_grad():
        z = model.pre(torch.stack([ds[i]["image"] for i in range(len(ds))]))
    peak = z.flatten(2).max(2).values  # [N, C]
    with sqlite3.connect(tmp_path / "run" / "catalog.sqlite") as db:
        rows = db.execute("SELECT image, activation FROM exemplars WHERE unit = 0 ORDER BY rank").fetchall()
        order = torch.argsort(peak[:, 0], descending=True)[:4]
        assert [r[0] for r in rows] == order.tolist()
        assert np.allclose([r[1] for r in rows], peak[order, 0].numpy(), rtol=0, atol=1e-5)
        assert min(r[1] for r in rows) > 10  # all of them above the cap of 6
        layer = db.execute("SELECT activation_values, saturated_units, tied_units FROM layers").fetchone()
    assert layer == (d.values, 0, 0)
    # the kept cache holds the pre-activation once; read() gives the layer's output from it
    with open_activation_cache(tmp_path / "run", "feat") as cache:
        assert cache.values == "pre"
        images = torch.stack([ds[i]["image"] for i in (0, 5)])
        assert torch.equal(cache.read([0, 5], values="pre"), model.pre(images))
        assert torch.equal(cache.read([0, 5]), model.pre(images).clamp(0, 6))


def test_the_layer_output_at_the_cap_is_empty_and_warned(data, tmp_path):
    """``values="post"`` (the old rule) on the same unit: threshold at the cap, no concept, tied exemplars."""
    from unitscope.dissect import dissect

    ds, shares = data
    kw = dict(
        quantile=quantile_for(shares),
        topk=4,
        batch_size=8,
        progress=False,
        null_draws=0,
        exemplar_images=False,
        rotations=2,
    )
    result = dissect(model_for(ds), ds, ["feat"], tmp_path / "run", values="post", **kw)
    d = result.layers["feat"]
    # rotations are of the layer's output whichever values its units are read at: the same rows
    pre = dissect(model_for(ds), ds, ["feat"], tmp_path / "pre", **kw)
    assert pre.layers["feat"].values.startswith("pre-activation") and d.values == "layer output (--values post)"
    assert [r.thresholds.tolist() for r in pre.rotated["feat"]] == [
        r.thresholds.tolist() for r in result.rotated["feat"]
    ]
    assert pre.rotations["feat"][1:] == result.rotations["feat"][1:]
    assert d.thresholds[0] == 6 and d.concept(0) is None
    assert d.saturated.all() and d.tied.all()
    # the old folder rerun with the default rule is redone, not resumed from the capped pass 1
    again = dissect(model_for(ds), ds, ["feat"], tmp_path / "run", keep_cache=True, **kw).layers["feat"]
    assert again.concept(0) == HIGH and again.thresholds.tolist() == pre.layers["feat"].thresholds.tolist()
    assert d.summary() == (
        "feat: 0 of 1 units are detectors, covering 0 concepts. Warning: 1 of 1 units have their threshold at "
        "their largest value (empty masks: no concept) and 1 of 1 units' top-4 exemplars all tie (the images shown are "
        "arbitrary), reading layer output (--values post); a saturated activation? dissect the values before it "
        "(--values pre, or the layer that feeds a functional clamp)"
    )


def test_the_warning_fires_when_no_pre_activation_can_be_found(data, tmp_path):
    """A functional clamp (``F.hardtanh`` in ``forward``): "auto" cannot read before it, so it reads the
    output and says so, and the summary line and the catalog carry the warning."""
    from unitscope.dissect import dissect

    ds, shares = data
    result = dissect(
        model_for(ds, functional=True),
        ds,
        ["feat"],
        tmp_path / "run",
        quantile=quantile_for(shares),
        topk=4,
        batch_size=8,
        progress=False,
        null_draws=0,
        exemplar_images=False,
    )
    d = result.layers["feat"]
    assert d.values == "layer output (a functional activation: no pre-activation to read)"
    assert d.saturated.tolist() == [True] and d.tied.tolist() == [True]
    assert "Warning: 1 of 1 units have their threshold at their largest value" in d.summary()
    with sqlite3.connect(tmp_path / "run" / "catalog.sqlite") as db:
        assert db.execute("SELECT saturated_units, tied_units FROM layers").fetchone() == (1, 1)
    from unitscope.report import write_report

    write_report(tmp_path / "run")
    import json

    part = json.loads((tmp_path / "run" / "report.json").read_text())["layers"][0]["parts"]["dissection"]
    assert (part["saturated_units"], part["tied_units"]) == (1, 1)
    assert part["activation_values"] == d.values


def test_values_rule_per_activation():
    from unitscope.layers import dissection_values

    model = nn.Sequential(
        nn.Conv2d(3, 4, 1),
        nn.BatchNorm2d(4),
        nn.ReLU6(),
        nn.Conv2d(4, 4, 1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 1),
        nn.Sigmoid(),
        nn.Conv2d(4, 4, 1),
    )
    kw = {"input_size": (3, 8, 8)}
    relu6 = dissection_values(model, "2", **kw)
    assert (relu6.values, relu6.module) == ("pre", "2")
    assert relu6.note == "pre-activation: input of ReLU6 at 2, floored at 0 (the output without its cap)"
    x = torch.linspace(-3, 9, 13)
    assert torch.equal(relu6.post(x), x.clamp(0, 6)) and torch.equal(relu6.read(x), x.clamp(min=0))
    assert dissection_values(model, "6", **kw).floor is None  # sigmoid has no flat part: its input as it is
    assert dissection_values(model, "6", **kw).values == "pre"  # sigmoid: bounded
    assert dissection_values(model, "4", **kw).note == "layer output (after ReLU, not bounded above)"
    assert dissection_values(model, "4", "pre", **kw).values == "pre"
    assert dissection_values(model, "2", "post", **kw).values == "post"
    assert dissection_values(model, "7", **kw).values == "post"
    with pytest.raises(ValueError, match="no elementwise nonlinearity"):
        dissection_values(model, "7", "pre", **kw)


def test_input_of_an_in_place_activation_is_kept_before_it_runs():
    from unitscope.hooks import TraceDict

    model = nn.Sequential(nn.Identity(), nn.ReLU6(inplace=True))
    x = torch.linspace(-4, 10, 15).view(1, 1, 3, 5)
    td = TraceDict(model, ["1"])
    td.add_input("pre", model, "1")
    with td:
        model(x.clone())
    assert torch.equal(td["pre"].input, x) and torch.equal(td["1"].output, x.clamp(0, 6))


def test_the_probe_page_shows_the_values_the_run_thresholded(tmp_path):
    """The live maps of a ReLU6 layer: before the cap by default (as dissection reads it), after it for a
    run made with ``--values post`` (or before the rule existed)."""
    from PIL import Image

    from unitscope.serve.probe import Prober
    from unitscope.serve.runinfo import RunInfo

    conv = nn.Conv2d(3, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(0.0)
        conv.weight[0, 0] = 20.0  # unit 0 = 20 x red: 20 on a red pixel, capped at 6 after ReLU6
        conv.bias.fill_(-1.0)
    model = nn.Sequential(conv, nn.ReLU6(inplace=True))
    object.__setattr__(
        model,
        "unitscope_info",
        ModelInfo(name="capped", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(3, 8, 8), default_layers=["1"]),
    )
    image = Image.new("RGB", (8, 8), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 4, 8))
    auto = Prober(model).probe(image, "1")
    assert auto.values == "pre-activation: input of ReLU6 at 1, floored at 0 (the output without its cap)"
    assert auto.to_json()["values"] == auto.values
    assert np.allclose(auto.maps[0, :, :4], 19.0) and np.allclose(auto.maps[0, :, 4:], 0.0)  # -1 floored at 0
    post = Prober(model, values="post").probe(image, "1")
    assert np.allclose(post.maps[0, :, :4], 6.0) and np.allclose(post.maps[0, :, 4:], 0.0)
    # under a run, per layer what the run read: here a run made with --values post, and one made
    # before the rule was recorded (activation_values NULL)
    from unitscope.catalog import Catalog

    run = tmp_path / "run"
    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace(
            "layers", [{"units": 1, "activation_values": "layer output (--values post)"}], model="capped", layer="1"
        )
        cat.replace("layers", [{"units": 1}], model="capped", layer="0")
    rules = RunInfo(run, model="capped").values_rules()
    assert rules == {"1": "post", "0": "post"} and RunInfo(None).values_rules() == {}
    prober = Prober(model)
    prober.layer_rules.update(rules)
    assert np.allclose(prober.probe(image, "1").maps, post.maps)
    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace("layers", [{"units": 1, "activation_values": auto.values}], model="capped", layer="1")
    assert RunInfo(run, model="capped").values_rules()["1"] == "pre"


def test_quantiles_of_the_output_are_the_activation_of_the_pre_activation_quantiles():
    """Why ablation's and steering's quantiles (of the layer's output, which they edit) agree with a
    dissection read before ReLU6: for a non-decreasing f the sketch of f(z) is f of the sketch of z."""
    from unitscope.stats import Quantile

    z = torch.randn(20_000, 3, generator=torch.Generator().manual_seed(0)) * 4 + torch.tensor([0.0, 5.0, 9.0])
    pre, post = Quantile(resolution=256), Quantile(resolution=256)  # small: the sketch compacts, not exact
    for chunk in z.split(1000):
        pre.add(chunk.clamp(min=0))  # what dissection reads before ReLU6 (floored at 0)
        post.add(chunk.clamp(0, 6))  # what ablation caches and edits
    levels = [0.5, 0.9, 0.99, 0.995]
    assert torch.equal(post.quantiles(levels), pre.quantiles(levels).clamp(max=6))
    assert (pre.quantiles(0.995)[1:] > 6).all()  # units 1 and 2 reach the cap: only the pre values tell them apart
