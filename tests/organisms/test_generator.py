"""world_generator: the GAN's pieces with exact numbers, a short schedule that is seeded, resumable and
whose discriminator learns, the shipped weights, and samples -> world label -> a Broden folder.

What a GAN test can assert honestly: D's hinge loss starts near 2 (it cannot tell real from fake)
and falls as it learns to; G's loss is a moving target and is not asserted to fall. Sample quality
is judged on the shipped weights by what the segmenter finds in them (test at the end)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from unitscope import faults
from unitscope.data import BrodenDataset
from unitscope.models import create_model, get_info, list_models
from unitscope.organisms import gan
from unitscope.organisms.data import world_arrays
from unitscope.organisms.gan import Discriminator, Generator, d_hinge_loss, g_hinge_loss, sample_z, train_gan
from unitscope.organisms.gan_eval import (
    INDOOR_ONLY,
    OUTDOOR_ONLY,
    chimera_rate,
    chimeras,
    frechet_distance,
    frechet_segmentation_distance,
    fsd_infinity,
    object_table,
    pixel_share_tvd,
    presence_mean_abs_diff,
    presence_tvd,
    share_vectors,
)
from unitscope.organisms.recipes import GAN_RECIPE, RECIPES
from unitscope.organisms.registry import WEIGHTS, weights_metadata
from unitscope.organisms.train import sha256_file, train
from unitscope.world.vocab import VOCAB, O

SHIPPED = (WEIGHTS / "world_generator.json").exists()


def test_generator_shapes_range_and_seeded_z():
    torch.manual_seed(0)
    g = Generator().eval()
    z = sample_z(3, seed=7)
    assert z.shape == (3, gan.LATENT) and torch.equal(z, sample_z(3, seed=7))
    with torch.no_grad():
        x = g(z)
        assert x.shape == (3, 3, 64, 64)
        assert x.min() >= 0 and x.max() <= 1
        assert torch.equal(x, g(z.view(3, -1, 1, 1)))  # [N, Z, 1, 1] is the same input
        assert torch.allclose(x[1:2], g(z[1:2]), atol=1e-5)  # eval mode: an image depends on its own z only
    assert Discriminator()(x).shape == (3,)


@pytest.mark.parametrize("upsample", ["transposed", "nearest", "bilinear"])
def test_generator_upsampling_variants_share_layer_names(upsample):
    torch.manual_seed(0)
    g = gan.generator_for({"upsample": upsample, "g_channels": [32, 16, 8, 4]}).eval()
    names = dict(g.named_modules())
    assert all(k in names for k in gan.GENERATOR_LAYERS)  # the default dissection layers exist in every variant
    kinds = {type(m) for m in g.modules()}
    assert (nn.Upsample in kinds) == (upsample != "transposed")
    assert (names["conv2"].out_channels, names["conv5"].out_channels) == (16, 3)
    h = {}
    names["relu4"].register_forward_hook(lambda m, i, o: h.setdefault("relu4", o))
    with torch.no_grad():
        x = g(sample_z(2, seed=1))
    assert x.shape == (2, 3, 64, 64) and h["relu4"].shape == (2, 4, 32, 32)
    with pytest.raises(ValueError, match="upsample must be"):
        Generator(upsample="cubic")


def test_hinge_losses_exact():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # real: relu(1 - 2) = 0, relu(1 - 0.5) = 0.5; fake: relu(1 - 2) = 0, relu(1 + 0) = 1
    assert d_hinge_loss(real, fake).item() == pytest.approx(0.25 + 0.5)
    assert d_hinge_loss(torch.zeros(4), torch.zeros(4)).item() == 2.0  # a D that cannot tell
    assert g_hinge_loss(fake).item() == pytest.approx(1.0)


def test_object_table_and_distances_exact():
    maps = np.zeros((2, 10, 10), np.int64)
    maps[0, :5] = O["sky"]  # image 0: half sky, one tree pixel (1%: under the 2% used below)
    maps[0, 9, 9] = O["tree"]
    maps[1, :, :2] = O["tree"]  # image 1: 20% tree
    t = object_table(maps, min_share=0.02)
    assert t["sky"] == {"presence": 0.5, "pixel_share": 0.25}
    assert t["tree"]["presence"] == 0.5 and t["tree"]["pixel_share"] == pytest.approx((0.01 + 0.2) / 2)
    assert t["house"] == {"presence": 0.0, "pixel_share": 0.0}
    u = object_table(maps[:1], min_share=0.02)  # sky only (the tree pixel is under 2%)
    assert presence_tvd(t, t) == 0.0
    assert presence_tvd(t, u) == pytest.approx(0.5)  # {sky .5, tree .5} vs {sky 1}
    # pixel shares: t {sky .25, tree .105, none .645}, u {sky .5, tree .01, none .49}
    assert pixel_share_tvd(t, u) == pytest.approx(0.5 * (0.25 + 0.095 + 0.155))
    assert presence_mean_abs_diff(t, u) == pytest.approx((0.5 + 0.5) / 17)  # sky 0.5 vs 1, tree 0.5 vs 0


def test_fsd_equals_the_closed_form():
    # a: mean (1, 2), covariance diag(2/3, 8/3); b: mean (0, -1), diag(6, 2/3) (np.cov divides by N - 1)
    a = np.array([[1, 0], [-1, 0], [0, 2], [0, -2]], np.float64) + [1, 2]
    b = np.array([[3, 0], [-3, 0], [0, 1], [0, -1]], np.float64) + [0, -1]
    expected = (1 + 9) + (np.sqrt(2 / 3) - np.sqrt(6)) ** 2 + (np.sqrt(8 / 3) - np.sqrt(2 / 3)) ** 2
    assert frechet_segmentation_distance(a, b) == pytest.approx(expected, rel=1e-12)
    assert frechet_segmentation_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    assert frechet_segmentation_distance(b, a) == pytest.approx(expected, rel=1e-12)
    # covariances that do not commute: for 2x2, tr((S_a S_b)^(1/2)) = sqrt(tr(S_a S_b) + 2 sqrt(det S_a det S_b))
    sa, sb = np.array([[2.0, 1.0], [1.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 3.0]])
    root = np.sqrt(np.trace(sa @ sb) + 2 * np.sqrt(np.linalg.det(sa) * np.linalg.det(sb)))
    mu = np.array([0.5, -0.5])
    assert frechet_distance(mu, sa, np.zeros(2), sb) == pytest.approx(0.5 + 3 + 4 - 2 * root, rel=1e-12)
    assert frechet_distance(np.zeros(2), np.zeros((2, 2)), np.zeros(2), sb) == pytest.approx(4.0)  # a point mass
    with pytest.raises(ValueError, match="at least 2 images"):
        frechet_segmentation_distance(a[:1], b)


def test_fsd_infinity_removes_the_sample_size_bias():
    # paired sets differing by a fixed shift: every subset's FSD is |shift|^2 exactly, so the line is flat
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 3))
    r = fsd_infinity(a, a + [1.0, 2.0, 0.0], draws=2, paired=True)
    assert r["fsd_infinity"] == pytest.approx(5.0, abs=1e-9) and r["slope"] == pytest.approx(0.0, abs=1e-6)
    assert r["sd"] == pytest.approx(0.0, abs=1e-9)
    assert fsd_infinity(a[:8], a[:8] + 1.0, paired=True)["sizes"] == [2, 3, 4, 5, 6, 7, 8]  # never under 2
    assert r["sizes"] == [80, 120, 160, 200, 240, 280, 320, 360, 400] and r["fsd_at"] == pytest.approx([5.0] * 9)
    # two disjoint sets of one Gaussian: FSD on 200 images is well above 0, its extrapolation is not
    b, c = rng.normal(size=(2, 2000, 6))
    r = fsd_infinity(b, c, draws=5, seed=1)
    biased = r["fsd_at"][0]  # 400 images a side
    assert biased > 0.02 and r["slope"] > 0 and abs(r["fsd_infinity"]) < 0.25 * biased
    assert 0 < r["sd"] < 0.25 * biased  # the intercept is 0 within its error
    assert r["fsd_at"][0] > 2 * r["fsd_at"][-1]  # more images, less bias
    with pytest.raises(ValueError, match="same images"):
        fsd_infinity(a, c, paired=True)
    with pytest.raises(ValueError, match="two subset sizes"):
        fsd_infinity(a, a, sizes=[100, 500])


def test_share_vectors_and_chimeras_exact():
    maps = np.zeros((5, 10, 10), np.int64)
    maps[0, :5], maps[0, 5:] = O["sky"], O["floor"]  # outdoor-only over indoor-only: a chimera
    maps[1, :5], maps[1, 5:] = O["sky"], O["bed"]  # beds stand in fields too: no chimera
    maps[2, :5], maps[2, 5:] = O["cabinet"], O["floor"]  # a room
    maps[3, :5], maps[3, 9, 9] = O["sea"], O["cabinet"]  # 1% cabinet: a chimera at 0.5%, not at 2%
    maps[4, :, :3] = O["house"]
    maps[4, :, 3:] = O["cabinet"]  # house beside cabinet: a chimera
    v = share_vectors(maps)
    names = [n for n, _ in VOCAB["object"]]
    assert v.shape == (5, len(names)) and v[0, names.index("sky")] == 50.0 and v[3, names.index("cabinet")] == 1.0
    assert v[4, names.index("house")] == 30.0 and v.sum(1).tolist() == [100.0, 100.0, 100.0, 51.0, 100.0]
    assert chimeras(maps).tolist() == [True, False, False, True, True]
    assert chimera_rate(maps) == pytest.approx(3 / 5)
    assert chimera_rate(maps, min_share=0.02) == pytest.approx(2 / 5)
    assert frechet_segmentation_distance(v, v) == pytest.approx(0.0, abs=1e-9)


def test_the_world_itself_draws_no_chimeras():
    """Both sets read off the scene composers: the world's own label maps (every scene) hold none."""
    from unitscope.world import render_image

    ims = [render_image(0, i, 64) for i in range(32)]  # 4 images of each of the 8 scenes
    maps = np.stack([im.full["object"] for im in ims])
    assert chimera_rate(maps) == 0.0
    present = object_table(maps)
    assert present["sky"]["presence"] > 0.5 and present["floor"]["presence"] == pytest.approx(0.25)
    assert not set(INDOOR_ONLY) & set(OUTDOOR_ONLY)


