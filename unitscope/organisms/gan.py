"""``world_generator``'s training: hinge loss, G and D steps, a moving average of G, the loop.
The networks (``Generator``, ``Discriminator``, ``generate``) live in :mod:`unitscope.organisms.nets`
with the other organisms' (importable from here too). :func:`_finish` (batch norm, weights, metrics)
also finishes the decoder-with-prior generator of :mod:`unitscope.organisms.prior_gen`.

    from unitscope.models import create_model
    g = create_model("world_generator")           # shipped weights, sha256 checked
    z = torch.randn(16, g.latent)                 # z [N, Z] (or [N, Z, 1, 1])
    images = g(z)                                 # [16, 3, 64, 64] in [0, 1]
    # unitscope organisms train world_generator --out runs/organisms     (rerun to resume)

``Generator``: z -> 4x4 -> 8 -> 16 -> 32 -> 64, each doubling a nearest-neighbour resize and a 3x3
convolution (the recipe's ``task_kw["upsample"]``; ``"transposed"`` gives the DCGAN's transposed
convolutions), batch norm and ReLU (``conv<k>``, ``bn<k>``, ``relu<k>``; dissect ``relu1..relu4``,
after the nonlinearity), then ``conv5`` and a tanh mapped to [0, 1]. ``Discriminator``: strided
convolutions with spectral norm and leaky ReLU, trained with the hinge loss; Adam for both (betas
0.5/0.999; G at the recipe's lr, D at ``task_kw["lr_d"]``). The training
batch order, flips and z of step ``s`` come from ``seed`` and ``s``, so a resumed run continues
exactly; the checkpoint holds G, D, both optimisers (and G's moving average when the recipe's
``task_kw["ema"]`` sets a decay), the shipped file only G (that average, if kept), with its batch-norm
statistics recomputed over 2,048 samples (:func:`recalibrate_batch_norm`).
"""

from __future__ import annotations

import copy
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unitscope.faults import fault
from unitscope.organisms.nets import (  # noqa: F401  (gan's names before the nets moved)
    D_CHANNELS,
    G_CHANNELS,
    GENERATOR_LAYERS,
    LATENT,
    Discriminator,
    Generator,
    generate,
    generator_for,
    sample_z,
    scene_of_z,
)


def d_hinge_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """mean(relu(1 - D(real))) + mean(relu(1 + D(fake))): 2 for a D that cannot tell, 0 at margin."""
    return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()


def g_hinge_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()


def save_samples(model: Generator, out: Path, n: int, seed: int = 0, device: str = "cpu") -> list[Path]:
    """Write ``n`` samples as ``out/000000.png`` ... (64x64 RGB); returns the paths."""
    from PIL import Image

    from unitscope.runs import atomic_write_bytes

    images = (generate(model, n, seed=seed, device=device).permute(0, 2, 3, 1) * 255).round().byte().numpy()
    paths = []
    for i, im in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="PNG")
        paths.append(Path(out) / f"{i:06d}.png")
        atomic_write_bytes(paths[-1], buf.getvalue(), fsync=False)
    return paths


