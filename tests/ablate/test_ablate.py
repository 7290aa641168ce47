"""unitscope.ablate on hand-built models with set weights: exact numbers, no hooks left behind."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from unitscope.ablate import (
    Edits,
    ablation_curves,
    cache_layer,
    class_means,
    class_selectivity,
    confusion,
    cut_model,
    metrics,
    top_n_test,
    unit_importance,
)
from unitscope.ablate.cut import FxCut, HookCut
from unitscope.ablate.importance import rank_units


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


class OneUnitPerClass(nn.Module):
    """Class c (0..2) depends only on unit c of ``act``; units 3..5 carry a weak "guess" of the
    class (channels 3..5 of the input), which decides the prediction once unit c is gone."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(6, 6, 1, bias=False)
        self.act = nn.ReLU()
        self.fc = nn.Linear(6, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(6).reshape(6, 6, 1, 1))
            w = torch.zeros(3, 6)
            for c in range(3):
                w[c, c], w[c, 3 + c] = 10.0, 1.0
            self.fc.weight.copy_(w)
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def one_unit_data(per_class: int = 9) -> TensorDataset:
    """Class c images: channel c = 1; a guess g cycles 0, 1, 2 (channel 3 + g = 0.1), so exactly a
    third of each class's images guess right."""
    xs, ys = [], []
    for c in range(3):
        for i in range(per_class):
            x = torch.zeros(6, 2, 2)
            x[c] = 1.0
            x[3 + i % 3] = 0.1
            xs.append(x)
            ys.append(c)
    return TensorDataset(torch.stack(xs), torch.tensor(ys))