def test_scene_conditional_generator_reads_its_scene_from_z_and_cuts_exactly():
    from unitscope.ablate import cut_model
    from unitscope.organisms.nets import scene_of_z

    z = torch.zeros(3, gan.LATENT)
    z[0, 3], z[1, 7], z[2, 20] = 1.0, 2.0, 5.0  # coordinate 20 is not a scene coordinate
    assert scene_of_z(z, 8).tolist() == [3, 7, 0] and scene_of_z(z.view(3, -1, 1, 1), 8).tolist() == [3, 7, 0]
    counts = torch.bincount(scene_of_z(sample_z(8000, seed=0), 8), minlength=8)
    assert counts.min() > 900 and counts.max() < 1100  # uniform over the scenes, as the world's are
    torch.manual_seed(0)
    g = gan.generator_for({"upsample": "nearest", "g_channels": [32, 16, 8, 4], "scenes": 8}).eval()
    assert g.conv1.in_channels == gan.LATENT + 8
    zs = sample_z(4, seed=2)
    swapped = zs.clone()
    swapped[:, :8] = swapped[:, :8].roll(1, dims=1)  # the same numbers, another scene
    with torch.no_grad():
        x = g(zs)
        assert not torch.allclose(x, g(swapped))
        cut = cut_model(g, "relu2")
        assert cut.exact_tail and torch.allclose(cut.tail(cut.head(zs.view(4, -1, 1, 1))), x, atol=1e-6)
    d = Discriminator((4, 4, 4, 4), classes=8)
    with pytest.raises(ValueError, match="pass the labels"):
        d(x)
    scores = torch.stack([d(x, torch.full((4,), k)) for k in range(8)])  # [8 scenes, 4 images]
    assert scores.shape == (8, 4) and scores.std(0).min() > 0  # the label changes the score
    with pytest.raises(ValueError, match="scenes must be"):
        Generator(scenes=65)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("worlds")
    for seed in (5, 6):
        world_arrays(root, seed=seed, n=48, size=64, workers=1, progress=False)
    return root


