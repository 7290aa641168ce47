"""world_generator's distillation stage (``"target": "segmenter"``, prior_gen.distill_loss) and the
perturbation check of gan_eval: exact KL values with and without class weights, zero when the decoded
image is the real one, a tiny decoder whose distillation loss falls, bad targets rejected, and
perturbed FSD with exact blur and resize values."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from unitscope.organisms.gan_eval import perturb, perturbed_fsd
from unitscope.organisms.nets import generator_for
from unitscope.organisms.prior_gen import Encoder, distill_loss, training_stages, vae_loss
from unitscope.organisms.recipes import VAE_RECIPE

NORM = (torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))


def test_distill_loss_is_the_per_pixel_kl_weighted_by_the_targets_expected_class_weight():
    # pixel 0: p = (1/4, 3/4), q = (1/2, 1/2); pixel 1: p = q = (1/2, 1/2)
    target = torch.tensor([[0.0, 0.0], [math.log(3), 0.0]]).view(1, 2, 1, 2)
    logits = torch.zeros(1, 2, 1, 2)
    kl0 = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    assert float(distill_loss(logits, target)) == pytest.approx(kl0 / 2, rel=1e-6)
    w = torch.tensor([1.0, 5.0])  # expected weights: 1/4 + 15/4 = 4 and 3
    assert float(distill_loss(logits, target, w)) == pytest.approx(4 * kl0 / 7, rel=1e-6)
    assert float(distill_loss(target, target, w)) == pytest.approx(0.0, abs=1e-7)


class _Exact(nn.Module):
    """A 'decoder' that draws back exactly the image it was given."""

    def __init__(self, x: torch.Tensor):
        super().__init__()
        self.x = x

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.x + 0 * code.sum()


def _seg(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)  # [B, 3, 64, 64] -> [B, 4, 32, 32]
    for p in conv.parameters():
        p.requires_grad_(False)
    return lambda x: {"object": 4 * conv(x)}  # type: ignore[return-value]


def test_distillation_term_is_zero_when_the_decoded_image_is_the_real_image():
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64)
    enc = Encoder(63, channels=(4, 4, 4, 4))
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    loss, parts = vae_loss(_Exact(x), enc, _seg(), NORM, x, labels, torch.zeros(2, 63), 1.0, 0.0, target="segmenter")  # type: ignore[arg-type]
    assert (
        parts["ce"] == pytest.approx(0.0, abs=1e-6)
        and parts["l1"] == 0.0
        and float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    )
    _, other = vae_loss(
        _Exact(x.flip(-1)), enc, _seg(), NORM, x, labels, torch.zeros(2, 63), 1.0, 0.0, target="segmenter"
    )  # type: ignore[arg-type]
    assert other["ce"] > 0.01  # a different image segments differently
    with pytest.raises(ValueError, match="target must be one of truth, segmenter"):
        vae_loss(_Exact(x), enc, _seg(), NORM, x, labels, torch.zeros(2, 63), 1.0, 0.0, target="labels")  # type: ignore[arg-type]


def test_distillation_loss_of_a_tiny_decoder_falls():
    torch.manual_seed(0)
    g = generator_for({"prior": True, "g_channels": [16, 8, 8, 4]})
    enc = Encoder(63, channels=(4, 8, 8, 8))
    seg = _seg(2)
    ramp = torch.linspace(0, 1, 64)
    x = torch.stack([ramp.view(1, 1, 64).expand(3, 64, 64), ramp.view(1, 64, 1).expand(3, 64, 64)])  # [2, 3, 64, 64]
    x = torch.cat([x, 1 - x])
    labels = torch.zeros(4, 64, 64, dtype=torch.long)
    opt = torch.optim.Adam([*g.parameters(), *enc.parameters()], lr=1e-2)
    w = torch.tensor([1.0, 2.0, 1.0, 1.0])
    seen = []
    for _ in range(25):
        loss, parts = vae_loss(g, enc, seg, NORM, x, labels, torch.zeros(4, 63), 1.0, 0.0, w, target="segmenter")  # type: ignore[arg-type]
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(parts["ce"])
    assert seen[-1] < 0.5 * seen[0], seen


def test_a_stage_with_an_unknown_target_is_refused():
    stages = [{"steps": 10, "lr": 1e-3}, {"steps": 5, "lr": 3e-4, "target": "segmenter", "w_seg": 0.4}]
    assert training_stages(dataclasses.replace(VAE_RECIPE, task_kw={"stages": stages}), per_epoch=625) == stages
    bad = dataclasses.replace(VAE_RECIPE, task_kw={"stages": [{"steps": 5, "target": "teacher"}]})
    with pytest.raises(ValueError, match="stage target must be one of truth, segmenter, not 'teacher'"):
        training_stages(bad, per_epoch=625)


def test_perturbations_blur_and_resize_exactly():
    x = torch.zeros(1, 3, 8, 8)
    x[0, :, 4, 4] = 9.0 / 10
    blurred = perturb(x, "blur3")
    assert torch.allclose(blurred[0, 0, 3:6, 3:6], torch.full((3, 3), 0.1)) and float(blurred.sum()) == pytest.approx(
        2.7
    )
    flat = torch.full((2, 3, 64, 64), 0.3)
    assert torch.allclose(perturb(flat, "blur3"), flat) and torch.allclose(perturb(flat, "resize48"), flat, atol=1e-6)
    with pytest.raises(ValueError, match="perturbation must be one of blur3, resize48"):
        perturb(flat, "jpeg")


class _Threshold:
    """A stand-in segmenter: pixels whose red channel is over 1/2 are sky (Broden number of 'sky')."""

    def segment(self, images: torch.Tensor) -> dict:
        from unitscope.world.vocab import VOCAB

        sky = dict(VOCAB["object"])["sky"]
        return {"object": (images[:, 0] > 0.5).long() * sky}


def test_perturbed_fsd_is_zero_for_the_same_images_and_sees_a_difference_under_every_perturbation():
    torch.manual_seed(3)
    real = torch.rand(6, 3, 16, 16)
    same = perturbed_fsd(_Threshold(), real, real.clone())
    assert set(same) == {"none", "blur3", "resize48"} and all(v == pytest.approx(0.0, abs=1e-9) for v in same.values())
    darker = perturbed_fsd(_Threshold(), real * 0.8, real)
    assert all(v > 1.0 for v in darker.values()), darker


def test_the_shipped_recipe_ends_with_a_distillation_stage():
    last = VAE_RECIPE.task_kw["stages"][-1]
    assert last["target"] == "segmenter" and last["steps"] == 800 and last["class_weights"]["sun"] == 16
    assert sum(st["steps"] for st in training_stages(VAE_RECIPE, per_epoch=625)) == 2850
