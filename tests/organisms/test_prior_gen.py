"""world_generator redesigned as a decoder behind a fitted prior (recipes.VAE_RECIPE): the mixture's sampling and fit with exact numbers,
the generator's interface (z [N, 64] -> [N, 3, 64, 64] in [0, 1], relu1..relu4, an exact torch.fx cut),
and a short training schedule whose loss falls, that is seeded and resumes exactly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from unitscope import faults
from unitscope.organisms.data import world_arrays
from unitscope.organisms.nets import GENERATOR_LAYERS, generator_for, sample_z
from unitscope.organisms.prior_gen import Encoder, MixturePrior, PriorGenerator, train_decoder
from unitscope.organisms.recipes import VAE_RECIPE
from unitscope.organisms.train import sha256_file


def _prior(latent: int = 4) -> MixturePrior:
    """Three components in a 3-d code: weights 0.2, 0.5, 0.3; means e_0, 10 e_1, -e_2; chol 1, 2, 3 times I."""
    p = MixturePrior(latent, k=3)
    p.edges = torch.tensor([0.2, 0.7, 1.0])
    p.means = torch.tensor([[1.0, 0, 0], [0, 10.0, 0], [0, 0, -1.0]])
    p.chol = torch.stack([k * torch.eye(3) for k in (1.0, 2.0, 3.0)])
    return p


def test_mixture_prior_picks_the_component_from_the_first_coordinate_exactly():
    p = _prior()
    # Phi(-2) = 0.023 -> component 0; Phi(0) = 0.5 -> 1; Phi(2) = 0.977 -> 2; Phi(40) rounds to 1 -> the last
    z = torch.tensor([[-2.0, 1, 2, 3], [0.0, 1, 2, 3], [2.0, 1, 2, 3], [40.0, 0, 0, 0]])
    assert p.one_hot(z).argmax(1).tolist() == [0, 1, 2, 2] and p.one_hot(z).sum(1).tolist() == [1, 1, 1, 1]
    p.temperature.fill_(0.5)
    expected = torch.tensor([[1.5, 1, 1.5], [1, 12, 3], [1.5, 3, 3.5], [0, 0, -1]])
    assert torch.allclose(p(z), expected)
    counts = torch.bincount(p.one_hot(sample_z(40_000, seed=0, latent=4)).argmax(1), minlength=3) / 40_000
    assert torch.allclose(counts, torch.tensor([0.2, 0.5, 0.3]), atol=0.01)  # the weights, sampled exactly


def test_mixture_fit_finds_each_scenes_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0], [-5.0, 0], [0, 5.0], [0, -5.0]])  # scene 0: the first two, scene 1: the others
    parts = [c + 0.5 * torch.randn(n, 2, generator=gen) for c, n in zip(centres, (300, 100, 200, 200))]
    x = torch.cat(parts)
    scenes = torch.tensor([0] * 400 + [1] * 400)
    p = MixturePrior(latent=3, k=1)
    p.fit(x, scenes, per_scene=2, seed=0, ridge=0.0)
    assert p.k == 4 and sorted(p.scene.tolist()) == [0, 0, 1, 1]
    order = [int((p.means - c).norm(dim=1).argmin()) for c in centres]
    assert sorted(order) == [0, 1, 2, 3]  # one component per cluster
    assert torch.allclose(p.means[order], torch.stack([q.mean(0) for q in parts]), atol=1e-5)  # k-means separates them
    weights = torch.diff(torch.cat([torch.zeros(1), p.edges]))
    assert torch.allclose(weights[order], torch.tensor([0.375, 0.125, 0.25, 0.25]), atol=1e-6)
    cov = p.chol @ p.chol.transpose(1, 2)
    assert torch.allclose(cov[order], torch.stack([torch.cov(q.T) for q in parts]), atol=1e-5)  # each one's own
    assert p.one_hot(torch.randn(5, 3)).shape == (5, 4)


def test_prior_generator_interface_cut_and_reload_with_another_number_of_components():
    from unitscope.ablate import cut_model

    torch.manual_seed(0)
    g = generator_for({"prior": True, "g_channels": [16, 8, 8, 4]}).eval()
    assert isinstance(g, PriorGenerator) and g.latent == 64 and g.conv1.in_channels == 63
    names = dict(g.named_modules())
    assert all(k in names for k in GENERATOR_LAYERS)
    z = sample_z(3, seed=1)
    with torch.no_grad():
        x = g(z)
        assert x.shape == (3, 3, 64, 64) and x.min() >= 0 and x.max() <= 1
        assert torch.equal(x, g(z.view(3, -1, 1, 1)))
        assert torch.allclose(x, g.decode(z[:, 1:]), atol=1e-6)  # untrained prior: code = z[:, 1:]
        cut = cut_model(g, "relu2")
        assert cut.exact_tail and torch.allclose(cut.tail(cut.head(z.view(3, -1, 1, 1))), x, atol=1e-6)
        g.prior.fit(torch.randn(400, 63, generator=torch.Generator().manual_seed(0)), torch.arange(400) % 2, 2)
        h = generator_for({"prior": True, "g_channels": [16, 8, 8, 4]}).eval()
        h.load_state_dict(g.state_dict())  # k = 1 there: resized on load
        assert h.prior.k == g.prior.k == 2 and torch.equal(h(z), g(z))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("worlds")
    for seed in (5, 6):
        world_arrays(root, seed=seed, n=48, size=64, workers=1, progress=False)
    return root


def _short(**kw):
    kw = {"n_train": 32, "batch_size": 8, "epochs": 3, "world_seed": 5, "held_out_seed": 6, "n_held_out": 0, **kw}
    recipe = VAE_RECIPE
    task_kw = {**recipe.task_kw, "g_channels": [32, 16, 8, 8], "components": 1, "steps": 100}
    return dataclasses.replace(recipe, task_kw=task_kw, **kw)


@pytest.mark.slow
def test_short_schedule_loss_falls_files_are_right_and_resume_is_exact(cache, tmp_path):
    torch.set_num_threads(1)
    recipe = _short()  # 4 steps an epoch, 12 in all
    a = train_decoder(recipe, tmp_path / "a", cache, progress=False, checkpoint_every=4)
    losses, ce = a["losses_per_epoch"], a["segmenter_ce_per_epoch"]
    assert len(losses) == 3 and losses[-1] < 0.9 * losses[0] and ce[-1] < ce[0], (losses, ce)
    assert a["model"] == {"kind": "generator", "latent": 64, "output": [3, 64, 64], "range": [0, 1]}
    path = tmp_path / "a/world_generator.safetensors"
    assert a["sha256"] == sha256_file(path)
    shipped = load_file(str(path))
    assert not any(k.startswith("enc.") for k in shipped) and "prior.means" in shipped  # G and its prior only
    assert shipped["prior.means"].shape == (shipped["prior.edges"].shape[0], 63)
    assert any(k.startswith("enc.") for k in load_file(str(tmp_path / "a/world_generator.ckpt.safetensors")))
    with faults.armed("gan.step=6:raise"), pytest.raises(faults.FaultInjected):  # after step 6, checkpoint at 4
        train_decoder(recipe, tmp_path / "c", cache, progress=False, checkpoint_every=4)
    assert json.loads((tmp_path / "c/world_generator.ckpt.json").read_text())["step"] == 4
    c = train_decoder(recipe, tmp_path / "c", cache, progress=False, checkpoint_every=4)
    assert c["losses_per_epoch"] == pytest.approx(losses, rel=1e-5)
    wc = load_file(str(tmp_path / "c/world_generator.safetensors"))
    assert all(torch.allclose(shipped[k].float(), wc[k].float(), atol=1e-5) for k in shipped)
    g = generator_for(recipe.task_kw)
    g.load_state_dict(shipped)
    assert g.eval()(sample_z(2, 0)).shape == (2, 3, 64, 64) and Encoder()(torch.rand(2, 3, 64, 64))[0].shape == (2, 63)