def _short(**kw):
    kw = {"n_train": 48, "batch_size": 8, "epochs": 4, "world_seed": 5, "held_out_seed": 6, **kw}
    return dataclasses.replace(GAN_RECIPE, **kw)


def test_short_schedule_d_learns_and_files_are_right(cache, tmp_path):
    torch.set_num_threads(1)
    meta = train(_short(n_held_out=8), out=tmp_path, cache=cache, progress=False)
    d = meta["d_losses_per_epoch"]
    assert len(d) == 4 and len(meta["g_losses_per_epoch"]) == 4
    assert d[0] > 1.0 and d[-1] < 0.8 * d[0], d  # D starts near 2 and learns to tell real from fake
    assert meta["sha256"] == sha256_file(tmp_path / "world_generator.safetensors")
    assert meta["model"] == {"kind": "generator", "latent": gan.LATENT, "output": [3, 64, 64], "range": [0, 1]}
    assert set(meta["object_tables"]) == {"generated", "real_segmented", "real_truth"}
    assert 0 <= meta["metrics"]["presence_tvd"] <= 1
    shipped = load_file(str(tmp_path / "world_generator.safetensors"))
    assert set(shipped) == set(Generator().state_dict())  # only G is shipped; D lives in the checkpoint
    ckpt = load_file(str(tmp_path / "world_generator.ckpt.safetensors"))
    assert any(k.startswith("d.") for k in ckpt) and any(k.startswith("opt_d.") for k in ckpt)
    g = gan.generator_for(GAN_RECIPE.task_kw)  # (world_generator is the decoder now: the GAN is built by hand)
    g.load_state_dict(shipped)
    assert g(sample_z(2, 0)).shape == (2, 3, 64, 64)


