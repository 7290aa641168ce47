"""Privileged bases: which layers' outputs follow an elementwise nonlinearity, from the graph."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unitscope.layers import privileged_layers


class Functional(nn.Module):
    """A block whose activation is a function call inside forward, not a module."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return F.gelu(self.conv(x))


class Residual(nn.Module):
    """torchvision's pattern: bn's output is made non-negative by an in-place relu *outside* bn."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.bn(self.conv(x))
        out = self.relu(out)
        return self.relu(out + x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        from timm.layers import BatchNormAct2d

        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU6())
        self.func = Functional()
        self.block = Residual()
        self.bna = BatchNormAct2d(4, act_layer=nn.SiLU)
        self.bn_linear = BatchNormAct2d(4, apply_act=False)  # act is Identity
        self.gate = nn.Sigmoid()
        self.proj = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        x = self.bn_linear(self.bna(self.block(self.func(self.stem(x)))))
        return self.proj(x * self.gate(x))


def test_marks_follow_the_graph_not_the_names():
    net = Net().eval()
    marks = privileged_layers(net, input_size=(3, 8, 8))
    expected = {
        "stem": True,
        "stem.0": False,
        "stem.1": False,
        "stem.2": True,
        "func": True,
        "func.conv": False,
        "block": True,
        "block.conv": False,
        "block.bn": False,
        "block.relu": True,
        "bna": True,
        "bna.drop": False,
        "bna.act": True,
        "bn_linear": False,
        "bn_linear.drop": False,
        "bn_linear.act": False,
        "gate": True,
        "proj": False,
    }
    assert marks == expected


def test_no_hook_or_mode_is_left_behind():
    net = Net().eval()
    privileged_layers(net, input_size=(3, 8, 8))
    assert all(not m._forward_hooks for m in net.modules())
    y = torch.relu(torch.zeros(2))  # no function mode still active: plain call works and is not recorded
    assert y.tolist() == [0.0, 0.0]


@pytest.mark.slow
def test_lite0_default_layers_are_privileged_and_block_outputs_are_not():
    from unitscope.models import create_model, get_info

    model = create_model("efficientnet_lite0")
    marks = privileged_layers(model)
    defaults = get_info(model).default_layers
    assert len(defaults) == 3 and defaults[-1] == "bn2"
    assert all(marks[name] for name in defaults)
    assert not any(marks[f"blocks.{k}"] for k in (2, 4, 5, 6))  # linear bottleneck projections
    assert marks["blocks.4.0.bn1"] and not marks["blocks.4.0.bn3"] and not marks["conv_head"]


def test_dissect_warns_once_per_non_privileged_layer(tmp_path, make_run, capsys):
    from unitscope.catalog import Catalog
    from unitscope.dissect.engine import record_bases
    from unitscope.layers import check_bases
    from unitscope.report.writer import build_report

    bases = check_bases(Net().eval(), ["stem", "bn_linear", "bna"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert bases == {"stem": True, "bn_linear": False, "bna": True}
    assert len(lines) == 1 and lines[0].startswith("warning: bn_linear does not follow an elementwise")
    run = make_run(tmp_path / "run")  # model "toy", layers layer3 and layer4
    record_bases(run, "toy", {"layer3": True, "layer4": False})
    with Catalog(run / "catalog.sqlite") as cat:
        assert [(r["layer"], r["privileged"]) for r in cat.rows("layer_bases")] == [("layer3", 1), ("layer4", 0)]
    report = build_report(run)
    assert {ly["layer"]: ly["parts"]["dissection"]["privileged"] for ly in report["layers"]} == {
        "layer3": True,
        "layer4": False,
    }


def test_layers_command_marks_the_basis(tmp_path, capsys):
    from unitscope.cli import main

    factory = tmp_path / "net.py"
    factory.write_text(
        "import sys\nsys.path.insert(0, %r)\nfrom test_layers import Net\n\n"
        "def make():\n    return Net().eval()\n" % str(__import__("pathlib").Path(__file__).parent)
    )
    assert main(["layers", f"{factory}:make", "--spatial"]) == 0
    rows = {line.split()[0]: line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert rows["stem"] == "privileged" and rows["bna"] == "privileged" and rows["block.relu"] == "privileged"
    assert rows["bn_linear"] == "-" and rows["block.bn"] == "-" and rows["proj"] == "-"
