"""The specific ACE objective and the information-quality-ratio ranking on hand-built generators.

``two_door_generator`` (tests/helpers/gan_models.py): unit 0 paints 2 doors and nothing else; unit 1
paints 3 doors and also turns 2 sky cells into wall. Plain ACE (the concept's share alone) prefers
unit 1, which removes more doors; the specific objective, which also counts the other labels'
relative change, prefers unit 0. ``toy_generator``: unit 0 is positive exactly where a door is
drawn, unit 1 is always 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.helpers.gan_models import SoftSegmenter, door_segmenter, toy_generator, two_door_generator
from unitscope.ablate import cut_model
from unitscope.errors import UsageError
from unitscope.gan import GeneratorActivations, cache_samples
from unitscope.gan.ace import ace_mask, concept_share
from unitscope.gan.iqr import information_quality_ratio, iqr_ranking


def test_the_two_door_generator_draws_what_its_docstring_says() -> None:
    g, seg = two_door_generator(), SoftSegmenter()
    z = torch.zeros(1, 16, 1, 1)
    full = seg.segment(g(z))["object"][0]
    assert (full == 3).sum() == 5 and (full == 1).sum() == 2 and (full == 2).sum() == 9
    cut = cut_model(g, "feat")
    batch = cache_samples(cut, g, n=1, seed=0).batches[0]
    for unit, door, sky in ((0, 3, 2), (1, 2, 4)):
        keep = torch.ones(1, 2, 1, 1)
        keep[0, unit] = 0
        out = seg.segment(cut.tail(batch, edit=lambda x, keep=keep: x * keep))["object"][0]
        assert (out == 3).sum() == door and (out == 1).sum() == sky


def test_specific_ace_prefers_the_unit_that_paints_only_the_concept() -> None:
    g, seg = two_door_generator(), SoftSegmenter()
    cut = cut_model(g, "feat")
    samples = cache_samples(cut, g, n=50, seed=1, batch_size=50)
    plain = ace_mask(cut, samples, seg, "door", mode="remove", penalty=0.01, steps=40, lr=0.2)
    specific = ace_mask(cut, samples, seg, "door", mode="remove", penalty=0.01, steps=40, lr=0.2, specific=0.3)
    # plain: both units switch off (unit 1 a little more: it removes more doors); specific: unit 1 stays on
    assert plain.ranking() == [1, 0] and plain.mask.min() > 0.85
    assert specific.ranking() == [0, 1] and specific.mask[0] > 0.75 and specific.mask[1] < 0.05
    # the specific loss counts the sky's change: its final soft door share is above the plain mask's
    assert specific.shares[-1] > plain.shares[-1]
    assert float(concept_share(seg, g(torch.zeros(1, 16, 1, 1)), "door")) == pytest.approx(5 / 16, abs=0.01)


def test_information_quality_ratio_equals_the_entropy_formula() -> None:
    n11, n1, s1, total = 30.0, 50.0, 40.0, 200.0
    p = np.array([n11, n1 - n11, s1 - n11, total - n1 - s1 + n11]) / total
    pu, ps = np.array([n1, n1, total - n1, total - n1]) / total, np.array([s1, total - s1, s1, total - s1]) / total
    mi, h = float((p * np.log(p / (pu * ps))).sum()), float(-(p * np.log(p)).sum())
    got = information_quality_ratio(torch.tensor(n11), torch.tensor(n1), s1, total)
    assert float(got) == pytest.approx(mi / h, rel=1e-9)
    assert float(information_quality_ratio(torch.tensor(40.0), torch.tensor(40.0), 40.0, total)) == pytest.approx(1.0)
    assert float(information_quality_ratio(torch.tensor(0.0), torch.tensor(0.0), 40.0, total)) == 0.0
    assert math.isfinite(float(information_quality_ratio(torch.tensor(40.0), torch.tensor(200.0), 40.0, total)))


def test_iqr_ranks_the_door_unit_first_at_ratio_one() -> None:
    acts = GeneratorActivations(toy_generator(), ["feat"], n=200, seed=0)
    r = iqr_ranking(acts, door_segmenter(), "door")
    assert r.ranking() == [0, 1]
    assert r.ratio[0] == pytest.approx(1.0) and r.iou[0] == pytest.approx(1.0) and r.ratio[1] == 0.0
    assert 0 < r.share < 0.1 and "IQR 'door'" in r.summary()
    with pytest.raises(UsageError, match="no label 'tree'"):
        iqr_ranking(acts, door_segmenter(), "tree")
