"""Train a model organism: seeded, checkpointed, resumable; writes safetensors + metadata JSON.

    from unitscope.organisms.train import train
    meta = train("world_scenes", out="runs/organisms", cache="/tmp/worlds")   # rerun resumes
    meta["metrics"]      # held-out metrics, e.g. {"accuracy": 0.95}
    meta["sha256"]       # of runs/organisms/world_scenes.safetensors

The batch order of epoch ``e`` is a permutation drawn from ``seed`` and ``e``; the augmentation
of step ``s`` from ``seed`` and ``s``. So a run killed at any point and started again continues
from its last checkpoint exactly as if it had not stopped (up to nondeterministic kernels).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from unitscope.errors import UsageError
from unitscope.faults import fault
from unitscope.organisms.checkpoint import (  # noqa: F401  (also re-exported: train's names before the split)
    load_module,
    load_optimizer,
    module_tensors,
    optimizer_tensors,
    read_checkpoint,
    sha256_file,
    write_checkpoint,
)
from unitscope.organisms.recipes import RECIPES, Recipe, build_net
from unitscope.organisms.tasks import TASKS
from unitscope.runs import atomic_write_bytes, atomic_write_text


def lr_at(step: int, total: int, base: float, warmup: int = 30) -> float:
    """Linear warm-up (``warmup`` steps, at most a fifth of the run), then cosine decay to zero."""
    warmup = min(warmup, max(1, total // 5))
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _save_checkpoint(path: Path, model, opt, state: dict) -> None:
    write_checkpoint(path, state, {"model": model}, {"opt": opt})


def _load_checkpoint(path: Path, model, opt, device) -> dict | None:
    return read_checkpoint(path, device, {"model": model}, {"opt": opt})


def _optimizer(recipe: Recipe, model) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=recipe.lr, momentum=0.9, weight_decay=recipe.weight_decay, nesterov=True
        )
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    raise ValueError(f"recipe {recipe.name}: unknown optimizer {recipe.optimizer!r}; use 'sgd' or 'adamw'")


def _deterministic(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def write_weights(path: Path, model: torch.nn.Module, recipe: Recipe) -> None:
    """``model``'s state as ``path`` (safetensors, CPU, named after the recipe), written atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={"name": recipe.name}))


def meta_header(recipe: Recipe, seed: int, n_held_out: int) -> dict:
    """The first keys of an organism's JSON, the same for classifiers, segmenters and generators: its name,
    recipe, seed and the probe world it was trained and measured on (``n_held_out`` images held out)."""
    return {
        "name": recipe.name,
        "about": recipe.about,
        "recipe": dataclasses.asdict(recipe),
        "seed": seed,
        "world": {
            "generator": "unitscope.world",
            "train_seed": recipe.world_seed,
            "n_train": recipe.n_train,
            "held_out_seed": recipe.held_out_seed,
            "n_held_out": n_held_out,
            "render_size": recipe.render_size,
            "input_size": recipe.size,
            **recipe.world_kw,
        },
    }


def prepare_output(recipe: Recipe, out: str | Path, fresh: bool, seed: int) -> Path:
    """Create ``out``, drop its checkpoint when ``fresh``, seed everything; returns the weights path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{recipe.name}.safetensors"
    if fresh:
        for p in (path.with_suffix(".ckpt.json"), path.with_suffix(".ckpt.safetensors")):
            p.unlink(missing_ok=True)
    _deterministic(seed)
    return path


def recipe_cue(recipe: Recipe):
    """The recipe's :class:`~unitscope.world.cue.CueSpec`, or None (the plain world)."""
    if "cue" not in recipe.world_kw:
        return None
    from unitscope.world.cue import CueSpec

    return CueSpec(**recipe.world_kw["cue"])


def recipe_hide(recipe: Recipe):
    """The recipe's :class:`~unitscope.world.hide.HideSpec`, or None (nothing hidden)."""
    if "hide" not in recipe.world_kw:
        return None
    from unitscope.world.hide import HideSpec

    return HideSpec(**recipe.world_kw["hide"])