@torch.no_grad()
def recalibrate_batch_norm(
    model: Generator, seed: int, batches: int = 32, batch_size: int = 64, device: str = "cpu"
) -> Generator:
    """Set G's batch-norm running statistics to their average over ``batches`` train-mode passes on z
    drawn from ``seed`` ("standing statistics"). The running averages kept during training lag behind
    a G that changes every step, and eval-mode samples drift in colour; after this they look like the
    train-mode samples D saw. Returns ``model`` in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the passes below
    model.train()
    gen = torch.Generator().manual_seed(seed * 7919 + 1)
    for _ in range(batches):
        model(torch.randn(batch_size, model.latent, generator=gen).to(device))
    for m in norms:
        m.momentum = 0.1
    return model.eval()


# -- checkpoints: G, D (and G's average) and both Adam states (unitscope.organisms.train's format) ----


def _save_checkpoint(path: Path, g, d, opt_g, opt_d, state: dict, ema=None) -> None:
    from unitscope.organisms.checkpoint import write_checkpoint

    write_checkpoint(path, state, _modules(g, d, ema), {"opt_g": opt_g, "opt_d": opt_d})


def _load_checkpoint(path: Path, g, d, opt_g, opt_d, device, ema=None) -> dict | None:
    from unitscope.organisms.checkpoint import read_checkpoint

    return read_checkpoint(path, device, _modules(g, d, ema), {"opt_g": opt_g, "opt_d": opt_d})


def _modules(g, d, ema) -> dict[str, nn.Module]:
    return {"g": g, "d": d, **({"ema": ema} if ema is not None else {})}


# -- training ------------------------------------------------------------------------------------


def _real_batch(rgb: np.ndarray, idx: np.ndarray, gen: torch.Generator) -> torch.Tensor:
    """uint8 [B, H, W, 3] rows ``idx``, half of them flipped left-right -> float [B, 3, H, W] in [0, 1]."""
    x = rgb[idx]
    flip = torch.rand(len(idx), generator=gen).numpy() < 0.5
    x = np.where(flip[:, None, None, None], x[:, :, ::-1], x)
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float() / 255.0


def gan_step(
    g: Generator,
    d: Discriminator,
    opt_g,
    opt_d,
    real: torch.Tensor,
    z: torch.Tensor,
    real_scenes: torch.Tensor | None = None,
) -> tuple[float, float]:
    """One D step on (real, G(z)) then one G step on the same fake batch; returns (D loss, G loss).
    A scene-conditional pair (``g.scenes`` > 0) scores the real images [N, 3, H, W] with their scenes
    ``real_scenes`` [N] and the fakes with the scenes G read from z (:func:`scene_of_z`)."""
    fake = g(z)
    fake_scenes = scene_of_z(z, g.scenes) if g.scenes else None
    loss_d = d_hinge_loss(d(real, real_scenes), d(fake.detach(), fake_scenes))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    loss_g = g_hinge_loss(d(fake, fake_scenes))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return float(loss_d.detach()), float(loss_g.detach())


@torch.no_grad()
def ema_update(ema: Generator, g: Generator, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * g, parameter by parameter (batch-norm statistics are
    recomputed for the shipped G at the end, :func:`recalibrate_batch_norm`)."""
    for pe, p in zip(ema.parameters(), g.parameters()):
        pe.lerp_(p, 1 - decay)