@pytest.mark.slow
def test_same_seed_same_weights_and_resume_is_exact(cache, tmp_path):
    torch.set_num_threads(1)
    recipe = _short(n_held_out=0, n_train=32, epochs=2)  # 4 steps an epoch
    a = train_gan(recipe, tmp_path / "a", cache, progress=False, checkpoint_every=4)
    b = train_gan(recipe, tmp_path / "b", cache, progress=False, checkpoint_every=4)
    assert a["d_losses_per_epoch"] == b["d_losses_per_epoch"]
    with faults.armed("gan.step=6:raise"), pytest.raises(faults.FaultInjected):  # after step 6, checkpoint at 4
        train_gan(recipe, tmp_path / "c", cache, progress=False, checkpoint_every=4)
    assert json.loads((tmp_path / "c/world_generator.ckpt.json").read_text())["step"] == 4
    c = train_gan(recipe, tmp_path / "c", cache, progress=False, checkpoint_every=4)
    assert c["d_losses_per_epoch"] == pytest.approx(a["d_losses_per_epoch"], rel=1e-5)
    wa, wb, wc = (load_file(str(tmp_path / f"{k}/world_generator.safetensors")) for k in "abc")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # same seed: identical
    assert all(torch.allclose(wa[k].float(), wc[k].float(), atol=1e-5) for k in wa)  # resumed: the same


