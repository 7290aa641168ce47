"""The greedy causal ranking and the swap search (``unitscope.gan.select``) on a hand-built generator
with three units.

The image is 4x4: sky in row 0, wall in rows 1-3; layer ``feat`` [N, 3, 4, 4] is 1 everywhere for
every unit. Unit a (0) paints doors at (1, 2), (2, 2), (3, 2) and keeps cells (0, 0), (0, 1) sky (off:
they turn to wall); unit b (1) paints doors at (2, 0), (3, 0) and nothing else; unit c (2) paints
nothing. A door switched off leaves a black, unlabelled cell. Before any edit: 5 door cells, 4 sky, 7
wall. Off alone: a takes 3 doors (-60%) and moves the sky by -50% (wall +2/7); b takes 2 doors (-40%)
and moves nothing else; c nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers.gan_models import DOOR, SKY, WALL, SoftSegmenter, door_scene_buffers
from unitscope.ablate import cut_model
from unitscope.errors import UsageError
from unitscope.gan import cache_samples, greedy_ranking, removal_curve, swap_search
from unitscope.gan.ace import ace_mask
from unitscope.models import ModelInfo, attach_info


class ThreeUnitGenerator(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        door_scene_buffers(self, short="door_b", tall="door_a")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a = z.reshape(z.shape[0], 1, 4, 4)
        feat = self.feat(torch.cat([torch.ones_like(a) + 0 * a] * 3, 1))
        ua, ub = feat[:, :1], feat[:, 1:2]
        image = self.sky + self.wall * (self.grey - self.sky)
        image = image + (1 - ua) * self.spill * (self.grey - image)  # a keeps the spill cells sky
        slots = self.door_a + self.door_b
        door = ua * self.door_a + ub * self.door_b
        return image * (1 - slots) + door * self.red  # a door slot: red when its unit is on, else black


def three_unit_generator() -> nn.Module:
    info = ModelInfo(name="three", input_size=(16, 1, 1), kind="generator", output_size=(3, 4, 4))
    return attach_info(ThreeUnitGenerator(), info)


@pytest.fixture(scope="module")
def setup():
    g, seg = three_unit_generator(), SoftSegmenter()
    cut = cut_model(g, "feat")
    return g, seg, cut, cache_samples(cut, g, n=8, seed=2, batch_size=4)


def test_the_generator_draws_what_its_docstring_says(setup) -> None:
    g, seg, cut, samples = setup
    batch = samples.batches[0]
    counts = []
    for off in ([], [0], [1], [2]):
        keep = torch.ones(1, 3, 1, 1)
        keep[0, off] = 0
        out = seg.segment(cut.tail(batch, edit=lambda x, keep=keep: x * keep))["object"][0]
        counts.append([int((out == label).sum()) for label in (1, 2, 3)])  # sky, wall, door
    assert counts == [[4, 7, 5], [2, 9, 2], [4, 7, 3], [4, 7, 5]]


def test_greedy_picks_the_specific_unit_first_and_stops_at_the_bound(setup) -> None:
    g, seg, cut, samples = setup
    # the concept alone (a bound nothing breaks) and ACE both prefer a, which takes more doors
    loose = greedy_ranking(cut, samples, seg, "door", [0, 1, 2], k=2, max_other=0.6)
    assert loose.ranking() == [0, 1] and loose.change == pytest.approx([-0.6, -1.0])
    assert loose.worst_name == ["sky", "sky"] and loose.worst == pytest.approx([-0.5, -0.5]) and loose.broke_at is None
    ace = ace_mask(cut, samples, seg, "door", penalty=0.01, steps=30, lr=0.2)
    assert ace.ranking()[0] == 0
    # under the bound +-7%: b first, then c (a would move the sky by -50%), a only when nothing else is left
    tight = greedy_ranking(cut, samples, seg, "door", [0, 1, 2], k=3)
    assert tight.ranking() == [1, 2, 0]
    assert tight.others == ["sky", "wall"] and tight.max_other == 0.07
    assert tight.change == pytest.approx([-0.4, -0.4, -1.0])
    assert tight.worst == pytest.approx([0.0, 0.0, -0.5]) and tight.worst_name[2] == "sky"
    assert tight.within.tolist() == [True, True, False] and tight.broke_at == 3
    assert tight.evaluations == 3 + 2 + 1 and tight.samples == 8
    assert tight.changes[2] == pytest.approx({"door": -1.0, "sky": -0.5, "wall": 2 / 7})
    assert "the bound broke at step 3" in tight.summary() and "-100.0% of its pixels" in tight.summary()
    assert [row["unit"] for row in tight.table()] == [1, 2, 0]


def test_the_steps_equal_a_direct_removal_curve_of_the_chosen_sets(setup) -> None:
    g, seg, cut, samples = setup
    for bound in (0.07, 0.6):
        result = greedy_ranking(cut, samples, seg, "door", [2, 0, 1], k=3, max_other=bound)
        curve = removal_curve(cut, samples, seg, result.ranking(), "door", ks=[1, 2, 3], random_draws=0)
        np.testing.assert_allclose(result.change, curve.curve(), atol=1e-12)
        rows = curve.change[curve.rows()]
        for j, step in enumerate(result.changes):
            for name, value in step.items():
                assert value == pytest.approx(rows[j, curve.names.index(name)], abs=1e-12)
            worst = max(result.others, key=lambda n: abs(rows[j, curve.names.index(n)]))
            assert abs(result.worst[j]) == pytest.approx(abs(rows[j, curve.names.index(worst)]), abs=1e-12)


def test_a_shortlist_tries_only_the_previous_steps_best(setup) -> None:
    g, seg, cut, samples = setup
    short = greedy_ranking(cut, samples, seg, "door", [0, 1, 2], k=3, shortlist=1)
    assert short.ranking() == [1, 2, 0] and short.evaluations == 3 + 1 + 1


def test_bad_input_gets_a_clear_error(setup) -> None:
    g, seg, cut, samples = setup
    with pytest.raises(UsageError, match="no label 'tree'"):
        greedy_ranking(cut, samples, seg, "tree", [0, 1], k=1)
    with pytest.raises(UsageError, match="positive number of units"):
        greedy_ranking(cut, samples, seg, "door", [0, 1], k=0)
    with pytest.raises(UsageError, match="pool holds only 2"):
        greedy_ranking(cut, samples, seg, "door", [0, 1, 1], k=3)
    with pytest.raises(UsageError, match="not in the layer"):
        greedy_ranking(cut, samples, seg, "door", [0, 7], k=1)
    with pytest.raises(UsageError, match="shortlist"):
        greedy_ranking(cut, samples, seg, "door", [0, 1], k=1, shortlist=0)


def test_a_swap_repairs_the_set_a_greedy_chose_under_a_loose_bound(setup) -> None:
    g, seg, cut, samples = setup
    # chosen under +-60%, the greedy's two units are a then b (-100% of the doors, sky -50%); under +-7%
    # a greedy keeps a once chosen, the swap search takes it out for c: b and c remove 40%, nothing else moves
    start = greedy_ranking(cut, samples, seg, "door", [0, 1, 2], k=2, max_other=0.6).ranking()
    assert start == [0, 1]
    swap = swap_search(cut, samples, seg, "door", start, [0, 1, 2], max_other=0.07)
    assert swap.ranking() == [2, 1] and swap.start == [0, 1] and swap.swaps == [(0, 2)]
    assert swap.change == pytest.approx([-1.0, -0.4]) and swap.excess == pytest.approx([0.5 - 0.07, 0.0])
    assert swap.worst_name[0] == "sky" and swap.worst == pytest.approx([-0.5, 0.0]) and swap.within
    assert swap.others == ["sky", "wall"] and swap.samples == 8
    # round 1: the start, 2 leave-one-out sets, 1 add-one set, 2 swaps exactly (every pair); round 2 the
    # same screen from {c, b} without the start, and neither swap back to a improves
    assert swap.evaluations == (1 + 2 + 1 + 2) + (2 + 1 + 2) and swap.stopped.startswith("no swap")
    assert [row["in"] for row in swap.table()] == [None, 2] and "1 swaps" in swap.summary()
    # the final figures are a removal curve's of the final set
    curve = removal_curve(cut, samples, seg, swap.ranking(), "door", ks=[2], random_draws=0)
    row = curve.change[curve.rows()][0]
    assert swap.changes == pytest.approx({n: row[curve.names.index(n)] for n in ("door", "sky", "wall")}, abs=1e-12)


def test_within_the_bound_a_swap_raises_the_removal(setup) -> None:
    g, seg, cut, samples = setup
    # c removes nothing: swapped for b (-40%) under +-7%; under +-60% for a (-60%, sky -50% allowed)
    tight = swap_search(cut, samples, seg, "door", [2], [0, 1, 2], max_other=0.07, exact=1)
    assert tight.ranking() == [1] and tight.change == pytest.approx([0.0, -0.4]) and tight.within
    loose = swap_search(cut, samples, seg, "door", [2, 0], [0, 1, 2], k=1, max_other=0.6)
    assert loose.ranking() == [0] and loose.change == pytest.approx([0.0, -0.6]) and loose.within
    assert loose.changes == pytest.approx({"door": -0.6, "sky": -0.5, "wall": 2 / 7})
    once = swap_search(cut, samples, seg, "door", [2], [0, 1, 2], max_other=0.6, rounds=0)
    assert once.ranking() == [2] and once.swaps == [] and once.evaluations == 1


def test_bad_input_to_the_swap_search_gets_a_clear_error(setup) -> None:
    g, seg, cut, samples = setup
    with pytest.raises(UsageError, match="no label 'tree'"):
        swap_search(cut, samples, seg, "tree", [0], [1])
    with pytest.raises(UsageError, match="start names only 1"):
        swap_search(cut, samples, seg, "door", [0], [1], k=2)
    with pytest.raises(UsageError, match="repeat a unit"):
        swap_search(cut, samples, seg, "door", [0, 0], [1])
    with pytest.raises(UsageError, match=r"units \[9\] are not in the layer"):
        swap_search(cut, samples, seg, "door", [0], [1, 9])
    with pytest.raises(UsageError, match="nothing to swap in"):
        swap_search(cut, samples, seg, "door", [0, 1], [1, 0])
    with pytest.raises(UsageError, match="exact"):
        swap_search(cut, samples, seg, "door", [0], [1], exact=0)


class GradedGenerator(nn.Module):
    """4x4: sky in row 0, wall below; layer ``feat`` [N, 4, 4, 4] is 1 everywhere. Unit 0 paints 3 doors
    (column 2) and keeps sky cells (0, 0), (0, 1); unit 1 paints 2 doors (column 0) and keeps sky cell
    (0, 2); unit 2 paints the door at (3, 3); unit 3 nothing. Off, a door or a kept sky cell is black
    (unlabelled). Before: 6 doors, 4 sky. Off: 0 takes -50% of the doors and -50% of the sky, 1 -33.3%
    and -25%, 2 -16.7% and 0, and the effects add up."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Identity()
        sky, slots, keeps = torch.zeros(1, 1, 4, 4), torch.zeros(3, 4, 4), torch.zeros(2, 4, 4)
        sky[..., 0, :] = 1
        slots[0, 1:, 2], slots[1, 2:, 0], slots[2, 3, 3] = 1, 1, 1
        keeps[0, 0, :2], keeps[1, 0, 2] = 1, 1
        for name, t in (("skyarea", sky), ("slots", slots), ("keeps", keeps)):
            self.register_buffer(name, t)
        for name, colour in (("sky", SKY), ("grey", WALL), ("red", DOOR)):
            self.register_buffer(name, torch.tensor(colour).view(1, 3, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a = z.reshape(z.shape[0], 1, 4, 4)
        u = self.feat(torch.cat([torch.ones_like(a) + 0 * a] * 4, 1))  # [N, 4, 4, 4]
        image = self.skyarea * self.sky + (1 - self.skyarea) * self.grey
        image = image * (1 - (self.keeps.unsqueeze(0) * (1 - u[:, :2])).sum(1, keepdim=True))
        slots = self.slots.sum(0)
        return image * (1 - slots) + (self.slots.unsqueeze(0) * u[:, :3]).sum(1, keepdim=True) * self.red


def test_a_gentle_repair_gives_up_less_of_the_concept_on_the_way() -> None:
    info = ModelInfo(name="graded", input_size=(16, 1, 1), kind="generator", output_size=(3, 4, 4))
    g, seg = attach_info(GradedGenerator(), info), SoftSegmenter()
    cut = cut_model(g, "feat")
    samples = cache_samples(cut, g, n=4, seed=2, batch_size=4)
    single = removal_curve(cut, samples, seg, [0, 1, 2, 3], "door", ks=[1], random_draws=0)
    assert single.curve() == pytest.approx([-0.5]) and single.largest_other(1) == ("sky", pytest.approx(-0.5))
    # from units 0 and 1 (doors -83%, sky -75%) under +-30%: the steepest repair swaps 0 for 2 at once
    # (-50%, sky -25%, within); the gentle one first 1 for 2 (-66.7%, sky -50%, still beyond), then 0 for 1
    steep = swap_search(cut, samples, seg, "door", [0, 1], [0, 1, 2, 3], max_other=0.3)
    gentle = swap_search(cut, samples, seg, "door", [0, 1], [0, 1, 2, 3], max_other=0.3, repair="gentle")
    assert steep.swaps == [(0, 2)] and steep.change == pytest.approx([-5 / 6, -0.5])
    assert steep.excess == pytest.approx([0.45, 0.0]) and steep.worst == pytest.approx([-0.75, -0.25])
    assert gentle.swaps == [(1, 2), (0, 1)] and gentle.change == pytest.approx([-5 / 6, -4 / 6, -0.5])
    assert gentle.excess == pytest.approx([0.45, 0.2, 0.0]) and sorted(gentle.ranking()) == sorted(steep.ranking())
    with pytest.raises(UsageError, match="repair must be"):
        swap_search(cut, samples, seg, "door", [0, 1], [2], repair="fast")
