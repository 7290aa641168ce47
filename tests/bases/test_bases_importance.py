"""Class-critical directions by ablation (issue 27, item 5's third finding): a basis' directions
ranked per class exactly as units are, on the set-weight colour classifier (tests/helpers/ablate_models.py:
units 0, 1, 2 of ``act`` carry blue, green, red; logit k = 4 x unit k; a tie goes to blue)."""

import pytest
import torch
from torch.utils.data import TensorDataset

from tests.helpers.ablate_models import colour_classifier
from unitscope.ablate import cache_layer, cut_model, unit_importance
from unitscope.bases import Basis
from unitscope.bases.importance import direction_importance, set_edits, top_n_directions
from unitscope.bases.source import identity_basis

CLASSES = torch.arange(3)  # model output k is data class k


def colour_data(per_class: int = 4) -> TensorDataset:
    """Class k: 2x2 images of pure colour (2 - k) (blue, green, red) at brightness 0.5 .. 0.8."""
    xs, ys = [], []
    for k in range(3):
        for i in range(per_class):
            x = torch.zeros(3, 2, 2)
            x[2 - k] = 0.5 + 0.1 * i
            xs.append(x)
            ys.append(k)
    return TensorDataset(torch.stack(xs), torch.tensor(ys))


def mixed_basis() -> Basis:
    """d0 = 0.8 u0 + 0.6 u1, d1 = 0.6 u0 - 0.8 u1, d2 = u2, d3 = u3: orthonormal, linear codes."""
    d = torch.tensor([[0.8, 0.6, 0, 0], [0.6, -0.8, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    return Basis("ica", d, d.clone(), torch.zeros(4), torch.zeros(4))


@pytest.fixture(scope="module")
def setup():
    model = colour_classifier()
    cut = cut_model(model, "act")
    return cut, cache_layer(cut, colour_data(), batch_size=5)  # ragged last batch


def test_identity_basis_ranks_exactly_as_unit_ablation(setup):
    cut, cache = setup
    units = unit_importance(cut, cache, CLASSES, 3)
    dirs = direction_importance(cut, cache, identity_basis(4), CLASSES, 3)
    for name in ("drop", "balanced_drop", "overall_drop", "probability_drop"):
        torch.testing.assert_close(getattr(dirs, name), getattr(units, name), rtol=0, atol=1e-6)
    assert torch.equal(dirs.ranking(), units.ranking())


def test_mixed_directions_by_hand(setup):
    cut, cache = setup
    imp = direction_importance(cut, cache, mixed_basis(), CLASSES, 3)
    # a green image (0, g) without d1 is (0.48 g, 0.36 g): called blue; without d0 (-0.48 g, 0.64 g):
    # still green; a blue image (b, 0) is (0.36 b, -0.48 b) or (0.64 b, 0.48 b): blue; d2 is red's unit
    want = torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    torch.testing.assert_close(imp.drop, want)
    assert imp.base_accuracy == 1.0 and imp.images == 12
    ranking = imp.ranking()
    assert ranking[1, 0] == 1 and ranking[2, 0] == 2
    assert ranking[2].tolist() == [2, 0, 1, 3]  # the others change nothing for red: by number
    rows = top_n_directions(cut, cache, mixed_basis(), ranking, CLASSES, 3, ns=[1, 2])
    got = {(r["class"], r["n"]): (r["accuracy"], r["others"]) for r in rows}
    assert got[(-1, 0)] == (1.0, 1.0)
    assert got[(1, 1)] == (0.0, 1.0) and got[(2, 1)] == (0.0, 1.0)  # green without d1, red without d2
    # no direction alone costs blue an image; d1 lowers its softmax mass most (0.64 b against 0.48 b
    # for green), so it tops blue's ranking, and removing it costs green, not blue
    assert ranking[0, 0] == 1 and got[(0, 1)] == (1.0, 0.5)
    assert got[(2, 2)] == (0.0, 1.0)


def test_set_edits_remove_the_sum_of_the_sets_shares():
    b = mixed_basis()
    z = torch.rand(3, 4, 2, 2)
    sets = torch.tensor([[False] * 4, [True, True, False, False], [False, False, True, True]])
    out = set_edits(b, sets).apply(z).reshape(3, 3, 4, 2, 2)
    torch.testing.assert_close(out[0], z)
    want = z.clone()
    want[:, :2] = 0  # d0 and d1 span units 0 and 1
    torch.testing.assert_close(out[1], want, rtol=0, atol=1e-6)
    want = z.clone()
    want[:, 2:] = 0
    torch.testing.assert_close(out[2], want, rtol=0, atol=1e-6)
    assert len(set_edits(b, sets)[1:]) == 2
