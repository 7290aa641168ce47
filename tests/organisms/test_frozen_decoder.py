"""A decoder trained behind a frozen encoder and a copied prior (organisms.frozen_decoder, recipes.WIDE_VAE_RECIPE):
the prior and the encoder come through unchanged, the cached posteriors are the encoder's of the images and their
mirror images, a short schedule's loss falls, and a run stopped after a step resumes to the same weights."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from unitscope import faults
from unitscope.errors import UsageError
from unitscope.organisms.checkpoint import write_checkpoint
from unitscope.organisms.data import world_arrays
from unitscope.organisms.frozen_decoder import (
    copy_prior,
    load_decoder,
    load_encoder,
    posteriors,
    train_frozen_decoder,
)
from unitscope.organisms.nets import generator_for, sample_z
from unitscope.organisms.prior_gen import EmpiricalPrior, Encoder, PriorGenerator, encode_posteriors
from unitscope.organisms.recipes import (
    RECIPES,
    SPARSE_SCRATCH_WIDE_VAE_RECIPE,
    SPARSE_WIDE_VAE_RECIPE,
    VAE_RECIPE,
    WIDE_VAE_RECIPE,
)


def test_wide_recipe_is_the_shipped_one_with_a_512_unit_8x8_layer_and_not_shipped():
    assert "world_generator" in RECIPES and RECIPES["world_generator"] is VAE_RECIPE  # the shipped one stays
    kw = WIDE_VAE_RECIPE.task_kw
    assert kw["g_channels"][1] == 512 and kw["prior"] == VAE_RECIPE.task_kw["prior"]
    assert WIDE_VAE_RECIPE.batch_size == VAE_RECIPE.batch_size and WIDE_VAE_RECIPE.n_train == VAE_RECIPE.n_train
    g = generator_for(kw)
    h = torch.randn(2, 63, 1, 1)
    for name, module in g.named_children():
        if name == "prior":
            continue
        h = module(h)
        if name == "relu2":
            assert h.shape == (2, 512, 8, 8)
    assert h.shape == (2, 3, 64, 64)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("worlds")
    world_arrays(root, seed=5, n=32, size=64, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """An encoder checkpoint (a train_decoder checkpoint's layout: g. and enc.) and a generator's weights
    whose prior keeps 8 made-up posteriors."""
    root = tmp_path_factory.mktemp("parts")
    torch.manual_seed(0)
    enc, g = Encoder(63), PriorGenerator(channels=(8, 8, 4, 4), prior="empirical")
    for m in enc.modules():  # running statistics that differ from the defaults, so loading them shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    write_checkpoint(root / "old.safetensors", {"step": 1}, {"g": g, "enc": enc}, {})
    prior = EmpiricalPrior(64, 1)
    prior.fit(torch.randn(8, 63), torch.randn(8, 63) - 2, k=8)
    prior.temperature.fill_(0.7)
    save_file({f"prior.{k}": v for k, v in prior.state_dict().items()}, str(root / "old_weights.safetensors"))
    return root, enc.eval()


def test_encoder_prior_and_posteriors_come_through_unchanged(parts, cache, tmp_path):
    root, enc = parts
    loaded = load_encoder(root / "old.ckpt.safetensors", 63)
    x = torch.rand(3, 3, 64, 64)
    assert all(torch.equal(a, b) for a, b in zip(loaded(x), enc(x))) and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    g = copy_prior(PriorGenerator(channels=(16, 32, 8, 8), prior="empirical"), root / "old_weights.safetensors")
    old = load_file(str(root / "old_weights.safetensors"))
    assert (
        g.prior.k == 8
        and torch.equal(g.prior.codes, old["prior.codes"])
        and float(g.prior.temperature) == pytest.approx(0.7)
    )
    rgb = world_arrays(cache, 5, 32, 64, progress=False)["rgb"]
    post = posteriors(loaded, rgb, tmp_path / "post.safetensors")
    assert post.shape == (2, 2, 32, 63)
    mirrored = encode_posteriors(loaded, np.ascontiguousarray(rgb[:, :, ::-1]))
    assert torch.equal(post[1, 0], mirrored[0]) and torch.equal(post[0, 1], encode_posteriors(loaded, rgb)[1])
    assert not torch.equal(post[0, 0], post[1, 0])
    assert torch.equal(posteriors(loaded, rgb, tmp_path / "post.safetensors"), post)  # read back, not recomputed
    with pytest.raises(ValueError, match="no prior"):
        copy_prior(g, root / "old.ckpt.safetensors")
    with pytest.raises(ValueError, match="no encoder"):
        load_encoder(root / "old_weights.safetensors", 63)


def _short():
    stages = [
        {"steps": 6, "lr": 2e-3, "class_weights": {"sun": 8}},
        {"steps": 6, "lr": 1e-3, "target": "segmenter", "w_seg": 0.4},
    ]
    task_kw = {**WIDE_VAE_RECIPE.task_kw, "g_channels": [16, 32, 8, 8], "stages": stages}
    return dataclasses.replace(
        WIDE_VAE_RECIPE, task_kw=task_kw, n_train=32, batch_size=8, epochs=3, world_seed=5, n_held_out=0
    )


@pytest.mark.slow
def test_short_schedule_loss_falls_keeps_the_prior_and_resumes_exactly(parts, cache, tmp_path):
    torch.set_num_threads(1)
    root, _ = parts
    recipe, kw = (
        _short(),
        {"encoder_ckpt": root / "old.ckpt.safetensors", "prior_weights": root / "old_weights.safetensors"},
    )
    a = train_frozen_decoder(recipe, tmp_path / "a", cache, progress=False, checkpoint_every=4, **kw)
    losses = a["losses_per_epoch"]  # epochs 0, 1 (split by the stage at step 6), 2
    assert len(losses) == 4 and losses[1] < 0.9 * losses[0] and losses[3] < losses[2], losses
    out = load_file(str(tmp_path / "a/world_generator.safetensors"))
    old = load_file(str(root / "old_weights.safetensors"))
    assert all(torch.equal(out[k], old[k]) for k in old)  # the prior exactly as it was
    assert not any(k.startswith("enc.") for k in out) and out["conv2.weight"].shape[0] == 32
    with faults.armed("gan.step=6:raise"), pytest.raises(faults.FaultInjected):  # after step 6, checkpoint at 4
        train_frozen_decoder(recipe, tmp_path / "c", cache, progress=False, checkpoint_every=4, **kw)
    assert json.loads((tmp_path / "c/world_generator.ckpt.json").read_text())["step"] == 4
    c = train_frozen_decoder(recipe, tmp_path / "c", cache, progress=False, checkpoint_every=4, **kw)
    assert c["losses_per_epoch"] == pytest.approx(losses, rel=1e-5)
    wc = load_file(str(tmp_path / "c/world_generator.safetensors"))
    assert all(torch.allclose(out[k].float(), wc[k].float(), atol=1e-5) for k in out)
    g = generator_for(recipe.task_kw)
    g.load_state_dict(out)
    assert g.eval()(sample_z(2, 0)).shape == (2, 3, 64, 64)


def _relu2_mean(weights, recipe) -> float:
    """Mean relu2 activation of a generator's weights on its prior's codes (batch statistics, as in training)."""
    g = generator_for(recipe.task_kw)
    g.load_state_dict(load_file(str(weights)))
    seen = {}
    g.relu2.register_forward_hook(lambda _m, _i, out: seen.__setitem__("a", out))
    with torch.no_grad():
        g.train().decode(g.prior.codes.float())
    return float(seen["a"].mean())


@pytest.mark.slow
def test_l1_on_relu2_enters_the_loss_and_makes_relu2_sparser_from_given_weights(parts, cache, tmp_path):
    torch.set_num_threads(1)
    root, _ = parts
    kw = {"encoder_ckpt": root / "old.ckpt.safetensors", "prior_weights": root / "old_weights.safetensors"}

    def recipe(l1):
        stage = {"steps": 10, "lr": 5e-2, "target": "segmenter", "w_seg": 0.4, **({"l1_act": l1} if l1 else {})}
        return dataclasses.replace(_short(), task_kw={**_short().task_kw, "stages": [stage]}, epochs=1)

    torch.manual_seed(3)  # the common start: a decoder of its own weights (and the prior), fed in by init=
    g0 = copy_prior(generator_for(recipe(None).task_kw), root / "old_weights.safetensors")
    for m in g0.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.bias.data.uniform_(0.2, 0.4)
    save_file({k: v.contiguous() for k, v in g0.state_dict().items()}, str(tmp_path / "init.safetensors"))
    start = _relu2_mean(tmp_path / "init.safetensors", recipe(None))
    runs = {}
    for name, l1 in (("plain", None), ("zero", {"relu2": 0.0}), ("sparse", {"relu2": 5.0})):
        runs[name] = train_frozen_decoder(
            recipe(l1), tmp_path / name, cache, progress=False, init=tmp_path / "init.safetensors", **kw
        )
    plain, zero = (load_file(str(tmp_path / n / "world_generator.safetensors")) for n in ("plain", "zero"))
    assert runs["zero"]["losses_per_epoch"] == runs["plain"]["losses_per_epoch"]  # a weight of 0: the old path
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    # the penalty enters the loss (larger at the start) and lowers relu2's mean, below where it started
    assert runs["sparse"]["losses_per_epoch"][0] > runs["plain"]["losses_per_epoch"][0]
    means = {n: _relu2_mean(tmp_path / n / "world_generator.safetensors", recipe(None)) for n in runs}
    assert means["sparse"] < 0.7 * start and means["sparse"] < 0.7 * means["plain"], (start, means)
    # init from a training checkpoint (g. tensors) loads the same decoder as its finished weights hold
    g = copy_prior(generator_for(recipe(None).task_kw), root / "old_weights.safetensors")
    load_decoder(g, tmp_path / "plain/world_generator.ckpt.safetensors")
    ck = load_file(str(tmp_path / "plain/world_generator.ckpt.safetensors"))
    assert torch.equal(g.conv2.weight, ck["g.conv2.weight"]) and not torch.equal(g.conv2.weight, g0.conv2.weight)
    assert torch.equal(g.prior.codes, plain["prior.codes"])  # the prior untouched
    with pytest.raises(ValueError, match="not a decoder layer.*relu2"):
        train_frozen_decoder(recipe({"relu9": 1.0}), tmp_path / "bad", cache, progress=False, **kw)


def test_sparse_recipe_fine_tunes_the_wide_decoder_with_l1_on_relu2():
    (stage,) = SPARSE_WIDE_VAE_RECIPE.task_kw["stages"]
    assert stage["l1_act"] == {"relu2": 1.0} and stage["target"] == "segmenter"
    assert SPARSE_WIDE_VAE_RECIPE.task_kw["g_channels"] == WIDE_VAE_RECIPE.task_kw["g_channels"]
    assert "l1_act" not in str(WIDE_VAE_RECIPE.task_kw)


def test_sparse_scratch_recipe_is_the_wide_schedule_with_l1_on_relu2_in_every_stage():
    wide, scratch = WIDE_VAE_RECIPE.task_kw["stages"], SPARSE_SCRATCH_WIDE_VAE_RECIPE.task_kw["stages"]
    assert [st["steps"] for st in scratch] == [1200, 2000]  # the wide decoder's whole schedule
    for w, s in zip(wide, scratch, strict=True):
        assert {k: v for k, v in s.items() if k != "l1_act"} == w
        assert s["l1_act"] == {"relu2": 1.0}
    assert SPARSE_SCRATCH_WIDE_VAE_RECIPE.task_kw["g_channels"] == WIDE_VAE_RECIPE.task_kw["g_channels"]
    assert "l1_act" not in str(WIDE_VAE_RECIPE.task_kw)
    # the one shipped sparse decoder is this recipe's, under its own name and task
    assert [n for n, r in RECIPES.items() if "l1_act" in str(r)] == ["world_generator_wide"]
    shipped = RECIPES["world_generator_wide"]
    assert shipped.task == "frozen_vae" and shipped.task_kw == SPARSE_SCRATCH_WIDE_VAE_RECIPE.task_kw


def test_world_generator_wide_loads_its_shipped_weights_and_says_how_to_retrain_it(tmp_path):
    from safetensors.torch import load_file

    from unitscope.models import create_model, get_info
    from unitscope.organisms.registry import WEIGHTS, weights_metadata
    from unitscope.organisms.train import train

    g = create_model("world_generator_wide")
    info = get_info(g)
    assert info.kind == "generator" and info.input_size == (64, 1, 1) and info.output_size == (3, 64, 64)
    meta = weights_metadata("world_generator_wide")
    assert meta["recipe"]["task_kw"] == json.loads(json.dumps(RECIPES["world_generator_wide"].task_kw))
    direct = generator_for(RECIPES["world_generator_wide"].task_kw)
    direct.load_state_dict(load_file(str(WEIGHTS / meta["file"])))
    direct.eval()
    acts = {}
    dict(g.named_modules())["relu2"].register_forward_hook(lambda m, i, o: acts.setdefault("relu2", o))
    with torch.no_grad():
        z = sample_z(3, seed=0)
        assert torch.equal(g(z), direct(z))
    assert acts["relu2"].shape == (3, 512, 8, 8)
    with pytest.raises(UsageError, match="train_frozen_decoder"):
        train("world_generator_wide", tmp_path, tmp_path)
