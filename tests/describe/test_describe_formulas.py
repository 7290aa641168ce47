"""Planted units whose masks are known formulas of ground-truth concepts are described by them;
PMI picks a specific description where maximum likelihood picks a generic one."""

import math

import pytest
import torch

from unitscope.describe.concepts import Signatures, Vocabulary, anchor_map, position_masks
from unitscope.describe.formulas import AND, AND_NOT, FIRST, OR, beam_search, canonical_keys, evaluate, unit_counts
from unitscope.describe.phrases import render
from unitscope.describe.select import choose, exemplar_scores, pool_candidates

NAMES = ["-", "red", "green", "blue", "car", "tree", "house", "sky", "crown", "trunk", "window", "sun"]
CATS = [None, "color", "color", "color", "object", "object", "object", "object", "part", "part", "part", "object"]


def _world(n=24, size=16, seed=0):
    """Images of a car (left), a tree (right, crown above trunk), sometimes a red house or sun, as label planes
    (colour, object, part) and their concept bits [K, H, W]."""
    g = torch.Generator().manual_seed(seed)
    vocab = Vocabulary.from_labels(NAMES, CATS)
    cats = ["color", "object", "part"]
    plane_category = torch.tensor([0, 1, 2])
    bits = []
    for i in range(n):
        planes = torch.zeros(3, size, size, dtype=torch.long)
        planes[1] = NAMES.index("sky")
        planes[0] = NAMES.index("blue")
        y0 = int(torch.randint(2, 6, (1,), generator=g))
        planes[1, y0 : y0 + 6, 1:7] = NAMES.index("car")
        planes[0, y0 : y0 + 6, 1:7] = NAMES.index(("red", "green", "blue")[i % 3])
        planes[2, y0 : y0 + 2, 2:6] = NAMES.index("window")
        t0 = int(torch.randint(1, 4, (1,), generator=g))
        planes[1, t0 : t0 + 6, 10:13] = NAMES.index("tree")
        planes[2, t0 : t0 + 4, 10:13] = NAMES.index("crown")
        planes[2, t0 + 4 : t0 + 6, 10:13] = NAMES.index("trunk")
        planes[0, t0 : t0 + 6, 10:13] = NAMES.index("green")
        if i % 2 == 0:  # a red house at the bottom right, with a window
            planes[1, 12:16, 8:16] = NAMES.index("house")
            planes[0, 12:16, 8:16] = NAMES.index("red")
            planes[2, 13:15, 10:12] = NAMES.index("window")
        if i % 4 == 1:  # a red sun in the sky
            planes[1, 0:2, 7:9] = NAMES.index("sun")
            planes[0, 0:2, 7:9] = NAMES.index("red")
        from unitscope.describe.concepts import image_concepts

        bits.append(image_concepts(planes, torch.zeros(1, dtype=torch.long), plane_category, cats, vocab, (size, size)))
    return vocab, bits


def _formula(vocab, names, ops):
    c = torch.full((1, 3), -1, dtype=torch.long)
    o = torch.full((1, 3), -1, dtype=torch.long)
    for j, (name, op) in enumerate(zip(names, ops)):
        c[0, j], o[0, j] = vocab.index(name), op
    return c, o


PLANTED = [  # formula, the phrases of it and of formulas equal to it on every image of the world
    (("red", "car", "tree"), (FIRST, AND, OR), {"red cars or trees"}),
    (("crown", "top", "edge"), (FIRST, AND, AND), {"the top edge of crowns"}),
    (("window", "house"), (FIRST, AND_NOT), {"windows, not of houses", "windows of cars"}),
    (("window", "car"), (FIRST, AND), {"windows, not of houses", "windows of cars"}),
]


