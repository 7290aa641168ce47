"""The one edit primitive (``unitscope.edits``): every mode with exact values, regions, the unit
dimension, errors; the same edit through ``hooks.Ablate`` on a live model and through the ablation
stages' tail passes; a scorer of one's own plugged into ``run_edits``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unitscope.ablate import cut_model
from unitscope.ablate.evaluate import cache_layer, confusion, run_edits
from unitscope.edits import Edits, unit_mask
from unitscope.hooks import Ablate, ablation

Z = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)  # [N=2, C=3, 2, 2]


def test_every_mode_sets_the_masked_units_and_leaves_the_rest() -> None:
    mask = torch.tensor([[True, False, False], [False, True, True]])
    zero = Edits.ablate(mask).apply(Z).view(2, 2, 3, 2, 2)  # [K, N, C, H, W]
    assert torch.all(zero[0, :, 0] == 0) and torch.equal(zero[0, :, 1:], Z[:, 1:])
    assert torch.all(zero[1, :, 1:] == 0) and torch.equal(zero[1, :, 0], Z[:, 0])
    mean = Edits.ablate(mask, "mean", mean=torch.tensor([1.0, 2.0, 3.0])).apply(Z).view(2, 2, 3, 2, 2)
    assert torch.all(mean[0, :, 0] == 1.0) and torch.all(mean[1, :, 1] == 2.0) and torch.all(mean[1, :, 2] == 3.0)
    const = Edits.ablate(mask, "constant", value=7.0).apply(Z).view(2, 2, 3, 2, 2)
    assert torch.all(const[0, :, 0] == 7.0) and torch.all(const[1, :, 1:] == 7.0)
    per_edit = Edits.ablate(mask, "constant", value=torch.tensor([[5.0, 0, 0], [0, 6.0, 8.0]])).apply(Z)
    assert per_edit.view(2, 2, 3, 2, 2)[1, :, 2].unique().tolist() == [8.0]
    levels = torch.tensor([10.0, 20.0, 30.0])  # e.g. each unit's 99.5th percentile: switch units on
    on = Edits.ablate(mask, "quantile", value=levels).apply(Z).view(2, 2, 3, 2, 2)
    assert torch.all(on[0, :, 0] == 10.0) and torch.all(on[1, :, 2] == 30.0) and torch.equal(on[0, :, 1], Z[:, 1])


def test_noise_has_each_units_mean_and_spread_and_repeats_by_seed() -> None:
    z = torch.zeros(400, 3, 4, 4)
    edits = Edits.ablate(
        torch.tensor([[True, False, True]]),
        "noise",
        mean=torch.tensor([1.0, 5.0, -2.0]),
        std=torch.tensor([0.5, 9.0, 3.0]),
    )
    out = edits.apply(z, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, 1], z[:, 1])
    assert abs(out[:, 0].mean() - 1.0) < 0.02 and abs(out[:, 0].std() - 0.5) < 0.02
    assert abs(out[:, 2].mean() + 2.0) < 0.1 and abs(out[:, 2].std() - 3.0) < 0.1
    assert torch.equal(out, edits.apply(z, torch.Generator().manual_seed(0)))


def test_a_region_limits_the_edit_to_its_positions() -> None:
    region = torch.tensor([[True, False], [False, False]])  # the top-left position only
    edits = Edits.ablate(unit_mask([1], 3), "constant", value=-1.0).within(region)
    out = edits.apply(Z)
    expected = Z.clone()
    expected[:, 1, 0, 0] = -1.0
    assert torch.equal(out, expected)
    # one region per edit: edit 0 at the top-left, edit 1 at the bottom-right
    regions = torch.zeros(2, 2, 2, dtype=torch.bool)
    regions[0, 0, 0] = regions[1, 1, 1] = True
    two = Edits.ablate(torch.ones(2, 3, dtype=torch.bool)).within(regions)
    out = two.apply(Z).view(2, 2, 3, 2, 2)
    assert torch.all(out[0, :, :, 0, 0] == 0) and torch.equal(out[0, :, :, 1, 1], Z[:, :, 1, 1])
    assert torch.all(out[1, :, :, 1, 1] == 0) and torch.equal(out[1, :, :, 0, 0], Z[:, :, 0, 0])
    assert torch.equal(two[1:].apply(Z), out[1])  # slicing keeps each edit's own region
    with pytest.raises(ValueError, match=r"region of shape \(2, 2\) does not fit the layer's maps \(4, 4\)"):
        edits.apply(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="K = 2 edits"):
        Edits.ablate(torch.ones(2, 3, dtype=torch.bool)).within(torch.zeros(3, 2, 2, dtype=torch.bool))


def test_units_along_another_dimension_and_bad_input() -> None:
    tokens = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)  # [N, T, D]: units last
    out = Edits.ablate(unit_mask([1, 3], 4)).apply(tokens, dim=-1)
    assert torch.all(out[..., [1, 3]] == 0) and torch.equal(out[..., [0, 2]], tokens[..., [0, 2]])
    with pytest.raises(ValueError, match="the layer has 3 units; asked to edit \\[3\\]"):
        unit_mask([3], 3, "the layer")
    with pytest.raises(ValueError, match="the edits are for 4 units; the layer has 3"):
        Edits.ablate(unit_mask([0], 4)).apply(Z)
    with pytest.raises(ValueError, match="unknown ablation mode 'off'"):
        Edits.ablate(unit_mask([0], 3), "off")
    with pytest.raises(ValueError, match=r"quantile edits need value="):
        Edits.ablate(unit_mask([0], 3), "quantile")
    with pytest.raises(ValueError, match=r"need a number, \[C\] = \[3\] or \[K, C\]"):
        Edits.ablate(unit_mask([0], 3), "constant", value=torch.ones(2))


class TwoStage(nn.Module):
    """conv (3 -> 2 units, identity-like) -> ReLU -> sum over positions -> logits = units."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.act = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).view(2, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x)).sum((2, 3))