class SkipNet(nn.Module):
    """A residual whose input jumps over the cut layer ``block.act``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential()
        self.block.add_module("conv", nn.Conv2d(8, 8, 3, padding=1))
        self.block.add_module("act", nn.ReLU())
        self.block.add_module("conv2", nn.Conv2d(8, 8, 3, padding=1))
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        s = self.stem(x)
        h = self.block.conv2(self.block.act(self.block.conv(s))) + s
        return self.fc(torch.relu(h).mean((2, 3)))


IDENTITY = torch.arange(3)


def test_tail_from_cache_equals_full_model_with_a_skip_across_the_cut():
    model = SkipNet().eval()
    x = torch.randn(5, 3, 8, 8)
    cut = cut_model(model, "block.act", allow_fallback=False)
    assert isinstance(cut, FxCut) and len(cut.crossing) == 2  # the layer and the residual input
    with torch.no_grad():
        cache = cut.head(x)
        torch.testing.assert_close(cut.tail(cache), model(x), rtol=0, atol=1e-6)
        tiled = cut.tail(cache.repeat(3))
        torch.testing.assert_close(tiled[5:10], model(x), rtol=0, atol=1e-6)
        # zeroing unit 2 through the tail equals zeroing it with a hook on the full model
        from unitscope.hooks import Ablate

        with Ablate(model, "block.act", [2]):
            expected = model(x)
        edited = cut.tail(cache, edit=lambda z: z * (torch.arange(8) != 2).float().reshape(1, 8, 1, 1))
    torch.testing.assert_close(edited, expected, rtol=0, atol=1e-6)
    assert hook_count(model) == 0


@pytest.mark.slow
def test_tail_from_cache_equals_efficientnet_lite0_at_a_mid_block():
    from unitscope.models import create_model

    model = create_model("efficientnet_lite0", pretrained=False).eval()
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))  # any size works
    for layer in ("blocks.4.1", "blocks.4.1.conv_pwl"):  # the second cuts inside a residual block
        cut = cut_model(model, layer, allow_fallback=False)
        with torch.no_grad():
            torch.testing.assert_close(cut.tail(cut.head(x)), model(x), rtol=1e-5, atol=1e-5)
    assert len(cut.crossing) == 2


def test_hook_fallback_matches_fx_and_says_why():
    model = SkipNet().eval()
    x = torch.randn(4, 3, 8, 8)
    fallback = HookCut(model, "block.act", reason="test")
    fx_cut = cut_model(model, "block.act")
    data = TensorDataset(x, torch.tensor([0, 1, 2, 3]))
    edits = Edits.ablate(torch.eye(8, dtype=torch.bool)[:3])
    a = confusion(fallback, cache_layer(fallback, data), edits, torch.arange(4), 4)
    b = confusion(fx_cut, cache_layer(fx_cut, data), edits, torch.arange(4), 4)
    assert torch.equal(a, b) and not fallback.exact_tail
    assert hook_count(model) == 0


def test_ablating_unit_c_sends_class_c_to_chance_and_leaves_the_others():
    model = OneUnitPerClass().eval()
    cut = cut_model(model, "act")
    cache = cache_layer(cut, one_unit_data(), batch_size=4)  # batches of 4 over 27 images: ragged end
    imp = unit_importance(cut, cache, IDENTITY, 3)
    assert imp.base_accuracy == 1.0
    expected = torch.zeros(6, 3)
    for c in range(3):
        expected[c, c] = 1.0 - 1.0 / 3.0  # accuracy 1 -> chance (1/3)
    torch.testing.assert_close(imp.drop, expected)
    assert imp.ranking()[:, 0].tolist() == [0, 1, 2]
    # balanced accuracy of class 0 without unit 0: recall 1/3; the 6 images of class 0 that now
    # guess 1 or 2 are false positives of classes 1 and 2 (3 each of 18 negatives)
    torch.testing.assert_close(imp.balanced_drop[0, 0], torch.tensor(1.0 - (1 / 3 + 1) / 2))
    torch.testing.assert_close(imp.balanced_drop[0, 1], torch.tensor(1.0 - (1 + 15 / 18) / 2))
    assert hook_count(model) == 0


def test_predictions_are_the_same_however_many_tail_passes_a_batch_takes():
    from unitscope.ablate.evaluate import Predictions, run_edits

    model = OneUnitPerClass().eval()
    cut = cut_model(model, "act")
    data = one_unit_data()
    cache = cache_layer(cut, data, batch_size=4)  # 7 batches, the last of 3 images
    mask = torch.zeros(4, 6, dtype=torch.bool)  # none, then each class's unit alone
    mask[[1, 2, 3], [0, 1, 2]] = True
    edits = Edits.ablate(mask, "zero")
    whole = run_edits(cut, cache, edits, Predictions(), max_batch=None)
    split = run_edits(cut, cache, edits, Predictions(), max_batch=4)  # one edit per pass for full batches
    pred = whole.result()  # type: ignore[attr-defined]
    assert pred.shape == (4, 27)
    assert torch.equal(pred, split.result())  # type: ignore[attr-defined]
    labels = data.tensors[1]
    assert torch.equal(pred[0], labels)  # unablated: every image right
    for c in range(3):  # unit c removed: the other classes stay right, class c falls to its guess (1 in 3)
        assert torch.equal(pred[c + 1][labels != c], labels[labels != c])
        assert int((pred[c + 1][labels == c] == c).sum()) == 3
    mapped = run_edits(cut, cache, edits, Predictions(torch.tensor([2, 0, 1])), max_batch=4).result()  # type: ignore[attr-defined]
    assert torch.equal(mapped, torch.tensor([2, 0, 1])[pred])


def test_ties_in_accuracy_drop_go_to_the_larger_probability_drop():
    model = OneUnitPerClass().eval()
    cut = cut_model(model, "act")
    imp = unit_importance(cut, cache_layer(cut, one_unit_data(), batch_size=5), IDENTITY, 3)
    # class 0's images: unit 0 gives logit 10, the guess unit 3 + g adds 0.1 to class g (a third each).
    # Removing unit 3 lowers class 0's softmax mass on a third of them; units 1 and 2 are silent
    # (no change); removing unit 4 or 5 raises it (negative drop).
    own = lambda z0, z1, z2: math.exp(z0) / (math.exp(z0) + math.exp(z1) + math.exp(z2))  # noqa: E731
    expected_3 = (own(10.1, 0, 0) - own(10, 0, 0)) / 3
    expected_4 = (own(10, 0.1, 0) - own(10, 0, 0)) / 3
    torch.testing.assert_close(
        imp.probability_drop[3, 0], torch.tensor(expected_3), rtol=1e-4, atol=1e-12
    )  # float32 logits
    torch.testing.assert_close(
        imp.probability_drop[4, 0], torch.tensor(expected_4), rtol=1e-4, atol=1e-12
    )  # float32 logits
    assert expected_3 > 0 > expected_4 and imp.probability_drop[1, 0] == 0.0 and imp.drop[3, 0] == 0.0
    assert imp.ranking().tolist() == [[0, 3, 1, 2, 4, 5], [1, 4, 0, 2, 3, 5], [2, 5, 0, 1, 3, 4]]
    assert rank_units(imp.drop).tolist()[0] == [0, 1, 2, 3, 4, 5]  # without it: unit order


def test_top_n_removes_the_class_and_keep_top_n_keeps_it():
    model = OneUnitPerClass().eval()
    cut = cut_model(model, "act")
    cache = cache_layer(cut, one_unit_data())
    ranking = unit_importance(cut, cache, IDENTITY, 3).ranking()
    rows = {(r["class"], r["n"], r["kind"]): r for r in top_n_test(cut, cache, ranking, IDENTITY, 3, ns=[1, 6])}
    assert rows[(1, 0, "none")]["class_accuracy"] == 1.0
    assert rows[(1, 1, "remove")]["class_accuracy"] == pytest.approx(1 / 3)
    assert rows[(1, 1, "remove")]["other_accuracy"] == 1.0
    assert rows[(1, 1, "keep")]["class_accuracy"] == 1.0  # unit 1 alone still says "class 1"
    # without their units, class 0 and 2 images have all-zero logits: argmax picks class 0, so
    # class 0 stays right and class 2 goes wrong
    assert rows[(1, 1, "keep")]["other_accuracy"] == 0.5
    assert rows[(1, 6, "remove")]["class_accuracy"] == 0.0  # all units gone: every image -> class 0


def test_class_selectivity_equals_a_hand_computation():
    # 2 classes x 3 units of spatial means; unit 2 is dead
    acts = torch.tensor(
        [
            [[1.0, 3.0], [0.0, 0.0], [0.0, 0.0]],  # class 0 image: unit 0 mean 2
            [[3.0, 3.0], [2.0, 2.0], [0.0, 0.0]],  # class 0: unit 0 mean 3, unit 1 mean 2
            [[1.0, 1.0], [4.0, 4.0], [0.0, 0.0]],
        ]
    )  # class 1: unit 0 1, unit 1 4
    from unitscope.ablate.cut import CutCache
    from unitscope.ablate.evaluate import LayerCache

    cache = LayerCache([CutCache(acts)], [torch.tensor([0, 0, 1])])
    means = class_means(cache, 2)
    torch.testing.assert_close(means, torch.tensor([[2.5, 1.0, 0.0], [1.0, 4.0, 0.0]]))
    si, top = class_selectivity(means)
    torch.testing.assert_close(si, torch.tensor([(2.5 - 1) / 3.5, (4 - 1) / 5, 0.0]))
    assert top.tolist()[:2] == [0, 1]


def test_curves_at_fraction_zero_equal_the_unablated_accuracy():
    torch.manual_seed(1)
    model = SkipNet().eval()
    x = torch.randn(40, 3, 8, 8)
    y = torch.randint(0, 4, (40,))
    with torch.no_grad():
        plain = (model(x).argmax(1) == y).float().mean().item()
        bias_class = model.fc(torch.relu(model.stem(x)).mean((2, 3))).argmax(1)  # block fully zeroed
    cut = cut_model(model, "block.act")
    cache = cache_layer(cut, TensorDataset(x, y), batch_size=16)
    from unitscope.ablate import unit_moments

    mean, std = unit_moments(cache)
    curves = ablation_curves(cut, cache, torch.arange(4), 4, seeds=3, mean=mean, std=std)
    assert curves["zero"].shape == (3, 11)
    np.testing.assert_allclose(curves["zero"][:, 0], plain)
    np.testing.assert_allclose(curves["noise"][:, 0], plain)
    np.testing.assert_allclose(curves["zero"][:, -1], (bias_class == y).float().mean().item())
    assert hook_count(model) == 0


def test_noise_ablation_has_each_units_mean_and_std():
    z = torch.zeros(200, 3, 4, 4)
    edits = Edits.ablate(
        torch.tensor([[True, False, True]]),
        "noise",
        mean=torch.tensor([1.0, 5.0, -2.0]),
        std=torch.tensor([0.5, 9.0, 3.0]),
    )
    out = apply = __import__("unitscope.ablate.evaluate", fromlist=["apply_edits"]).apply_edits(
        z, edits, torch.Generator().manual_seed(0)
    )
    assert out.shape == z.shape and torch.equal(out[:, 1], z[:, 1])
    assert abs(out[:, 0].mean() - 1.0) < 0.02 and abs(out[:, 0].std() - 0.5) < 0.02
    assert abs(out[:, 2].mean() + 2.0) < 0.1 and abs(out[:, 2].std() - 3.0) < 0.1
    del apply


def test_metrics_per_class_and_balanced_accuracy():
    # truth x prediction (+ an "other" column): class 0: 3 right, 1 -> class 1; class 1: 2 right, 2 -> other
    conf = torch.tensor([[[3, 1, 0], [0, 2, 2]]])
    m = metrics(conf)
    torch.testing.assert_close(m["accuracy"], torch.tensor([5 / 8], dtype=torch.float64))
    torch.testing.assert_close(m["class_accuracy"], torch.tensor([[3 / 4, 2 / 4]], dtype=torch.float64))
    # class 0: recall 3/4, TNR 4/4; class 1: recall 2/4, TNR 3/4
    torch.testing.assert_close(m["balanced"], torch.tensor([[(0.75 + 1) / 2, (0.5 + 0.75) / 2]], dtype=torch.float64))


def test_hooks_noise_ablation_matches_the_batched_edit():
    from unitscope.ablate.evaluate import apply_edits
    from unitscope.hooks import ablation

    z = torch.rand(300, 3, 4, 4)
    mean, std = torch.tensor([1.0, 5.0, -2.0]), torch.tensor([0.5, 9.0, 3.0])
    edit = ablation([0, 2], "noise", value=mean, std=std, generator=torch.Generator().manual_seed(0))
    out = edit(z, "layer")
    assert torch.equal(out[:, 1], z[:, 1])
    assert abs(out[:, 0].mean() - 1.0) < 0.02 and abs(out[:, 0].std() - 0.5) < 0.02
    assert abs(out[:, 2].mean() + 2.0) < 0.1 and abs(out[:, 2].std() - 3.0) < 0.1
    batched = apply_edits(
        z, Edits.ablate(torch.tensor([[True, False, True]]), "noise", mean, std), torch.Generator().manual_seed(0)
    )
    assert abs(batched[:, 2].std() - out[:, 2].std()) < 0.15
    with pytest.raises(ValueError, match="std="):
        ablation([0], "noise", value=mean)