def test_position_masks_hand_computed():
    anchor = torch.zeros(6, 6, dtype=torch.long)
    anchor[0:3, 0:3] = 5  # one 3x3 region: each third is one row / column
    pos = position_masks(anchor)
    top, bottom, left, right, centre, edge = pos
    assert top[0, :3].all() and top.sum() == 3
    assert bottom[2, :3].all() and bottom.sum() == 3
    assert left[:3, 0].all() and left.sum() == 3 and right[:3, 2].all()
    assert centre[1, 1] and centre.sum() == 1
    # edge: region pixels with a 4-neighbour outside it; the image border is not an edge
    assert edge.sum() == 5 and edge[2, :3].all() and edge[:3, 2].all() and not edge[0, 0]


def test_components_without_scipy_equal_scipy():
    """The propagation fallback labels 4-connected components exactly as scipy.ndimage does."""
    import numpy as np

    from unitscope.describe.concepts import _components_numpy

    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((12, 15)) < 0.45
        want, _ = ndimage.label(mask)
        got, boxes = _components_numpy(mask)
        assert np.array_equal(got, want)
        assert boxes == ndimage.find_objects(want)
    ring = np.zeros((5, 5), bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True  # one component, its hole outside it
    got, boxes = _components_numpy(ring)
    assert got.max() == 1 and boxes == [(slice(0, 5), slice(0, 5))]


def test_anchor_prefers_parts():
    planes = torch.tensor([[[4, 4], [4, 0]], [[8, 0], [0, 0]]])
    assert anchor_map(planes, torch.tensor([0, 1]), ["object", "part"]).tolist() == [[8, 4], [4, 0]]


def test_signatures_round_trip():
    vocab, bits = _world(n=5)
    sigs = Signatures.build(bits)
    for i, b in enumerate(bits):
        assert torch.equal(sigs.table[sigs.ids[i]].t().reshape(b.shape), b)
    assert len(torch.unique(sigs.table, dim=0)) == sigs.size


def _describe(vocab, bits, formulas):
    sigs = Signatures.build(bits)
    masks, images = [], []
    for names, ops in formulas:
        c, o = _formula(vocab, names, ops)
        truth = evaluate(c, o, sigs.table)[0]  # [S]
        m = truth[sigs.ids]  # [N, P]
        order = m.sum(1).argsort(descending=True, stable=True)[:15]
        images.append(order)
        masks.append(m[order])
    counts = unit_counts(sigs.ids, torch.stack(images), torch.stack(masks), sigs.size)
    return sigs, counts, beam_search(counts, sigs.table, vocab.position, beam=10, length=3)


def test_planted_formulas_found():
    """Each planted unit's best candidate has exemplar IoU 1 and the planted formula's mask on every
    pixel of every image (equal formulas may be written differently: windows here are on cars or
    houses, so 'window AND NOT house' is 'window AND car')."""
    vocab, bits = _world()
    sigs, counts, found = _describe(vocab, bits, [(n, o) for n, o, _ in PLANTED])
    for u, (names, ops, phrases) in enumerate(PLANTED):
        best = found.score[u].argmax()
        assert found.score[u, best].item() == pytest.approx(1.0)
        c, o = _formula(vocab, names, ops)
        want = evaluate(c, o, sigs.table)[0]
        got = evaluate(found.concepts[u, best][None], found.ops[u, best][None], sigs.table)[0]
        assert torch.equal(got, want)
        concepts = [(vocab.names[i], vocab.categories[i]) for i in found.concepts[u, best].tolist() if i >= 0]
        assert render(concepts, found.ops[u, best].tolist()) in phrases
    # the first two are found as planted, not as an equal formula
    for u in (0, 1):
        best = found.score[u].argmax()
        c, o = _formula(vocab, *PLANTED[u][:2])
        assert canonical_keys(found.concepts[u, best], found.ops[u, best], len(vocab)) == canonical_keys(
            c[0], o[0], len(vocab)
        )


def test_search_never_starts_with_a_position():
    vocab, bits = _world()
    _, _, found = _describe(vocab, bits, [(("crown", "top", "edge"), (FIRST, AND, AND))])
    first = found.concepts[0, :, 0]
    ok = torch.isfinite(found.score[0])
    assert not vocab.position[first[ok]].any()


def test_exemplar_scores_match_counts():
    vocab, bits = _world()
    sigs, counts, found = _describe(vocab, bits, [(("red", "car", "tree"), (FIRST, AND, OR))])
    pool = pool_candidates(found, len(vocab))
    s = exemplar_scores(counts, pool, sigs.table)
    for j in range(found.score.shape[1]):
        if torch.isfinite(found.score[0, j]):
            assert s[0, pool.index[0, j]].item() == pytest.approx(found.score[0, j].item(), abs=1e-6)


def test_pmi_prefers_specific_over_generic():
    """Unit 0 fits 'mammal' (0.6) a little better than 'dog' (0.5); units 1-3 fit 'mammal' too and
    'dog' hardly. Maximum likelihood says 'mammal', PMI 'dog'."""
    # columns: dog, mammal, sky
    s = torch.tensor([[0.5, 0.6, 0.1], [0.01, 0.5, 0.1], [0.01, 0.5, 0.2], [0.01, 0.5, 0.1]])
    got = choose(s, lam=0.2)
    assert got.ml[0].item() == 1 and got.pmi[0].item() == 0
    p = s / s.sum(1, keepdim=True)
    prior = p.mean(0)
    want = math.log(p[0, 0]) - 0.2 * math.log(prior[0])
    assert got.score[0].item() == pytest.approx(want, rel=1e-5)
    assert math.log(p[0, 0]) - 0.2 * math.log(prior[0]) > math.log(p[0, 1]) - 0.2 * math.log(prior[1])
    assert choose(s, lam=0.0).pmi[0].item() == 1  # lambda 0 is maximum likelihood


@pytest.mark.parametrize(
    "concepts, ops, phrase",
    [
        (
            [("window", "part"), ("house", "object"), ("car", "object")],
            [FIRST, AND, AND_NOT],
            "windows of houses, not of cars",
        ),
        (
            [("house", "object"), ("street", "scene"), ("roof", "part")],
            [FIRST, AND, AND_NOT],
            "houses in street scenes, not their roofs",
        ),
        ([("red", "color"), ("striped", "texture"), ("body", "part")], [FIRST, AND, AND], "red striped bodies"),
        ([("big_cat", "object"), ("left", "position")], [FIRST, AND], "the left side of big cats"),
        ([("tree", "object"), ("crown", "part"), ("top", "position")], [FIRST, AND, AND], "the top of crowns of trees"),
        ([("house", "object"), ("brick", "material")], [FIRST, AND], "houses of brick"),
        (
            [("sky", "object"), ("bottom", "position"), ("field", "scene")],
            [FIRST, AND, AND],
            "the bottom of sky in field scenes",
        ),
        ([("person", "object"), ("berry", "object")], [FIRST, OR], "people or berries"),
        (
            [("bird", "object"), ("camel", "object"), ("top", "position")],
            [FIRST, OR, AND],
            "the top of birds or camels",
        ),
    ],
)
def test_phrases(concepts, ops, phrase):
    assert render(concepts, ops) == phrase


def test_choice_among_candidates_hand_computed():
    """choose_candidates on the planted units: lambda 0 takes each unit's best exemplar IoU; the
    prior of the chosen formula is the mean over units of its pool-normalised exemplar IoU."""
    from unitscope.describe.select import choose_candidates

    vocab, bits = _world()
    sigs, counts, found = _describe(vocab, bits, [(n, o) for n, o, _ in PLANTED])
    pool = pool_candidates(found, len(vocab))
    s = exemplar_scores(counts, pool, sigs.table).double()
    prior = (s / s.sum(1, keepdim=True)).mean(0)
    ml = choose_candidates(found, pool, counts, sigs.table, lam=0.0)
    pmi = choose_candidates(found, pool, counts, sigs.table, lam=0.2)
    for u in range(len(PLANTED)):
        assert ml.exemplar_iou[u].item() == pytest.approx(found.score[u].max().item())
        d = int(pmi.pmi[u])
        assert pmi.log_prior[u].item() == pytest.approx(math.log(prior[d]), rel=1e-5)
        own = found.score[u].double()
        ok = torch.isfinite(own)
        first = [j for j in range(len(own)) if ok[j] and pool.index[u, j] not in pool.index[u, :j][ok[:j]].tolist()]
        z = own[first].sum()
        best = max(first, key=lambda j: math.log(own[j] / z) - 0.2 * math.log(prior[pool.index[u, j]]))
        assert d == int(pool.index[u, best])
    # with a sample smaller than the layer, units outside it add their own fit to p(d)
    half = choose_candidates(found, pool, counts, sigs.table, lam=0.2, sample=2)
    assert torch.isfinite(half.log_prior).all()


def test_rerank_among_top_pmi_candidates():
    """The candidate with the best validation score among the ``top`` best by PMI; ties keep the
    better PMI; a non-candidate (-inf PMI) is never chosen; top 1 is the best PMI."""
    from unitscope.describe.select import rerank_top

    inf = float("inf")
    pmi = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.5, -inf, 2.0, 1.0], [1.0, 2.0, -inf, -inf]])
    val = torch.tensor([[0.1, 0.3, 0.9, 0.2], [0.8, 0.9, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0]])
    assert rerank_top(pmi, val, 1).tolist() == [0, 2, 1]
    assert rerank_top(pmi, val, 2).tolist() == [1, 2, 1]  # row 1: 0.4 = 0.4, the better PMI (column 2) wins
    assert rerank_top(pmi, val, 3).tolist() == [2, 0, 1]  # row 2: columns 2, 3 are no candidates
    assert rerank_top(pmi, val, 10).tolist() == [2, 0, 1]


