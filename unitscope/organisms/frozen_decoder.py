"""A new decoder trained behind a frozen encoder, so that it sits behind an existing prior unchanged.

    from unitscope.organisms.frozen_decoder import train_frozen_decoder
    from unitscope.organisms.recipes import WIDE_VAE_RECIPE
    meta = train_frozen_decoder(WIDE_VAE_RECIPE, "runs/wide", cache="/tmp/worlds",
                                encoder_ckpt="runs/g/world_generator.ckpt.safetensors")   # rerun to resume

``world_generator``'s empirical prior (:class:`unitscope.organisms.prior_gen.EmpiricalPrior`) holds
training images' posteriors as the encoder of its VAE wrote them. A decoder of another shape (e.g. a
wide 8x8 layer, as ProGAN's layer4 in Bau et al. 2020) trained on the same frozen encoder's
posteriors decodes those same codes, so it can take the prior as it is: only the decoder is trained.
The posteriors (mean, log variance) of every training image and of its mirror image are computed
once (``out/NAME.posteriors.safetensors``); each step draws code = mu + sigma * eps, decodes it and
takes L1 + ``w_seg`` S, S the frozen segmenter's cross-entropy against the true labels or its
distillation (:func:`unitscope.organisms.prior_gen.distill_loss`), per ``task_kw["stages"]`` as
:func:`unitscope.organisms.prior_gen.train_decoder`. Checkpoints every ``checkpoint_every`` steps
(the decoder and Adam); a rerun resumes. The finished weights hold the decoder and the copied prior.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from unitscope.faults import fault
from unitscope.organisms.prior_gen import (
    Encoder,
    PriorGenerator,
    class_weights,
    decoder_terms,
    encode_posteriors,
    frozen_segmenter,
    loss_record,
    new_state,
    record_losses,
    stage_at,
    training_batch,
    training_stages,
)

SHIPPED = Path(__file__).resolve().parent / "weights" / "world_generator.safetensors"


def load_encoder(ckpt: str | Path, code: int, device: str = "cpu") -> Encoder:
    """The frozen encoder (eval mode, no gradients) stored under ``enc.`` in a training checkpoint
    (:func:`unitscope.organisms.checkpoint.write_checkpoint` of :func:`train_decoder`)."""
    from safetensors.torch import load_file

    from unitscope.organisms.checkpoint import load_module

    tensors = load_file(str(ckpt))
    if not any(k.startswith("enc.") for k in tensors):
        raise ValueError(f"{ckpt} holds no encoder (no 'enc.' tensors): pass a train_decoder checkpoint")
    enc = Encoder(code)
    load_module("enc", enc, tensors)
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc.to(device).eval()


def copy_prior(g: PriorGenerator, weights: str | Path) -> PriorGenerator:
    """Load the ``prior.`` tensors of a generator's weights file into ``g`` (its decoder untouched)."""
    from safetensors.torch import load_file

    prior = {k: v for k, v in load_file(str(weights)).items() if k.startswith("prior.")}
    if not prior:
        raise ValueError(f"{weights} holds no prior (no 'prior.' tensors)")
    state = {**{k: v for k, v in g.state_dict().items() if not k.startswith("prior.")}, **prior}
    g.load_state_dict(state)
    return g


def load_decoder(g: PriorGenerator, weights: str | Path) -> PriorGenerator:
    """Load the decoder tensors (all but ``prior.``) of a finished generator's weights file, or the ``g.``
    tensors of a :func:`train_frozen_decoder` checkpoint, into ``g`` (its prior untouched)."""
    from safetensors.torch import load_file

    tensors = load_file(str(weights))
    if any(k.startswith("g.") for k in tensors):
        tensors = {k[2:]: v for k, v in tensors.items() if k.startswith("g.")}
    decoder = {k: v for k, v in tensors.items() if not k.startswith("prior.")}
    if not decoder:
        raise ValueError(f"{weights} holds no decoder tensors")
    g.load_state_dict({**g.state_dict(), **decoder})
    return g


def posteriors(enc: Encoder, rgb: np.ndarray, path: Path, device: str = "cpu") -> torch.Tensor:
    """The encoder's (mean, log variance) of images rgb [N, 64, 64, 3] and of their mirror images, as
    [2, 2, N, d] (mirrored?, mean or log variance); computed once and kept in ``path``."""
    from safetensors.torch import load_file, save_file

    if path.exists():
        post = load_file(str(path))["post"]
        if post.shape[2] == len(rgb):
            return post
    plain = torch.stack(encode_posteriors(enc, rgb, device=device))
    mirrored = torch.stack(encode_posteriors(enc, np.ascontiguousarray(rgb[:, :, ::-1]), device=device))
    post = torch.stack([plain, mirrored]).contiguous()
    save_file({"post": post}, str(path))
    return post