def train_gan(
    recipe,
    out: str | Path,
    cache: str | Path,
    device: str = "cpu",
    seed: int = 0,
    checkpoint_every: int = 50,
    progress: bool = True,
    fresh: bool = False,
) -> dict:
    """Train the generator of ``recipe`` (see :func:`unitscope.organisms.train.train`) for ``recipe.epochs``
    passes over its images, or ``recipe.task_kw["steps"]`` steps when that is fewer; write
    ``out/NAME.safetensors`` (G only) + ``NAME.json`` (losses, segmenter object tables, sha256).
    The object tables compare ``recipe.n_held_out`` samples with as many held-out world images (0: none)."""
    from tqdm import tqdm

    from unitscope.organisms.data import world_arrays
    from unitscope.organisms.prior_gen import new_state
    from unitscope.organisms.train import prepare_output

    path = prepare_output(recipe, out, fresh, seed)
    data = world_arrays(cache, recipe.world_seed, recipe.n_train, recipe.render_size, progress=progress)
    rgb, scenes = data["rgb"], torch.from_numpy(data["scene"])
    kw = recipe.task_kw
    g = generator_for(kw).to(device)
    d = Discriminator(kw.get("d_channels", D_CHANNELS), classes=g.scenes).to(device)
    decay = float(kw.get("ema", 0.0))  # > 0: ship an exponential moving average of G
    ema = copy.deepcopy(g) if decay > 0 else None
    opt_g = torch.optim.Adam(g.parameters(), lr=recipe.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=float(kw.get("lr_d", recipe.lr)), betas=(0.5, 0.999))
    per_epoch = recipe.n_train // recipe.batch_size
    total = min(per_epoch * recipe.epochs, int(kw.get("steps", per_epoch * recipe.epochs)))  # "steps": stop early
    state = _load_checkpoint(path, g, d, opt_g, opt_d, device, ema) or new_state()
    if state["step"] >= total and path.with_suffix(".json").exists():
        return json.loads(path.with_suffix(".json").read_text())
    bar = tqdm(total=total, initial=state["step"], desc=recipe.name, unit="step", disable=not progress)
    t0 = time.perf_counter()
    g.train(), d.train()
    for step in range(state["step"], total):
        epoch, b = divmod(step, per_epoch)
        perm = torch.randperm(recipe.n_train, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).numpy()
        gen = torch.Generator().manual_seed(seed * 10_000_019 + step)
        idx = np.sort(perm[b * recipe.batch_size : (b + 1) * recipe.batch_size])
        real = _real_batch(rgb, idx, gen)
        z = torch.randn(recipe.batch_size, g.latent, generator=gen)
        ld, lg = gan_step(
            g, d, opt_g, opt_d, real.to(device), z.to(device), scenes[idx].to(device) if g.scenes else None
        )
        if ema is not None:
            ema_update(ema, g, decay)
        fault("gan.step")
        state["sums"] = [state["sums"][0] + ld, state["sums"][1] + lg]
        bar.update()
        bar.set_postfix(d=f"{ld:.3f}", g=f"{lg:.3f}", epoch=epoch)
        if (step + 1) % per_epoch == 0:
            state["d_losses"].append(state["sums"][0] / per_epoch)
            state["g_losses"].append(state["sums"][1] / per_epoch)
            state["sums"] = [0.0, 0.0]
        if (step + 1) % checkpoint_every == 0 or step + 1 == total:
            state["step"] = step + 1
            state["seconds"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            _save_checkpoint(path, g, d, opt_g, opt_d, state, ema)
            fault("gan.checkpoint.after")
    bar.close()
    return _finish(recipe, g if ema is None else ema, path, state, seed, device, cache, recipe.n_held_out, progress)


def _finish(
    recipe,
    g: nn.Module,
    path: Path,
    state: dict,
    seed: int,
    device: str,
    cache,
    n_eval: int,
    progress: bool,
    losses: dict | None = None,
) -> dict:
    """Recalibrate G's batch norm, write ``path`` (G) and its JSON (``losses``: the per-epoch loss lists
    to record, default the GAN's D and G losses), with the held-out metrics of ``n_eval`` samples."""
    from unitscope.organisms.checkpoint import sha256_file
    from unitscope.organisms.gan_eval import evaluate_generator
    from unitscope.organisms.train import meta_header, write_weights
    from unitscope.runs import atomic_write_text

    recalibrate_batch_norm(g, seed, device=device)  # type: ignore[arg-type]
    write_weights(path, g, recipe)
    metrics, tables = {}, {}
    if n_eval:
        metrics, tables = evaluate_generator(g, cache, recipe.held_out_seed, n_eval, device=device, progress=progress)
    meta = {
        **meta_header(recipe, seed, n_eval),  # generator recipes have no world_kw: the header as before
        "model": {"kind": "generator", "latent": g.latent, "output": [3, 64, 64], "range": [0, 1]},
        **(
            losses
            if losses is not None
            else {
                "losses_per_epoch": state["d_losses"],
                "d_losses_per_epoch": state["d_losses"],
                "g_losses_per_epoch": state["g_losses"],
            }
        ),
        "train_seconds": round(state["seconds"], 1),
        "device": str(device),
        "torch": torch.__version__,
        "metrics": metrics,
        "object_tables": tables,
        "file": path.name,
        "sha256": sha256_file(path),
    }
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1) + "\n")
    return meta
