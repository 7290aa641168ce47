"""The exemplar captioner: a user's captioner plugged in as file.py:factory, the shipped default
naming planted concepts, and its training (the loss falls; a resumed run equals an unbroken one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.planted import dissect_planted
from unitscope.describe.captioner import ExemplarCaptioner, ExemplarNet, caption_run, decode, load_captioner
from unitscope.describe.formulas import AND, AND_NOT, FIRST
from unitscope.describe.train_captioner import build_pool, loss_of, sample_set, train
from unitscope.errors import UsageError

PLANTED = str(Path(__file__).parents[1] / "helpers" / "planted.py")

USER_CAPTIONER = '''
import torch

def factory():
    """A user's captioner: the brightest channel inside the masks."""
    def caption(images, masks):
        inside = (images * masks[:, None]).sum((0, 2, 3)) / masks.sum().clamp_min(1)
        return ["reddish", "greenish", "bluish"][int(inside.argmax())] + " regions"
    return caption

not_a_factory = 3
'''


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small convolutions run faster on one thread (and much faster on a loaded machine)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from unitscope.world import make_world

    return make_world(tmp_path_factory.mktemp("world") / "w64", n=30, size=64, seed=3, workers=1, progress=False)


@pytest.fixture(scope="module")
def run(world, tmp_path_factory):
    from unitscope.models import create_model

    model = create_model(f"{PLANTED}:colour_units", world=str(world))
    return dissect_planted(model, world, tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def pool(world):
    return build_pool(world)


def test_user_captioner_plugs_in(run, tmp_path):
    from unitscope.catalog import Catalog
    from unitscope.describe.search import search_units

    path = tmp_path / "my_captions.py"
    path.write_text(USER_CAPTIONER)
    cap = load_captioner(f"{path}:factory")
    out = caption_run(run, None, cap, k=5)
    # the planted units fire on red, green and blue pixels (tests/helpers/planted.py)
    assert [r["description"] for r in out["feat"]] == ["reddish regions", "greenish regions", "bluish regions"]
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        rows = cat.rows("descriptions", kind="caption")
    assert [(r["unit"], r["description"], r["formula"]) for r in rows] == [
        (0, "reddish regions", None),
        (1, "greenish regions", None),
        (2, "bluish regions", None),
    ]
    # no formula: the caption's words are what it asserts
    assert [h["unit"] for h in search_units(run, "reddish", kind="caption", embed=False)] == [0]
    # the command: captions only, no labels read
    from unitscope.cli import main

    assert main(["describe", str(run), "--no-labels", "--captioner", f"{path}:factory", "--exemplars", "5"]) == 0
    assert main(["describe", str(run), "--no-labels"]) != 0  # nothing to do: says to add --captioner
    with pytest.raises(UsageError, match="callables there: factory"):
        load_captioner(f"{path}:nope")
    with pytest.raises(UsageError, match="not a callable"):
        _returns_non_callable(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        load_captioner(f"{tmp_path / 'missing.py'}:factory")
    with pytest.raises(UsageError, match="expected 'default', 'photo' or path/to/file.py:factory"):
        load_captioner("clip")


def _returns_non_callable(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("def factory():\n    return 42\n")
    return load_captioner(f"{path}:factory")


def test_decode_renders_the_predicted_formula():
    cats = ["color", "object", "part", "scene", "position"]
    names = ["red", "car", "window", "street", "top"]
    out = {
        "pos": torch.tensor([3.0, 2.0, -1.0, -2.0, 4.0]),
        "neg": torch.tensor([0.0, 0.0, 5.0, 0.0, 0.0, 1.0]),
        "count": torch.tensor([0.0, 3.0, 0.0]),
        "op": torch.tensor([1.0, 0.0]),
    }
    # the head is the best non-position concept (red), then the next best (top); window after AND NOT
    assert decode(out, cats) == ([0, 4, 2], [FIRST, AND, AND_NOT])
    cap = ExemplarCaptioner(ExemplarNet(5), names, cats)
    from unitscope.describe.phrases import render

    assert (
        render([(names[c], cats[c]) for c in [0, 4, 2]], [FIRST, AND, AND_NOT]) == "the top of red regions, not windows"
    )
    assert cap.names == names


def test_default_captioner_names_planted_concepts(pool, run):
    """Planted one-concept exemplar sets of a world it was not trained on (seed 3): the top 15
    images of each concept present in at least 15 of the 30, the concept's exact mask."""
    cap = load_captioner("default")
    assert isinstance(cap, ExemplarCaptioner) and cap.names == pool.names
    named, missed = [], []
    for c, name in enumerate(pool.names):
        if pool.categories[c] == "position" or pool.seen[c] < 15:
            continue
        masks = pool.bits[:, c]
        top = masks.flatten(1).sum(1).topk(15).indices
        concepts, ops = cap.predict(pool.images[top].float() / 255, masks[top])
        (named if c in [x for x, o in zip(concepts, ops) if o != AND_NOT] else missed).append(name)
    assert {"sky", "red", "green", "blue", "grey", "person"} <= set(named), (named, missed)
    assert len(named) >= 0.55 * (len(named) + len(missed)), (named, missed)  # 15 of 23 with the shipped weights
    # on a dissection run: the planted colour units (masks above the 0.99 quantile of red, green, blue)
    out = caption_run(run, None, cap)
    said = [r["formula"].split(" ") for r in out["feat"]]
    assert "red" in said[0] and "green" in said[1] and "blue" in said[2], said


def test_training_loss_falls(pool):
    rng = np.random.default_rng(0)
    sets = [sample_set(pool, rng, k=4) for _ in range(6)]
    torch.manual_seed(0)
    net = ExemplarNet(len(pool.names), width=8, hidden=32)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = float(loss_of(net, pool, sets).detach())
    for _ in range(40):
        loss = loss_of(net, pool, sets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss_of(net, pool, sets).detach()) < 0.5 * first


def test_training_resumes_where_it_stopped(pool, tmp_path):
    a = train(pool, tmp_path / "a", steps=4, batch=2, every=2, log=False, k=3)
    b = train(pool, tmp_path / "b", steps=4, batch=2, every=2, log=False, k=3, stop=2)  # stopped after step 2 ...
    state = torch.load(tmp_path / "b" / "state.pt", weights_only=False)
    assert state["step"] == 2
    b = train(pool, tmp_path / "b", steps=4, batch=2, every=2, log=False, k=3)  # ... and resumes to 4
    for (name, x), y in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(x, y), name
    assert ExemplarCaptioner.load(tmp_path / "b" / "captioner.pt").names == pool.names


@pytest.fixture(scope="module")
def photo_pool(tmp_path_factory):
    """A 60-image photo world of a seed the photo captioner was not trained on (1) nor measured on (2)."""
    import os

    from unitscope.world import make_world
    from unitscope.world.sources import MissingSources

    try:
        world = make_world(
            tmp_path_factory.mktemp("photo") / "p64", n=60, size=64, seed=3, style="photo", workers=1, progress=False
        )
    except MissingSources as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc}; CI=true requires the photo-world tests to run")
        pytest.skip(str(exc))
    return build_pool(world)


def test_photo_captioner_names_planted_photo_concepts(photo_pool):
    """The shipped photo-world captioner (``--captioner photo``) speaks the photo world's vocabulary
    and names the concept of planted one-concept sets (each concept in at least 15 of the 60 images:
    its top 15 images and exact masks)."""
    cap = load_captioner("photo")
    assert isinstance(cap, ExemplarCaptioner) and cap.names == photo_pool.names
    named, missed = [], []
    for c, name in enumerate(photo_pool.names):
        if photo_pool.categories[c] == "position" or photo_pool.seen[c] < 15:
            continue
        masks = photo_pool.bits[:, c]
        top = masks.flatten(1).sum(1).topk(15).indices
        concepts, ops = cap.predict(photo_pool.images[top].float() / 255, masks[top])
        (named if c in [x for x, o in zip(concepts, ops) if o != AND_NOT] else missed).append(name)
    # with the shipped weights: red, pink, black, white, grey, sky named; orange, green, brown, fruit,
    # mammal missed (6 of 11; the cartoon-world captioner cannot name a photo concept at all)
    assert {"red", "white", "sky"} <= set(named), (named, missed)
    assert len(named) >= 6 and len(named) + len(missed) == 11, (named, missed)
