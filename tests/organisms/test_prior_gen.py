"""world_generator redesigned as a decoder behind a fitted prior (recipes.VAE_RECIPE): the mixture's and the
empirical prior's sampling and fit with exact numbers, training stages and class weights,
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
from unitscope.organisms.prior_gen import (
    EmpiricalPrior,
    Encoder,
    MixturePrior,
    PriorGenerator,
    class_weights,
    stage_at,
    train_decoder,
    training_stages,
    vae_loss,
)
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


def test_empirical_prior_picks_a_training_code_from_the_first_coordinate_and_adds_its_own_noise():
    p = EmpiricalPrior(latent=3, k=1)
    means = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    logvars = torch.log(torch.tensor([[1.0, 4.0], [0.25, 1.0], [1.0, 1.0], [4.0, 0.25]]))
    p.fit(means, logvars, k=3, seed=0)
    keep = torch.randperm(4, generator=torch.Generator().manual_seed(0))[:3].sort().values
    assert p.k == 3 and p.codes.dtype == torch.float16 and torch.equal(p.codes.float(), means[keep])
    assert torch.equal(p.scales.float(), (0.5 * logvars[keep]).exp())  # the posteriors' standard deviations
    # Phi(-2) = 0.023 -> row 0 of 3; Phi(0) = 0.5 -> row 1; Phi(1) = 0.841 -> row 2; Phi(40) rounds to 1 -> row 2
    z = torch.tensor([[-2.0, 1, -1], [0.0, 1, -1], [1.0, 1, -1], [40.0, 0, 0]])
    assert p.index(z).tolist() == [0, 1, 2, 2]
    p.temperature.fill_(0.5)
    rows = means[keep][[0, 1, 2, 2]] + 0.5 * (0.5 * logvars[keep][[0, 1, 2, 2]]).exp() * z[:, 1:]
    assert torch.allclose(p(z), rows)
    counts = torch.bincount(p.index(sample_z(30_000, seed=0, latent=3)), minlength=3) / 30_000
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.01)  # each kept image equally often
    p.fit(means, logvars, k=10)
    assert p.k == 4 and torch.equal(p.codes.float(), means)  # k >= N: all of them, in order


def test_empirical_generator_reloads_into_a_mixture_one_and_cuts_exactly():
    from unitscope.ablate import cut_model

    torch.manual_seed(0)
    kw = {"prior": "empirical", "g_channels": [16, 8, 8, 4]}
    g = generator_for(kw).eval()
    assert isinstance(g.prior, EmpiricalPrior)
    gen = torch.Generator().manual_seed(1)
    g.prior.fit(torch.randn(50, 63, generator=gen), torch.randn(50, 63, generator=gen) - 2, 20)
    z = sample_z(5, seed=2)
    h = generator_for({"prior": True, "g_channels": [16, 8, 8, 4]}).eval()
    h.load_state_dict(g.state_dict())  # a mixture prior there: replaced by an empirical one of 20 rows on load
    with torch.no_grad():
        x = g(z)
        assert isinstance(h.prior, EmpiricalPrior) and h.prior.k == 20 and torch.equal(h(z), x)
        cut = cut_model(g, "relu3")
        assert torch.allclose(cut.tail(cut.head(z.view(5, -1, 1, 1))), x, atol=1e-6)
    with pytest.raises(ValueError, match="prior must be one of mixture, empirical"):
        PriorGenerator(prior="vamp")


def test_training_stages_schedule_and_class_weights():
    one = dataclasses.replace(VAE_RECIPE, epochs=3, task_kw={"steps": 850})
    assert training_stages(one, per_epoch=625) == [{"steps": 850, "lr": 1e-3}]
    assert training_stages(dataclasses.replace(one, epochs=1), per_epoch=625)[0]["steps"] == 625  # capped
    stages = [{"steps": 850, "lr": 1e-3}, {"steps": 100, "lr": 5e-4, "class_weights": {"sun": 8}}]
    two = dataclasses.replace(VAE_RECIPE, task_kw={"stages": stages})
    assert training_stages(two, per_epoch=625) == stages
    assert [stage_at(stages, s) for s in (0, 849, 850, 949, 2000)] == [(0, 0), (0, 0), (1, 850), (1, 850), (1, 850)]
    w = class_weights({"sun": 8, "boat": 4})
    assert w is not None and w.shape == (18,) and class_weights(None) is None
    assert w[4].item() == 8 and w[12].item() == 4 and w.sum().item() == 16 + 12  # sun, boat (head 1 + vocab order)
    with pytest.raises(ValueError, match="'sunn' is not an object"):
        class_weights({"sunn": 2})


def test_class_weights_weigh_the_segmenter_cross_entropy():
    """A stand-in segmenter that returns a fixed logit map: the weighted cross-entropy is the weighted mean."""
    torch.manual_seed(0)
    g = generator_for({"prior": True, "g_channels": [8, 8, 4, 4]})
    enc = Encoder(63, channels=(4, 4, 4, 4))
    logits = torch.randn(2, 3, 32, 32)

    def seg(x):
        return {"object": logits + 0 * x.mean()}

    labels = torch.randint(0, 3, (2, 64, 64))
    x, noise = torch.rand(2, 3, 64, 64), torch.zeros(2, 63)
    norm = (torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))
    _, plain = vae_loss(g, enc, seg, norm, x, labels, noise, 1.0, 0.0)
    w = torch.tensor([1.0, 5.0, 1.0])
    _, weighted = vae_loss(g, enc, seg, norm, x, labels, noise, 1.0, 0.0, w)
    target = labels[:, ::2, ::2]
    nll = -torch.log_softmax(logits, 1).gather(1, target[:, None])[:, 0]
    assert plain["ce"] == pytest.approx(float(nll.mean()), rel=1e-5)
    assert weighted["ce"] == pytest.approx(float((w[target] * nll).sum() / w[target].sum()), rel=1e-5)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("worlds")
    for seed in (5, 6):
        world_arrays(root, seed=seed, n=48, size=64, workers=1, progress=False)
    return root


def _short(**kw):
    kw = {"n_train": 32, "batch_size": 8, "epochs": 3, "world_seed": 5, "held_out_seed": 6, "n_held_out": 0, **kw}
    recipe = VAE_RECIPE
    stages = [{"steps": 6, "lr": 1e-3}, {"steps": 6, "lr": 5e-4, "class_weights": {"sun": 8, "cloud": 8}}]
    task_kw = {**recipe.task_kw, "g_channels": [32, 16, 8, 8], "components": 16, "stages": stages}
    return dataclasses.replace(recipe, task_kw=task_kw, **kw)


@pytest.mark.slow
def test_short_schedule_loss_falls_files_are_right_and_resume_is_exact(cache, tmp_path):
    torch.set_num_threads(1)
    recipe = _short()  # 4 steps an epoch, 12 in all: two stages of 6 (the second class-weighted)
    a = train_decoder(recipe, tmp_path / "a", cache, progress=False, checkpoint_every=4)
    losses, ce = a["losses_per_epoch"], a["segmenter_ce_per_epoch"]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0], (losses, ce)  # epochs 0, 1 (split by the stage), 2
    assert a["model"] == {"kind": "generator", "latent": 64, "output": [3, 64, 64], "range": [0, 1]}
    path = tmp_path / "a/world_generator.safetensors"
    assert a["sha256"] == sha256_file(path)
    shipped = load_file(str(path))
    assert not any(k.startswith("enc.") for k in shipped) and "prior.codes" in shipped  # G and its prior only
    assert shipped["prior.codes"].shape == shipped["prior.scales"].shape == (16, 63)  # 16 of the 32 posteriors
    assert shipped["prior.codes"].dtype == torch.float16
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
