"""A TopK sparse autoencoder: seeded, checkpointed every ``checkpoint_every`` steps and resumable
(a rerun with the same ``out`` continues where the last one stopped, with the same result).

    b = fit_sae(batches, out="runs/sae", expansion=4, k=8, epochs=20, seed=0)

Decoder rows are kept at unit norm after every step; with ``center`` the decoder bias starts at the
mean of the first stream batch (else at 0, the origin of a sparse non-negative code). Dead latents
(not fired for ``dead_after`` steps) are trained by an auxiliary loss: the top ``aux_k`` dead
latents reconstruct the residual; with ``resample`` (until half the
steps are done) they are also re-pointed at the minibatch's worst-reconstructed rows (their Adam
state reset). With ``decay`` the learning rate falls linearly to 0 over that last share of the steps.
Fault points ``sae.step`` and ``sae.checkpoint.after`` stop a run for the resume tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from unitscope.bases.basis import Basis, evaluate, rows
from unitscope.faults import fault
from unitscope.organisms.checkpoint import read_checkpoint, write_checkpoint


class TopKSAE(torch.nn.Module):
    def __init__(self, c: int, d: int, k: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        dec = torch.nn.functional.normalize(torch.randn(d, c, generator=g), dim=1)
        self.w_dec = torch.nn.Parameter(dec)
        self.w_enc = torch.nn.Parameter(dec.clone())
        self.b_enc = torch.nn.Parameter(torch.zeros(d))
        self.b_dec = torch.nn.Parameter(torch.zeros(c))
        self.register_buffer("since_fired", torch.zeros(d, dtype=torch.int64))
        self.k = k

    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu((x - self.b_dec) @ self.w_enc.t() + self.b_enc)

    def topk(self, pre: torch.Tensor, k: int) -> torch.Tensor:
        top = pre.topk(k, dim=1)
        return torch.zeros_like(pre).scatter(1, top.indices, top.values)


def _minibatches(batches: Iterable[torch.Tensor], batch_size: int, seed: int, epoch: int) -> Iterator[torch.Tensor]:
    """Each stream batch's rows, shuffled by (seed, epoch, batch), in chunks of ``batch_size``."""
    for i, x in enumerate(batches):
        r = rows(x)
        perm = torch.randperm(len(r), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + i))
        yield from r[perm].split(batch_size)


def fit_sae(
    batches: Iterable[torch.Tensor],
    out: str | Path,
    expansion: float = 4,
    k: int = 8,
    epochs: int = 10,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    dead_after: int = 200,
    aux_k: int | None = None,
    aux_coef: float = 1 / 32,
    checkpoint_every: int = 100,
    fresh: bool = False,
    resample: bool = False,
    decay: float = 0.0,
    center: bool = False,
) -> Basis:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "sae"
    if fresh:
        for suffix in (".ckpt.json", ".ckpt.safetensors"):
            ckpt.with_suffix(suffix).unlink(missing_ok=True)
    c = rows(next(iter(batches))).shape[1]
    d = max(1, round(expansion * c))
    torch.manual_seed(seed)
    model = TopKSAE(c, d, k, seed)
    if center:
        with torch.no_grad():
            model.b_dec.copy_(rows(next(iter(batches))).mean(0))
    total = epochs * sum(-(-len(rows(x)) // batch_size) for x in batches)  # steps in all
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    state = read_checkpoint(ckpt, "cpu", {"sae": model}, {"opt": opt}) or {"step": 0, "losses": []}
    aux_k = aux_k or min(d, 2 * k)
    step = 0
    for epoch in range(epochs):
        for mb in _minibatches(batches, batch_size, seed, epoch):
            if step < state["step"]:  # done before the checkpoint: skip, in the same order
                step += 1
                continue
            if decay > 0:
                for group in opt.param_groups:
                    group["lr"] = lr * min(1.0, (total - step) / (decay * total))
            loss = _step(model, opt, mb, dead_after, aux_k, aux_coef, resample=resample and step < total // 2)
            step += 1
            state["step"] = step
            state["losses"].append(loss)
            fault("sae.step")
            if step % checkpoint_every == 0:
                write_checkpoint(ckpt, state, {"sae": model}, {"opt": opt})
                fault("sae.checkpoint.after")
    write_checkpoint(ckpt, state, {"sae": model}, {"opt": opt})
    with torch.no_grad():
        b = Basis(
            "topk",
            model.w_dec.detach().clone(),
            model.w_enc.detach().clone(),
            model.b_enc.detach().clone(),
            model.b_dec.detach().clone(),
            k=k,
            config={
                "expansion": expansion,
                "k": k,
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "seed": seed,
                "dead_after": dead_after,
                "aux_k": aux_k,
                "steps": step,
                "resample": resample,
                "decay": decay,
                "center": center,
            },
        )
    b.metrics = {**evaluate(b, batches), "final_loss": state["losses"][-1] if state["losses"] else float("nan")}
    b.save(out)
    return b


def _step(
    model: TopKSAE,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    dead_after: int,
    aux_k: int,
    aux_coef: float,
    resample: bool = False,
) -> float:
    pre = model.pre(x)
    codes = model.topk(pre, model.k)
    x_hat = codes @ model.w_dec + model.b_dec
    var = ((x - x.mean(0)) ** 2).sum().clamp_min(1e-12)
    loss = ((x - x_hat) ** 2).sum() / var
    with torch.no_grad():
        fired = (codes > 0).any(0)
        model.since_fired += 1
        model.since_fired[fired] = 0
        dead = model.since_fired > dead_after
    if bool(dead.any()):
        aux = model.topk(pre * dead, min(aux_k, int(dead.sum())))
        resid = (x - x_hat).detach()
        loss = loss + aux_coef * ((resid - aux @ model.w_dec) ** 2).sum() / var
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        model.w_dec.copy_(torch.nn.functional.normalize(model.w_dec, dim=1))
        if resample and bool(dead.any()):
            _resample(model, opt, x, (x - x_hat).detach(), dead)
    return float(loss.detach())


def _resample(
    model: TopKSAE, opt: torch.optim.Optimizer, x: torch.Tensor, resid: torch.Tensor, dead: torch.Tensor
) -> None:
    """Dead latents re-pointed at the worst-reconstructed rows of ``x`` [M, C] (deterministic: by
    residual norm), encoder = decoder row scaled to the alive encoders' mean norm, bias 0."""
    idx = dead.nonzero().flatten()
    worst = resid.norm(dim=1).topk(min(len(idx), len(x))).indices
    idx = idx[: len(worst)]
    new = torch.nn.functional.normalize(resid[worst], dim=1)
    alive = ~dead
    scale = model.w_enc[alive].norm(dim=1).mean() if bool(alive.any()) else torch.tensor(1.0)
    model.w_dec[idx] = new
    model.w_enc[idx] = new * scale
    model.b_enc[idx] = 0
    model.since_fired[idx] = 0
    for p in (model.w_dec, model.w_enc, model.b_enc):
        st = opt.state.get(p, {})
        for name in ("exp_avg", "exp_avg_sq"):
            if name in st:
                st[name][idx] = 0
