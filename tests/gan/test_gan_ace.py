"""Average causal effect masks and artifact units on a hand-built, differentiable generator.

z ``[N, 16, 1, 1]`` is a 4x4 map ``a``; the image has one pixel per cell: sky (blue) in rows 0-1,
wall (grey) in rows 2-3. Layer ``feat`` has 3 units: unit 0 = relu(a - 1.5) on the wall rows paints
a red door (amount clamp(4 u0, 0, 1)); unit 1 = 1 everywhere paints nothing; unit 2 = relu(a - 1) on
the sky rows paints a magenta blotch, a colour the soft segmenter cannot place (its largest class
probability there is low). The segmenter's probabilities are a softmax of -20 x squared colour
distance to sky, wall and door (and a constant for none).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.gan_models import BLOT, SoftSegmenter, soft_generator
from unitscope.ablate import cut_model
from unitscope.errors import UsageError
from unitscope.gan import cache_samples, latents
from unitscope.gan.ace import ace_mask, compare_rankings, concept_share
from unitscope.gan.artifacts import (
    artifact_units,
    before_after_images,
    remove_units_quality,
    segmenter_confidence,
    write_grid,
)


def _setup(n: int = 200, seed: int = 1):
    g = soft_generator()
    cut = cut_model(g, "feat")
    return g, cut, cache_samples(cut, g, n=n, seed=seed, batch_size=50)


def test_the_soft_share_matches_the_segmenters_pixels_on_clean_colours() -> None:
    g, seg = soft_generator(), SoftSegmenter()
    images = g(latents(20, 0, (16, 1, 1)))
    hard = (seg.segment(images)["object"] == 3).float().flatten(1).mean(1)
    soft = concept_share(seg, images, "door")
    np.testing.assert_allclose(soft.numpy(), hard.numpy(), atol=0.01)  # exact colours: probabilities near 0/1
    with pytest.raises(UsageError, match="no label 'tree'"):
        concept_share(seg, images, "tree")


def test_ace_removal_ranks_the_door_unit_first_and_its_loss_falls() -> None:
    _, cut, samples = _setup(100)
    seg = SoftSegmenter()
    ace = ace_mask(cut, samples, seg, "door", mode="remove", penalty=0.01, steps=60, lr=0.2)
    assert ace.ranking()[0] == 0
    assert ace.mask[0] > 0.9 and ace.mask[1] < 0.2 and ace.mask[2] < 0.2
    assert ace.losses[-1] < ace.losses[0] - 0.01 and ace.shares[-1] < 0.1 * ace.shares[0]
    assert "ACE remove 'door'" in ace.summary()
    # inserting: forcing unit 0 on everywhere paints the wall rows red; the mask finds it
    ins = ace_mask(
        cut,
        samples,
        seg,
        "door",
        mode="insert",
        level=torch.tensor([1.0, 1.0, 1.0]),
        penalty=0.01,
        steps=60,
        lr=0.2,
        init=-4.0,
    )
    assert ins.ranking()[0] == 0 and ins.shares[-1] > 0.45 and ins.shares[0] < 0.2
    assert ins.losses[-1] < ins.losses[0]
    with pytest.raises(UsageError, match="level"):
        ace_mask(cut, samples, seg, "door", mode="insert")
    with pytest.raises(UsageError, match="unknown ACE mode"):
        ace_mask(cut, samples, seg, "door", mode="paint")


def test_compare_rankings_removes_all_doors_with_the_door_unit_and_none_without() -> None:
    _, cut, samples = _setup(100)
    cmp = compare_rankings(cut, samples, SoftSegmenter(), "door", {"ACE": [0, 2, 1], "worst": [1, 2, 0]}, ks=(1, 2, 3))
    assert cmp.change["ACE"].tolist() == [-1.0, -1.0, -1.0]
    assert cmp.change["worst"].tolist() == [0.0, 0.0, -1.0]
    assert [r["better"] for r in cmp.table()] == ["ACE", "ACE", "ACE"]  # a tie at k = 3 goes to the first name


def test_artifact_units_find_the_blotch_unit_and_match_a_direct_computation(tmp_path) -> None:
    g, cut, samples = _setup(200)
    quality = segmenter_confidence(SoftSegmenter())
    art = artifact_units(cut, samples, quality, worst=0.1)
    assert art.ranking()[0] == 2 and art.gain[2] > 0.02 and art.gain[2] > 5 * abs(art.gain[[0, 1]]).max()
    z = latents(200, 1, (16, 1, 1))
    np.testing.assert_allclose(art.before, quality(g(z)).double().numpy(), rtol=1e-5)
    # by hand: unit 2 switched off with a forward hook on the whole generator
    handle = g.feat.register_forward_hook(lambda m, i, out: torch.cat([out[:, :2], torch.zeros_like(out[:, 2:])], 1))
    try:
        without = quality(g(z)).double().numpy()
    finally:
        handle.remove()
    np.testing.assert_allclose(art.after[2], without, rtol=1e-5)
    worst = art.worst_samples()[:20]
    assert art.gain[2] == pytest.approx((without[worst] - art.before[worst]).mean(), rel=1e-6)
    assert art.gain[1] == 0.0  # the unit that paints nothing
    np.testing.assert_allclose(remove_units_quality(cut, samples, quality, [2]), without, rtol=1e-5)
    before, after = before_after_images(cut, samples, worst[:4], [2])
    assert torch.allclose(before, g(z[worst[:4]]), atol=1e-6)
    assert not torch.isclose(after, torch.tensor(BLOT).view(1, 3, 1, 1)).all(1).any()  # no blotch left
    path = write_grid([before, after], tmp_path / "grid.png", scale=3)
    from PIL import Image

    assert Image.open(path).size == (4 * 12 + 3 * 2, 2 * 12 + 2)


def test_world_segmenter_probabilities_agree_with_its_labels() -> None:
    """The differentiable path through a ModelSegmenter is the one segment() takes: same argmax,
    probabilities summing to 1, and the head-order form has the same largest probability."""
    from unitscope.gan.ace import probabilities
    from unitscope.models import create_model
    from unitscope.segment import create_segmenter

    seg = create_segmenter("world_segmenter")
    with torch.no_grad():
        images = create_model("world_generator")(latents(4, 0, (64,)))
    probs, heads, maps = probabilities(seg, images), probabilities(seg, images, by_number=False), seg.segment(images)
    for c in seg.categories:
        assert torch.equal(probs[c].argmax(1), maps[c])
        torch.testing.assert_close(probs[c].sum(1), torch.ones_like(maps[c], dtype=torch.float32))
        torch.testing.assert_close(heads[c].max(1).values, probs[c].max(1).values)
    share = concept_share(seg, images, "sky").detach()
    hard = (maps["object"] == seg.labels["object"][[n for n, _ in seg.labels["object"]].index("sky")][1]).float()
    assert float((share - hard.flatten(1).mean(1)).abs().max()) < 0.1  # soft and hard sky shares are close