def train_frozen_decoder(
    recipe,
    out: str | Path,
    cache: str | Path,
    encoder_ckpt: str | Path,
    prior_weights: str | Path = SHIPPED,
    device: str = "cpu",
    seed: int = 0,
    checkpoint_every: int = 50,
    progress: bool = True,
    fresh: bool = False,
    init: str | Path | None = None,
) -> dict:
    """Train ``recipe``'s decoder (``task_kw``: ``g_channels``, ``stages``, ``w_seg``) on the posteriors of
    the frozen encoder in ``encoder_ckpt``, behind the prior of ``prior_weights`` (copied unchanged), with
    Adam (each stage's lr, warm-up and cosine decay); batch order, mirroring and noise of step s come from
    ``seed`` and s as in :func:`unitscope.organisms.prior_gen.train_decoder`. Checkpoints every
    ``checkpoint_every`` steps (rerun to resume); at the end recalibrates batch norm on the prior's codes
    and writes ``out/NAME.safetensors`` + ``NAME.json`` (with the held-out metrics of ``n_held_out``
    samples, :func:`unitscope.organisms.gan_eval.evaluate_generator`). ``init``: a finished generator's
    weights (or a training checkpoint, ``g.`` tensors) whose decoder a fresh run starts from (fine-tuning;
    Adam starts fresh). A stage's ``"l1_act": {layer: w}`` adds w * mean |a| of that decoder layer's
    activations a [B, C, h, w] to the loss (sparse units); without it the loss is unchanged."""
    from tqdm import tqdm

    from unitscope.organisms.checkpoint import read_checkpoint, write_checkpoint
    from unitscope.organisms.data import world_arrays
    from unitscope.organisms.gan import _finish
    from unitscope.organisms.nets import generator_for
    from unitscope.organisms.tasks import MEAN, STD, local_codes
    from unitscope.organisms.train import lr_at, prepare_output

    path = prepare_output(recipe, out, fresh, seed)
    data = world_arrays(cache, recipe.world_seed, recipe.n_train, recipe.render_size, progress=progress)
    rgb = data["rgb"]
    objects = local_codes("object")[data["object"]]  # [N, 64, 64] head classes
    kw = recipe.task_kw
    g = generator_for(kw).to(device)
    assert isinstance(g, PriorGenerator)
    copy_prior(g, prior_weights)
    if init is not None:
        load_decoder(g, init)
    enc = load_encoder(encoder_ckpt, g.latent - 1, device)
    post = posteriors(enc, rgb, path.with_suffix(".posteriors.safetensors"), device).to(device)
    seg_net = frozen_segmenter(device)
    seg_norm = tuple(torch.tensor(v, device=device).view(1, 3, 1, 1) for v in (MEAN, STD))
    opt = torch.optim.Adam([p for n, p in g.named_parameters() if not n.startswith("prior.")], lr=recipe.lr)
    per_epoch = recipe.n_train // recipe.batch_size
    stages = training_stages(recipe, per_epoch)
    total = sum(st["steps"] for st in stages)
    weights = [class_weights(st.get("class_weights"), device) for st in stages]
    state = read_checkpoint(path, device, {"g": g}, {"opt": opt}) or new_state()
    if state["step"] >= total and path.with_suffix(".json").exists():
        return json.loads(path.with_suffix(".json").read_text())
    bar = tqdm(total=total, initial=state["step"], desc=recipe.name, unit="step", disable=not progress)
    t0 = time.perf_counter()
    acts: dict[str, torch.Tensor] = {}
    hooked = sorted({name for st in stages for name in st.get("l1_act", {})})
    children = dict(g.named_children())
    handles = []
    for name in hooked:
        if name not in children or name == "prior":
            raise ValueError(f"l1_act layer {name!r} is not a decoder layer; one of {', '.join(list(children)[1:])}")
        hook = children[name].register_forward_hook(lambda _m, _i, out, name=name: acts.__setitem__(name, out))
        handles.append(hook)
    g.train()  # (the segmenter keeps its frozen batch norm)
    for step in range(state["step"], total):
        epoch = step // per_epoch
        idx, flip, x_t, y_t, noise = training_batch(rgb, objects, recipe, seed, step, g.latent - 1, device)
        f_t, i_t = torch.from_numpy(flip.astype(np.int64)).to(device), torch.from_numpy(idx).to(device)
        mu, logvar = post[f_t, 0, i_t], post[f_t, 1, i_t]  # [B, d] each
        i, start = stage_at(stages, step)
        st = stages[i]
        for group in opt.param_groups:
            group["lr"] = lr_at(step - start, st["steps"], float(st.get("lr", recipe.lr)))
        code = mu + (0.5 * logvar).exp() * noise
        l1, seg_term = decoder_terms(g, seg_net, seg_norm, code, x_t, y_t, weights[i], st.get("target", "truth"))
        loss = l1 + float(st.get("w_seg", kw.get("w_seg", 0.2))) * seg_term
        for name, w in st.get("l1_act", {}).items():
            loss = loss + float(w) * acts[name].abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        fault("gan.step")
        bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch)
        record_losses(state, float(loss.detach()), float(seg_term.detach()), step, per_epoch, start, st["steps"])
        bar.update()
        if (step + 1) % checkpoint_every == 0 or step + 1 == total:
            state["step"] = step + 1
            state["seconds"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            write_checkpoint(path, state, {"g": g}, {"opt": opt})
            fault("gan.checkpoint.after")
    bar.close()
    for hook in handles:
        hook.remove()
    losses = loss_record(
        state,
        "L1 + w_seg * segmenter cross-entropy (distillation stages: KL from the segmenter's prediction on "
        "the real image), decoder only, on a frozen encoder's posteriors; mean over each epoch's steps",
    )
    return _finish(recipe, g, path, state, seed, device, cache, recipe.n_held_out, progress, losses)