def test_sample_then_world_label_gives_a_broden_folder(tmp_path):
    from unitscope.cli import main

    ckpt = None
    if not SHIPPED:  # an untrained generator still makes images the chain can label
        torch.manual_seed(0)
        from safetensors.torch import save_file

        ckpt = tmp_path / "g.safetensors"
        save_file(gan.generator_for(RECIPES["world_generator"].task_kw).state_dict(), str(ckpt))
    args = ["organisms", "sample", "world_generator", "--n", "4", "--seed", "3", "--out", str(tmp_path / "s")]
    assert main(args + (["--checkpoint", str(ckpt)] if ckpt else [])) == 0
    files = sorted((tmp_path / "s").glob("*.png"))
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(4)]
    assert main(["world", "label", str(tmp_path / "s"), "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    ds = BrodenDataset(tmp_path / "b", validate="full")
    assert len(ds) == 4 and ds.categories == ["object", "part", "material", "color"]
    assert ds.get(0, image=False)["labels"][0].shape == (32, 32)


def test_sample_refuses_a_model_that_is_not_a_generator(tmp_path, capsys):
    from unitscope.cli import main

    assert main(["organisms", "sample", "world_segmenter", "--n", "2", "--out", str(tmp_path / "s")]) == 2
    assert "world_segmenter is not a generator" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(not SHIPPED, reason="world_generator weights not shipped")
def test_shipped_generator_info_and_sha256():
    meta = weights_metadata("world_generator")
    assert sha256_file(WEIGHTS / meta["file"]) == meta["sha256"]
    assert (WEIGHTS / meta["file"]).stat().st_size < 5e6
    g = create_model("world_generator")
    info = get_info(g)
    assert info.kind == "generator" and info.input_size == (gan.LATENT, 1, 1) and info.output_size == (3, 64, 64)
    assert info.default_layers == ["relu1", "relu2", "relu3", "relu4"] and "world_generator" in list_models()


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED, reason="world_generator weights not shipped")
def test_shipped_samples_look_like_the_world_to_the_segmenter():
    """64 samples against 64 images of a world no model saw (seed 3): the presence distance stays
    near the one stated in the metadata (500 vs 500 on the held-out world)."""
    from unitscope.organisms.gan import generate
    from unitscope.organisms.gan_eval import segment_objects
    from unitscope.segment import create_segmenter
    from unitscope.world import render_image

    metrics = weights_metadata("world_generator")["metrics"]
    stated = metrics["presence_tvd"]
    seg = create_segmenter("world_segmenter")
    fake_maps = segment_objects(seg, generate(create_model("world_generator"), 64, seed=11))
    fake = object_table(fake_maps)
    rgb = np.stack([render_image(3, i, 64).rgb for i in range(64)])
    real = object_table(segment_objects(seg, torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255))
    assert presence_tvd(fake, real) < stated + 0.08, (presence_tvd(fake, real), stated)
    assert chimera_rate(fake_maps) < metrics["chimera_rate"] + 0.15, (chimera_rate(fake_maps), metrics["chimera_rate"])
    for name in ("sky", "tree", "house", "mountain"):  # the segmenter finds the world's main objects
        assert fake[name]["presence"] > 0.1, (name, fake[name])


def test_recalibrated_batch_norm_holds_the_population_statistics():
    """After recalibration, bn1's running mean and variance are those of conv1's output over many z."""
    torch.manual_seed(0)
    g = Generator()
    g.bn1.running_mean.fill_(5.0)  # stale statistics, as a lagging running average leaves them
    gan.recalibrate_batch_norm(g, seed=0, batches=16, batch_size=64)
    assert not g.training and g.bn1.momentum == 0.1
    with torch.no_grad():
        h = g.conv1(sample_z(4096, seed=1).view(4096, -1, 1, 1))  # [4096, C, 4, 4]
    mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3))
    assert torch.allclose(g.bn1.running_mean, mean, atol=0.05 * float(var.sqrt().mean()))
    assert torch.allclose(g.bn1.running_var, var, rtol=0.1)


def test_ema_update_exact():
    ema, g = Generator(), Generator()
    with torch.no_grad():
        for p in ema.parameters():
            p.fill_(0.0)
        for p in g.parameters():
            p.fill_(1.0)
    gan.ema_update(ema, g, decay=0.75)
    gan.ema_update(ema, g, decay=0.75)
    assert all(torch.allclose(p, torch.full_like(p, 1 - 0.75**2)) for p in ema.parameters())
