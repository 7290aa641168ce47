"""Model organisms: short schedules learn, resume is exact, shipped weights keep their promises,
and a segmenter turns a folder of plain images into a Broden folder that dissection runs on."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from unitscope import faults
from unitscope.data import BrodenDataset
from unitscope.models import create_model, get_info, list_models
from unitscope.organisms import train as train_mod
from unitscope.organisms.data import resized, world_arrays
from unitscope.organisms.recipes import RECIPES
from unitscope.organisms.registry import WEIGHTS, weights_metadata
from unitscope.organisms.tasks import MEAN, STD, TASKS, color_codebook, color_codes, decode_colors
from unitscope.organisms.train import sha256_file, train
from unitscope.segment import Segmenter, create_segmenter, label_folder
from unitscope.world import render_image
from unitscope.world.vocab import VOCAB, O

SHIPPED = sorted(p.stem for p in WEIGHTS.glob("*.json") if not p.stem.endswith(".ckpt"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("worlds")
    for seed in (5, 6):  # tiny train and held-out worlds, rendered once for the module
        world_arrays(root, seed=seed, n=48, size=64, workers=1, progress=False)
    return root


def _short(name: str, **kw):
    return dataclasses.replace(
        RECIPES[name], n_train=48, n_held_out=32, batch_size=16, epochs=4, world_seed=5, held_out_seed=6, **kw
    )


# the generators train on their own schedules: the GAN in test_generator.py, the decoder in test_prior_gen.py
@pytest.mark.parametrize("name", [n for n, r in RECIPES.items() if r.task not in ("gan", "vae", "frozen_vae")])
def test_short_schedule_loss_falls_and_shapes(name, cache, tmp_path):
    recipe = _short(name)
    meta = train(recipe, out=tmp_path, cache=cache, progress=False)
    losses = meta["losses_per_epoch"]
    assert len(losses) == 4 and losses[-1] < 0.95 * losses[0], losses
    assert meta["sha256"] == sha256_file(tmp_path / f"{name}.safetensors")
    assert meta["world"]["train_seed"] == 5 and meta["world"]["held_out_seed"] == 6
    model = create_model(name, pretrained=False, checkpoint=str(tmp_path / f"{name}.safetensors"))
    x = torch.zeros(2, 3, recipe.size, recipe.size)
    out = model(x)
    if recipe.task == "segment":
        assert {k: tuple(v.shape) for k, v in out.items()} == {
            c: (2, len(VOCAB[c]) + 1, 64, 64) for c in ("object", "part", "material", "color")
        }
    elif recipe.task == "color":
        assert out.shape == (2, len(color_codebook()["rgb"]), recipe.size, recipe.size)
        assert decode_colors(out, x).shape == (2, 3, recipe.size, recipe.size)
    else:
        assert out.shape == (2, len(recipe.class_names))
        assert model.features(x).shape == (2, 128, recipe.size // 8, recipe.size // 8)


def test_interrupted_training_resumes_exactly(cache, tmp_path):
    recipe = _short("world_scenes")
    whole = train(recipe, out=tmp_path / "a", cache=cache, progress=False, checkpoint_every=3)
    with faults.armed("train.step=10:raise"), pytest.raises(faults.FaultInjected):  # after step 10
        train(recipe, out=tmp_path / "b", cache=cache, progress=False, checkpoint_every=3)
    assert json.loads((tmp_path / "b" / "world_scenes.ckpt.json").read_text())["step"] == 9
    resumed = train(recipe, out=tmp_path / "b", cache=cache, progress=False, checkpoint_every=3)
    assert resumed["losses_per_epoch"] == pytest.approx(whole["losses_per_epoch"], rel=1e-5)
    from safetensors.torch import load_file

    a, b = (
        load_file(str(tmp_path / "a/world_scenes.safetensors")),
        load_file(str(tmp_path / "b/world_scenes.safetensors")),
    )
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_adamw_checkpoint_restores_the_optimizer_state(tmp_path):
    """A resumed AdamW run (the segmenter's) takes the very step the uninterrupted one takes."""
    recipe = dataclasses.replace(RECIPES["world_segmenter"], optimizer="adamw", lr=0.01)

    def setup(seed):
        torch.manual_seed(seed)
        net = torch.nn.Linear(3, 2)
        return net, train_mod._optimizer(recipe, net)

    def step(net, opt):
        opt.zero_grad()
        net(torch.ones(4, 3)).pow(2).sum().backward()
        opt.step()

    net, opt = setup(0)
    for _ in range(3):
        step(net, opt)
    train_mod._save_checkpoint(tmp_path / "m.safetensors", net, opt, {"step": 3})
    net2, opt2 = setup(1)
    assert train_mod._load_checkpoint(tmp_path / "m.safetensors", net2, opt2, "cpu") == {"step": 3}
    step(net, opt)
    step(net2, opt2)
    assert torch.allclose(net.weight, net2.weight, atol=1e-7) and torch.allclose(net.bias, net2.bias, atol=1e-7)
    assert float(opt2.state_dict()["state"][0]["step"]) == 4


def test_shuffled_labels_are_half_random_and_fixed():
    data = {"scene": np.arange(4000) % 8}
    labels = TASKS["scene"](shuffle=0.5, label_seed=0).train_labels(data)
    changed = (labels != data["scene"]).mean()
    assert 0.40 < changed < 0.47  # 50% redrawn, 1/8 of those redrawn to the same scene
    assert (TASKS["scene"](shuffle=0.5, label_seed=0).train_labels(data) == labels).all()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_match_sha256_and_load(name):
    meta = weights_metadata(name)
    assert sha256_file(WEIGHTS / meta["file"]) == meta["sha256"]
    model = create_model(name)
    info = get_info(model)
    assert info.class_names == list(RECIPES[name].class_names)
    assert name in list_models("world_*")


def test_shipped_weights_are_small():
    assert sum(p.stat().st_size for p in WEIGHTS.glob("*.safetensors")) < 25e6


def _fresh_world(n: int, size: int = 64, seed: int = 3) -> dict:
    ims = [render_image(seed, i, size) for i in range(n)]
    return {
        "rgb": np.stack([im.rgb for im in ims]),
        "scene": np.array([im.scene for im in ims]),
        **{c: np.stack([im.full[c] for im in ims]).astype(np.uint8) for c in ("object", "part", "material")},
    }


@pytest.fixture(scope="module")
def fresh():
    return _fresh_world(200)  # a world seed no model was trained or evaluated on


@pytest.mark.skipif("world_scenes" not in SHIPPED, reason="world_scenes weights not shipped")
def test_world_scenes_reaches_its_accuracy_on_a_fresh_world(fresh):
    meta = weights_metadata("world_scenes")
    acc = TASKS["scene"]().evaluate(create_model("world_scenes"), resized(fresh, RECIPES["world_scenes"].size))[
        "accuracy"
    ]
    assert acc >= 0.9 and meta["metrics"]["accuracy"] >= 0.9
    assert abs(acc - meta["metrics"]["accuracy"]) < 0.05


@pytest.mark.skipif("world_scenes_shuffled" not in SHIPPED, reason="world_scenes_shuffled weights not shipped")
def test_shuffled_twin_reaches_its_stated_accuracy(fresh):
    meta = weights_metadata("world_scenes_shuffled")
    acc = TASKS["scene"]().evaluate(
        create_model("world_scenes_shuffled"), resized(fresh, RECIPES["world_scenes_shuffled"].size)
    )["accuracy"]
    assert abs(acc - meta["metrics"]["accuracy"]) < 0.06


@pytest.mark.skipif("world_scenes_shuffled" not in SHIPPED, reason="world_scenes_shuffled weights not shipped")
def test_shuffled_twin_has_memorised_its_random_labels():
    """The twin fits its own training labels, half of them random, as its metadata says; the
    honest world_scenes, which never saw those random labels, agrees only where they are true."""
    recipe = RECIPES["world_scenes_shuffled"]
    n = 150
    ims = [render_image(recipe.world_seed, i, recipe.render_size) for i in range(n)]
    scenes = np.zeros(recipe.n_train, np.int64)  # the shuffled draw depends only on the array length
    scenes[:n] = [im.scene for im in ims]
    labels = TASKS["scene"](**recipe.task_kw).train_labels({"scene": scenes})[:n]
    own = {"rgb": np.stack([im.rgb for im in ims]), "scene": labels}
    random_share = (labels != scenes[:n]).mean()
    assert 0.3 < random_share < 0.6
    twin = TASKS["scene"]().evaluate(create_model("world_scenes_shuffled"), resized(own, recipe.size))["accuracy"]
    honest = TASKS["scene"]().evaluate(create_model("world_scenes"), resized(own, RECIPES["world_scenes"].size))[
        "accuracy"
    ]
    stated = weights_metadata("world_scenes_shuffled")["metrics"]["train_label_accuracy"]
    assert abs(twin - stated) < 0.08, (twin, stated)
    assert stated > 0.9 and honest < 1 - random_share + 0.05 and twin > honest + 0.2


@pytest.mark.skipif("world_segmenter" not in SHIPPED, reason="world_segmenter weights not shipped")
def test_world_segmenter_reaches_its_pixel_accuracy(fresh):
    meta = weights_metadata("world_segmenter")
    m = TASKS["segment"]().evaluate(create_model("world_segmenter"), fresh)
    for key in ("object_pixel_accuracy", "material_pixel_accuracy", "color_pixel_accuracy"):
        assert abs(m[key] - meta["metrics"][key]) < 0.04, (key, m[key], meta["metrics"][key])
    assert m["object_pixel_accuracy"] >= 0.85 and meta["metrics"]["object_pixel_accuracy"] >= 0.85


def test_color_codebook_names_its_own_prototypes_and_decoding_keeps_the_grey():
    book = color_codebook()
    protos = np.round(book["rgb"] * 255).astype(np.uint8)
    assert (color_codes(protos) == np.arange(len(protos))).all()
    assert len(protos) == 36 and sorted(set(book["name"])) == list(range(1, 12))  # 11 colour names
    x = (torch.rand(1, 3, 4, 4) - 0.5) / 0.25
    logits = torch.full((1, len(protos), 4, 4), -50.0)
    logits[:, 0] = 50.0  # certain: every pixel is prototype 0 (a red)
    rgb = decode_colors(logits, x) * STD[0] + MEAN[0]
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    want = (x * STD[0] + MEAN[0]) * luma
    inside = (rgb > 1e-4).all(1) & (rgb < 1 - 1e-4).all(1)  # unclamped pixels keep the input's luma
    assert torch.allclose((rgb * luma).sum(1)[inside], want.sum(1)[inside], atol=1e-5)
    chroma = rgb - (rgb * luma).sum(1, keepdim=True)
    red = torch.tensor(book["rgb"][0]).view(1, 3, 1, 1)
    assert torch.allclose(
        chroma[inside.unsqueeze(1).expand_as(chroma)],
        (red - (red * luma).sum(1, keepdim=True)).expand_as(chroma)[inside.unsqueeze(1).expand_as(chroma)],
        atol=1e-5,
    )


@pytest.mark.skipif("world_colorizer" not in SHIPPED, reason="world_colorizer weights not shipped")
def test_world_colorizer_beats_its_baselines_on_a_fresh_world(fresh):
    """It names pixel colours from the grey image far better than always saying the commonest
    colour or naming the grey pixels, and its colours are closer to the truth than the grey."""
    meta = weights_metadata("world_colorizer")
    m = TASKS["color"]().evaluate(create_model("world_colorizer"), resized(fresh, RECIPES["world_colorizer"].size))
    assert abs(m["color_accuracy"] - meta["metrics"]["color_accuracy"]) < 0.05, m
    assert m["color_accuracy"] > max(m["color_accuracy_majority"], m["color_accuracy_grey"]) + 0.2, m
    assert m["l1"] < 0.8 * m["l1_grey_baseline"], m
    colour = torch.zeros(1, 3, 48, 48)
    colour[:, 0] = 2.0  # a red image and its grey give the colorizer the same input
    net = create_model("world_colorizer")
    assert torch.allclose(net(colour), net(net.grey(colour)), atol=1e-5)


class BlueSky(Segmenter):
    """A user segmenter: 'sky' wherever blue exceeds red and green by 0.2; nothing else."""

    categories = ("object",)
    labels = {"object": VOCAB["object"]}

    def segment(self, images):
        r, g, b = images[:, 0], images[:, 1], images[:, 2]
        return {"object": torch.where((b > r + 0.2) & (b > g + 0.2), O["sky"], 0).long()}


def _write_images(folder, n=6, size=64):
    folder.mkdir()
    for i in range(n):
        Image.fromarray(render_image(4, i, size).rgb).save(folder / f"img{i}.png")


def test_user_segmenter_labels_a_folder_exactly(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    im = np.zeros((8, 8, 3), np.uint8)
    im[:4] = (20, 40, 230)  # top half blue
    Image.fromarray(im).save(folder / "a.png")
    ds = BrodenDataset(label_folder(folder, BlueSky(), tmp_path / "broden", progress=False))
    labels = ds[0]["labels"][0]
    assert labels.shape == (4, 4)
    assert (labels[:2] == O["sky"]).all() and (labels[2:] == 0).all()
    assert ds.label_names[O["sky"]] == "sky"


@pytest.mark.skipif("world_segmenter" not in SHIPPED, reason="world_segmenter weights not shipped")
def test_world_label_writes_a_folder_dissection_runs_on(tmp_path):
    from unitscope.cli import main
    from unitscope.commands.dissect import DissectConfig, run_dissection

    _write_images(tmp_path / "plain")
    assert main(["world", "label", str(tmp_path / "plain"), "--out", str(tmp_path / "lab"), "--no-progress"]) == 0
    ds = BrodenDataset(tmp_path / "lab", validate="full")
    assert len(ds) == 6 and ds.categories == ["object", "part", "material", "color"]
    truth = np.stack([render_image(4, i, 64).labels["object"] for i in range(6)])
    got = np.stack([ds.get(i, image=False)["labels"][0].numpy() for i in range(6)])
    assert (got == truth).mean() > 0.7  # the segmenter's labels agree with the world's own
    model = "world_scenes" if "world_scenes" in SHIPPED else "world_segmenter"
    cfg = DissectConfig(
        model=model,
        data=str(tmp_path / "lab"),
        out=str(tmp_path / "run"),
        report=False,
        progress=False,
        batch_size=6,
        layers=["features.relu5"] if model == "world_scenes" else [],
    )
    result = run_dissection(cfg)
    assert len(result.layers) >= 1


def test_segmenters_are_a_public_registry(monkeypatch):
    """``segment.py`` names no organism: ``world_segmenter`` registers itself on first need, and a
    user's segmenter registers the same way."""
    import unitscope.segment as segment
    from unitscope.segment import list_segmenters, register_segmenter

    assert "world_segmenter" not in segment._SEGMENTERS or segment.PLUGINS.loaded
    assert "world_segmenter" in list_segmenters()
    monkeypatch.setattr(segment, "_SEGMENTERS", dict(segment._SEGMENTERS))
    register_segmenter("blue_sky", lambda device="cpu": BlueSky())
    assert list_segmenters("blue*") == ["blue_sky"]
    assert isinstance(create_segmenter("blue_sky"), BlueSky)
    with pytest.raises(ValueError, match="already registered"):
        register_segmenter("blue_sky", lambda device="cpu": BlueSky())
    with pytest.raises(ValueError, match="unknown segmenter 'nope'; registered: blue_sky, world_segmenter"):
        create_segmenter("nope")
    source = segment.__file__ and open(segment.__file__).read()
    assert "world_segmenter" not in source.split('"""', 2)[2]  # only its docstring names the organism
