"""Scores of descriptions: hand computations, agreement of the batched path with the reference
functions, NeuronEval's two sanity tests on every metric, and the permutation null."""

import pytest
import torch

from unitscope.describe import scores


def _planted(seed=0, n=4000):
    """A concept on 10% of pixels and a unit that fires on it (activation = concept + noise)."""
    g = torch.Generator().manual_seed(seed)
    concept = torch.rand(n, generator=g) < 0.1
    act = concept.double() + 0.3 * torch.rand(n, generator=g, dtype=torch.float64)
    return concept, act, act > 0.65


def test_hand_computed():
    mask = torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool)
    concept = torch.tensor([0, 1, 1, 1, 0, 0], dtype=torch.bool)
    assert scores.f1(mask, concept) == pytest.approx(2 * 2 / (3 + 3))
    assert scores.iou(mask, concept) == pytest.approx(2 / 4)
    act = torch.tensor([6.0, 5, 4, 3, 2, 1])
    # positives at ranks 2, 3, 4: precision 1/2, 2/3, 3/4 at each new recall of 1/3
    assert scores.auprc(act, concept) == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3)
    a, c = act.double(), concept.double()
    r = ((a - a.mean()) * (c - c.mean())).sum() / ((a - a.mean()).norm() * (c - c.mean()).norm())
    assert scores.pearson(act, concept) == pytest.approx(float(r))


def test_auprc_ties_and_soft_labels():
    # two tied cells: one threshold, precision 1/2 at recall 1
    assert scores.auprc(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0])) == pytest.approx(0.5)
    # a soft label of 0.5 on the top cell: precision 0.5 at recall 0.5/1.5, then 1.5/2 at recall 1
    got = scores.auprc(torch.tensor([2.0, 1.0]), torch.tensor([0.5, 1.0]))
    assert got == pytest.approx((0.5 / 1.5) * 0.5 + (1 / 1.5) * 0.75)


def test_auprc_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    concept, act, _ = _planted()
    act = (act * 4).round() / 4  # ties
    want = metrics.average_precision_score(concept.numpy(), act.numpy())
    assert scores.auprc(act, concept) == pytest.approx(want, abs=1e-12)


def _missing(concept, seed=1):
    g = torch.Generator().manual_seed(seed)
    on = concept.nonzero().flatten()
    drop = on[torch.randperm(len(on), generator=g)[: len(on) // 2]]
    out = concept.clone()
    out[drop] = False
    return out


def _extra(concept, seed=2):
    g = torch.Generator().manual_seed(seed)
    off = (~concept).nonzero().flatten()
    add = off[torch.randperm(len(off), generator=g)[: int(concept.sum())]]
    out = concept.clone()
    out[add] = True
    return out


METRIC_FUNCS = {
    "f1": lambda act, mask, c: scores.f1(mask, c),
    "iou": lambda act, mask, c: scores.iou(mask, c),
    "auprc": lambda act, mask, c: scores.auprc(act, c),
    "pearson": lambda act, mask, c: scores.pearson(act, c),
}


@pytest.mark.parametrize("name", scores.METRICS)
@pytest.mark.parametrize("test", [_missing, _extra], ids=["missing_labels", "extra_labels"])
def test_neuroneval_sanity(name, test):
    """NeuronEval's tests: half the positives dropped, or as many again added at random, scores lower."""
    fn = METRIC_FUNCS[name]
    for seed in range(3):
        concept, act, mask = _planted(seed)
        assert fn(act, mask, test(concept, seed + 10)) < fn(act, mask, concept) - 0.05


def test_sanity_tests_can_fail():
    """Recall passes neither test's spirit: it ignores dropped positives; precision ignores extra ones."""
    concept, _, mask = _planted()
    recall = lambda c: (mask & c).sum().item() / c.sum().item()
    precision = lambda c: (mask & c).sum().item() / mask.sum().item()
    assert recall(_missing(concept)) >= recall(concept) - 0.02
    assert precision(_extra(concept)) >= precision(concept)


def test_batched_equals_reference():
    g = torch.Generator().manual_seed(3)
    u, n = 3, 6  # 2x2 cells, each 2x2 pixels at the working resolution
    concept = torch.rand(u, n, 4, 4, generator=g) < 0.3
    acts = torch.rand(u, n, 2, 2, generator=g)
    masks = torch.nn.functional.interpolate(acts, size=(4, 4), mode="nearest") > 0.7
    coverage = torch.nn.functional.avg_pool2d(concept.float(), 2)
    out = scores.heldout_scores(masks.flatten(2), concept.flatten(2), acts.flatten(2), coverage.flatten(2), draws=20)
    for k in range(u):
        assert out["f1"][k].item() == pytest.approx(scores.f1(masks[k], concept[k]))
        assert out["iou"][k].item() == pytest.approx(scores.iou(masks[k], concept[k]))
        assert out["auprc"][k].item() == pytest.approx(scores.auprc(acts[k], coverage[k]))
        assert out["pearson"][k].item() == pytest.approx(scores.pearson(acts[k], coverage[k]))
        assert out["base_rate"][k].item() == pytest.approx(concept[k].float().mean().item())
    assert ((out["p_f1"] > 0) & (out["p_f1"] <= 1)).all()


def test_null_hand_computed():
    """Two images, the unit fires exactly where the concept is: the identity pairing scores 1, the
    swap 0, so the null is known draw by draw and the p-value follows by hand."""
    import math

    from unitscope.dissect.significance import t_sf

    concept = torch.tensor([[[1, 0, 0, 0], [0, 0, 0, 1]]], dtype=torch.bool)  # [U=1, N=2, P=4]
    out = scores.heldout_scores(concept.clone(), concept, concept.float(), concept.float(), draws=30, seed=0)
    g = torch.Generator().manual_seed(0)
    null = torch.tensor(
        [float(bool((torch.randperm(2, generator=g) == torch.arange(2)).all())) for _ in range(30)], dtype=torch.float64
    )
    assert 0 < null.sum() < 30  # both pairings drawn
    t = (1 - null.mean()) / (null.std() * math.sqrt(1 + 1 / 30))
    assert out["f1"].item() == 1.0
    assert out["p_f1"].item() == pytest.approx(float(t_sf(t.numpy(), 29)))
    assert out["p_iou"].item() == pytest.approx(float(t_sf(t.numpy(), 29)))


def test_null_separates_real_from_chance():
    g = torch.Generator().manual_seed(4)
    concept = torch.rand(2, 40, 16, generator=g) < 0.2
    acts = concept.float() + 0.2 * torch.rand(2, 40, 16, generator=g)
    acts[1] = torch.rand(40, 16, generator=g)  # unit 1 ignores the concept
    out = scores.heldout_scores(acts > 0.6, concept, acts, concept.float(), draws=20)
    for name in scores.METRICS:
        assert out[f"p_{name}"][0].item() < 1e-6
        assert out[f"p_{name}"][1].item() > 0.01