def train(
    name: str | Recipe,
    out: str | Path,
    cache: str | Path,
    device: str = "cpu",
    seed: int = 0,
    epochs: int | None = None,
    n_train: int | None = None,
    n_held_out: int | None = None,
    checkpoint_every: int = 50,
    progress: bool = True,
    fresh: bool = False,
) -> dict:
    """Train ``name`` (a key of :data:`RECIPES`) and write ``out/NAME.safetensors`` + ``NAME.json``.

    ``epochs``, ``n_train``, ``n_held_out`` shorten or lengthen the recipe's schedule. Returns the
    metadata written to the JSON file (recipe, world seeds, losses per epoch, metrics, sha256)."""
    from tqdm import tqdm

    from unitscope.organisms.data import resized, world_arrays

    recipe = RECIPES[name] if isinstance(name, str) else name
    recipe = dataclasses.replace(
        recipe,
        **{k: v for k, v in dict(epochs=epochs, n_train=n_train, n_held_out=n_held_out).items() if v is not None},
    )
    if recipe.task == "frozen_vae":
        raise UsageError(
            f"{recipe.name}'s decoder trains on world_generator's frozen encoder, which is not shipped (only its "
            "decoder is): train world_generator (its encoder is in the run's checkpoint), then "
            f"unitscope.organisms.frozen_decoder.train_frozen_decoder(RECIPES[{recipe.name!r}], out, cache, "
            "encoder_ckpt=<that checkpoint>)"
        )
    if recipe.task in ("gan", "vae"):  # generators have their own loops: two networks and optimisers
        # (unitscope.organisms.gan), or a decoder with a fitted prior (unitscope.organisms.prior_gen)
        if recipe.task == "gan":
            from unitscope.organisms.gan import train_gan as train_generator
        else:
            from unitscope.organisms.prior_gen import train_decoder as train_generator

        return train_generator(
            recipe,
            out,
            cache,
            device=device,
            seed=seed,
            checkpoint_every=checkpoint_every,
            progress=progress,
            fresh=fresh,
        )
    path = prepare_output(recipe, out, fresh, seed)
    cue, hide = recipe_cue(recipe), recipe_hide(recipe)
    data = world_arrays(
        cache, recipe.world_seed, recipe.n_train, recipe.render_size, progress=progress, cue=cue, hide=hide
    )
    held = world_arrays(
        cache, recipe.held_out_seed, recipe.n_held_out, recipe.render_size, progress=progress, cue=cue, hide=hide
    )
    if recipe.task != "segment":
        data, held = resized(data, recipe.size), resized(held, recipe.size)
    task = TASKS[recipe.task](**recipe.task_kw)
    model = build_net(recipe).to(device)
    opt = _optimizer(recipe, model)
    per_epoch = recipe.n_train // recipe.batch_size
    total = per_epoch * recipe.epochs
    state = _load_checkpoint(path, model, opt, device) or {"step": 0, "losses": [], "epoch_loss": 0.0, "seconds": 0.0}
    if state["step"] >= total and path.with_suffix(".json").exists():
        return json.loads(path.with_suffix(".json").read_text())
    bar = tqdm(total=total, initial=state["step"], desc=recipe.name, unit="step", disable=not progress)
    start, t0 = state["step"], time.perf_counter()
    model.train()
    for step in range(start, total):
        epoch, b = divmod(step, per_epoch)
        perm = torch.randperm(recipe.n_train, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).numpy()
        idx = np.sort(perm[b * recipe.batch_size : (b + 1) * recipe.batch_size])
        x, y = task.batch(data, idx, torch.Generator().manual_seed(seed * 10_000_019 + step))
        x = x.to(device)
        y = {k: v.to(device) for k, v in y.items()} if isinstance(y, dict) else y.to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, recipe.lr)
        loss = task.loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        fault("train.step")
        state["epoch_loss"] += float(loss.detach())
        bar.update()
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", epoch=epoch)
        last = step + 1 == total
        if (step + 1) % per_epoch == 0:
            state["losses"].append(state["epoch_loss"] / per_epoch)
            state["epoch_loss"] = 0.0
        if (step + 1) % checkpoint_every == 0 or last:
            state["step"] = step + 1
            state["seconds"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            _save_checkpoint(path, model, opt, state)
            fault("train.checkpoint.after")
    bar.close()
    return _finish(recipe, model, task, data, held, path, state, seed, device, cache)


def _finish(
    recipe: Recipe,
    model,
    task,
    data,
    held,
    path: Path,
    state: dict,
    seed: int,
    device: str,
    cache: str | Path | None = None,
) -> dict:

    model.eval()
    metrics = task.evaluate(model, held, device=device)
    if recipe.task == "scene":  # how well it fits its own (partly shuffled) training labels
        n = min(2000, len(data["scene"]))
        own = {"rgb": data["rgb"][:n], "scene": task.train_labels(data)[:n]}
        metrics["train_label_accuracy"] = task.evaluate(model, own, device=device)["accuracy"]
    if "cue" in recipe.world_kw:  # the spurious-cue twin: where the sign agrees, is absent, misleads
        from unitscope.audit.organism import cue_metrics

        metrics.update(
            cue_metrics(
                model.cpu(),
                cache or path.parent,
                recipe.held_out_seed,
                min(recipe.n_held_out, 1000),
                recipe.size,
                recipe.render_size,
                progress=False,
            )
        )
        model.to(device)
    if "hide" in recipe.world_kw:  # the hidden-concept twin: also on the plain world, where the concept shows
        from unitscope.organisms.data import resized, world_arrays

        plain = world_arrays(
            cache or path.parent, recipe.held_out_seed, recipe.n_held_out, recipe.render_size, progress=False
        )
        if recipe.task != "segment":
            plain = resized(plain, recipe.size)
        metrics["accuracy_plain_world"] = task.evaluate(model, plain, device=device)["accuracy"]
    write_weights(path, model, recipe)
    meta = {
        **meta_header(recipe, seed, recipe.n_held_out),
        "losses_per_epoch": state["losses"],
        "train_seconds": round(state["seconds"], 1),
        "device": str(device),
        "torch": torch.__version__,
        "metrics": metrics,
        "file": path.name,
        "sha256": sha256_file(path),
    }
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1) + "\n")
    return meta