def test_validation_f1_hand_computed(tmp_path):
    """F1 of a unit's candidates pooled over all validation images (not only its exemplars), from
    the signature counts, equals the pixel count by hand."""
    from unitscope.describe import exemplars as ex
    from unitscope.describe.formulas import Found
    from unitscope.describe.run import RunConcepts, validation_f1

    vocab, bits = _world(n=6, size=8, seed=1)
    sigs = Signatures.build(bits)
    rc = RunConcepts(vocab, sigs, (8, 8))
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(6, 2, 4, 4, generator=g)  # 2 units, 4x4 maps upsampled to 8x8
    thresholds = torch.tensor([0.7, 0.5])
    concepts = torch.tensor([[[0, -1, -1], [1, 2, -1]], [[2, 0, 1], [3, -1, -1]]])
    ops = torch.tensor([[[FIRST, -1, -1], [FIRST, OR, -1]], [[FIRST, AND_NOT, AND], [FIRST, -1, -1]]])
    found = Found(concepts, ops, torch.tensor([[0.5, 0.4], [0.3, -float("inf")]]))
    positions = torch.tensor([1, 3, 4])
    orig = ex.unit_maps
    ex.unit_maps = lambda run, layer, pos: maps[pos]  # type: ignore[assignment]
    try:
        got = validation_f1(tmp_path, "x", rc, found, thresholds, positions, chunk=1)
    finally:
        ex.unit_maps = orig  # type: ignore[assignment]
    table = torch.stack([b.flatten(1).t() for b in bits])  # [N, P, K]
    for u in range(2):
        mask = ex.masks_of(maps[positions, u], thresholds[u].expand(3), (8, 8)).flatten(1)  # [3, P]
        for j in range(2):
            if j == 1 and u == 1:
                assert got[u, j] == -float("inf")
                continue
            truth = evaluate(concepts[u, j : j + 1], ops[u, j : j + 1], table[positions].flatten(0, 1))
            truth = truth.view(3, -1)
            want = 2 * (mask & truth).sum().item() / (mask.sum().item() + truth.sum().item())
            assert got[u, j].item() == pytest.approx(want, abs=1e-12)