def test_ablate_with_a_region_on_a_live_model_and_the_quantile_mode() -> None:
    model = TwoStage().eval()
    x = torch.ones(1, 3, 2, 2)  # both units are 1 at each of the 4 positions: logits [4, 4]
    region = torch.tensor([[True, True], [False, False]])
    with Ablate(model, "act", [0], region=region):
        assert model(x).tolist() == [[2.0, 4.0]]  # unit 0 removed on the top row only
    with Ablate(model, "act", [1], mode="quantile", value=torch.tensor([0.0, 9.0])):
        assert model(x).tolist() == [[4.0, 36.0]]
    assert model(x).tolist() == [[4.0, 4.0]]  # no hook left behind
    with pytest.raises(ValueError, match="needs 2 per-unit values, got 1"):
        with Ablate(model, "act", [1], mode="quantile", value=torch.tensor([9.0])):
            model(x)


class SumPerEdit:
    """A scorer of one's own: the summed output of every edit."""

    def __init__(self, k: int) -> None:
        self.total = torch.zeros(k)

    def add(self, rows: range, output, labels) -> None:
        self.total[rows.start : rows.stop] += output.reshape(len(rows), len(labels), -1).sum((1, 2))


def test_the_tail_pass_edits_equal_ablate_on_the_full_model_and_any_scorer_plugs_in() -> None:
    model = TwoStage().eval()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 3, 2, 2, generator=g)
    data = list(zip(images, torch.tensor([0, 1, 0, 1, 0, 1])))
    cut = cut_model(model, "act")
    assert cut.exact_tail
    cache = cache_layer(cut, data, batch_size=4)
    region = torch.tensor([[False, True], [True, False]])
    edits = Edits(
        torch.tensor([[True, False], [False, True], [True, True]]), torch.tensor([[0.0, 0.0], [5.0, 5.0], [1.0, 2.0]])
    ).within(region)
    scored = run_edits(cut, cache, edits, SumPerEdit(3), max_batch=8).total
    expected = []
    for mask, value in zip(edits.mask, edits.value):
        units = mask.nonzero().flatten().tolist()
        with torch.no_grad(), Ablate(model, "act", units, mode="constant", value=value[units], region=region):
            expected.append(float(model(images).sum()))
    torch.testing.assert_close(scored, torch.tensor(expected))
    # the classifier scorer is one of them: unit 0 removed everywhere, every image is called class 1
    counts = confusion(cut, cache, Edits.ablate(unit_mask([0], 2)), torch.tensor([0, 1]), 2)
    assert counts.tolist() == [[[0, 3, 0], [0, 3, 0]]]
    assert ablation([0])(torch.ones(1, 2, 1, 1), "act").flatten().tolist() == [0.0, 1.0]
