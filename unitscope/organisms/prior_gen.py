"""``world_generator`` redesigned as a decoder with a fitted prior: z from a fixed seed -> code -> image.

    from unitscope.organisms.recipes import VAE_RECIPE
    from unitscope.organisms.train import train
    meta = train(VAE_RECIPE, out="runs/organisms", cache="/tmp/worlds")   # rerun to resume
    g = generator_for(VAE_RECIPE.task_kw); g.load_state_dict(load_file("runs/organisms/world_generator.safetensors"))
    images = g(torch.randn(16, g.latent))         # z [16, 64] -> [16, 3, 64, 64] in [0, 1]
    g.prior(z)                                    # the decoder's code [N, 63] for z [N, 64]

A GAN trained for an hour on a shared CPU drew chimeras (docs/world.md). This generator is trained
instead as a variational autoencoder on world images: an encoder (not shipped) maps an image to a
code, the decoder (``conv1 .. conv5`` with ``relu1 .. relu4``, as the GAN's G) draws it back, and the
loss is the pixels' L1 distance plus the cross-entropy of the frozen ``world_segmenter`` on the
decoded image against the image's true object labels (so decoded images segment as the real ones do)
plus a small KL term; ``task_kw["stages"]`` runs several schedules one after the other (each its own
lr, warm-up and cosine, and per-object weights of the cross-entropy, e.g. for small objects; a stage with
``"target": "segmenter"`` distils instead: the segmenter's soft prediction on the real image is the
target, :func:`distill_loss`). After
training the prior is fitted on the training images' codes. ``task_kw["prior"] = "empirical"``:
:class:`EmpiricalPrior`, ``components`` of the training images' own posteriors (mean and standard
deviation, float16), one chosen uniformly (the aggregate posterior, "mixture of posteriors"); else
:class:`MixturePrior`: per scene, ``components`` Gaussians (k-means, then each cluster's mean and full
covariance), weighted by how often each scene and cluster occurs. Sampling stays "z -> image": z's
first coordinate picks a component through the standard normal's CDF (element-wise, so ``torch.fx``
traces it), the other 63 coordinates, scaled by ``temperature``, are its noise.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unitscope.faults import fault
from unitscope.organisms.nets import LATENT, Generator


class MixturePrior(nn.Module):
    """z [N, latent] -> code [N, latent - 1] drawn from a Gaussian mixture of ``k`` components.

    ``edges`` [k] are the upper ends of the components' cumulative weights; component j is chosen
    when Phi(z[:, 0]) falls in [edges[j-1], edges[j]); the code is ``means[j] + chol[j] @ (t * z[:, 1:])``
    with ``t`` the temperature. Untrained (no fit): one standard normal component, code = z[:, 1:]."""

    def __init__(self, latent: int = LATENT, k: int = 1):
        super().__init__()
        d = latent - 1
        self.latent, self.k = latent, k
        self.register_buffer("edges", torch.linspace(1.0 / k, 1.0, k))
        self.register_buffer("means", torch.zeros(k, d))
        self.register_buffer("chol", torch.eye(d).repeat(k, 1, 1))
        self.register_buffer("temperature", torch.ones(()))
        self.register_buffer("scene", torch.zeros(k, dtype=torch.long))  # each component's scene

    def one_hot(self, z: torch.Tensor) -> torch.Tensor:
        """The chosen components of z [N, latent] as a one-hot [N, k] (element-wise: fx-traceable)."""
        u = torch.special.ndtr(z[:, :1])  # [N, 1] uniform in (0, 1)
        upper = torch.cat([self.edges[:-1], torch.full_like(self.edges[-1:], 2.0)])  # Phi(z) may round to 1
        lower = torch.cat([torch.zeros_like(self.edges[:1]), self.edges[:-1]])
        return ((u >= lower) & (u < upper)).to(z.dtype)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        onehot = self.one_hot(z)  # [N, k]
        eps = z[:, 1:] * self.temperature  # [N, d]
        spread = torch.einsum("nk,kij,nj->ni", onehot, self.chol, eps)
        return onehot @ self.means + spread

    @torch.no_grad()
    def fit(
        self, codes: torch.Tensor, scenes: torch.Tensor, per_scene: int, seed: int = 0, ridge: float = 1e-3
    ) -> None:
        """Fit the mixture on codes [N, d] with their scenes [N]: k-means (``per_scene`` clusters, 25
        rounds) within each scene, then each cluster's weight (its share of N), mean and full covariance
        (+ ``ridge`` I). Sets ``k`` = the number of clusters found (at most scenes x per_scene)."""
        means, chols, weights, owner = [], [], [], []
        gen = torch.Generator().manual_seed(seed)
        for s in torch.unique(scenes).tolist():
            x = codes[scenes == s].double()
            m = min(per_scene, max(1, len(x) // (2 * x.shape[1])))  # enough points per covariance
            centres = x[torch.randperm(len(x), generator=gen)[:m]]
            for _ in range(25):
                assign = torch.cdist(x, centres).argmin(1)
                centres = torch.stack([x[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(m)])
            for j in range(m):
                xj = x[assign == j]
                if len(xj) < 2:
                    continue
                cov = torch.cov(xj.T) + ridge * torch.eye(x.shape[1], dtype=x.dtype)
                means.append(xj.mean(0)), chols.append(torch.linalg.cholesky(cov))
                weights.append(len(xj) / len(codes)), owner.append(s)
        w = torch.tensor(weights, dtype=torch.float64)
        self.k = len(w)
        self.edges = torch.cumsum(w / w.sum(), 0).float()
        self.means = torch.stack(means).float()
        self.chol = torch.stack(chols).float()
        self.scene = torch.tensor(owner, dtype=torch.long)


class EmpiricalPrior(nn.Module):
    """z [N, latent] -> code [N, latent - 1] drawn from the training images' own posteriors (a
    "mixture of posteriors", as VampPrior's limit): ``codes`` [k, d] are k training images' code
    means, ``scales`` [k, d] their posterior standard deviations (both float16, to ship small). Image
    j = floor(k Phi(z[:, 0])) is chosen by z's first coordinate (uniform over the k images); the code
    is ``codes[j] + t * scales[j] * z[:, 1:]`` with ``t`` the temperature. Untrained (no fit): one
    standard normal component, code = z[:, 1:]."""

    def __init__(self, latent: int = LATENT, k: int = 1):
        super().__init__()
        d = latent - 1
        self.latent, self.k = latent, k
        self.register_buffer("codes", torch.zeros(k, d, dtype=torch.float16))
        self.register_buffer("scales", torch.ones(k, d, dtype=torch.float16))
        self.register_buffer("temperature", torch.ones(()))

    def index(self, z: torch.Tensor) -> torch.Tensor:
        """The chosen training codes' rows [N] (int64) for z [N, latent]."""
        u = torch.special.ndtr(z[:, 0])  # [N] uniform in (0, 1)
        return (u * self.k).long().clamp(0, self.k - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        j = self.index(z)
        return self.codes[j].to(z.dtype) + self.temperature * self.scales[j].to(z.dtype) * z[:, 1:]

    @torch.no_grad()
    def fit(self, means: torch.Tensor, logvars: torch.Tensor, k: int, seed: int = 0) -> None:
        """Keep ``k`` of the N posteriors (means and log variances [N, d]), chosen at random by ``seed``
        (all of them when k >= N), in their order in the training set."""
        keep = torch.randperm(len(means), generator=torch.Generator().manual_seed(seed))[:k].sort().values
        self.k = len(keep)
        self.codes = means[keep].to(torch.float16)
        self.scales = (0.5 * logvars[keep]).exp().to(torch.float16)


class PriorGenerator(nn.Sequential):
    """Latent z [N, 64] (or [N, 64, 1, 1]) -> image [N, 3, 64, 64] in [0, 1]: ``prior`` (a
    :class:`MixturePrior`, z -> code [N, 63]), then the decoder: ``conv1`` (1x1 -> 4x4), and per
    doubling ``up<k>``/``conv<k>``, each with ``bn<k>``/``relu<k>`` (``relu1..relu4`` at 4, 8, 16, 32
    px), ``conv5`` and a tanh mapped to [0, 1]."""

    def __init__(
        self,
        latent: int = LATENT,
        channels=(160, 80, 40, 20),
        upsample: str = "nearest",
        components: int = 1,
        prior: str = "mixture",
    ):
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}, not {prior!r}")
        decoder = Generator(latent=latent - 1, channels=channels, upsample=upsample)
        super().__init__(OrderedDict([("prior", PRIORS[prior](latent, components)), *decoder.named_children()]))
        self.latent, self.upsample, self.scenes = latent, upsample, 0

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Code [N, latent - 1] -> image [N, 3, 64, 64] in [0, 1] (the layers after ``prior``)."""
        h = code.reshape(code.shape[0], -1, 1, 1)
        for name, module in self.named_children():
            if name != "prior":
                h = module(h)
        return (h + 1) / 2

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(self.prior(z.reshape(z.shape[0], self.latent)))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Make the prior the stored kind (codes: :class:`EmpiricalPrior`, means: :class:`MixturePrior`)
        with the stored number of components first."""
        for kind, key in ((EmpiricalPrior, "prior.codes"), (MixturePrior, "prior.means")):
            if key in state_dict and (state_dict[key].shape[0] != self.prior.k or not isinstance(self.prior, kind)):
                self.prior = kind(self.latent, state_dict[key].shape[0])
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


PRIORS: dict[str, type[MixturePrior] | type[EmpiricalPrior]] = {"mixture": MixturePrior, "empirical": EmpiricalPrior}


class Encoder(nn.Module):
    """Image [N, 3, 64, 64] in [0, 1] -> (mean, log variance) of the code, each [N, d]: four stride-2
    conv-bn-relu blocks (64 -> 4 px) and a linear layer. Used in training only (not shipped)."""

    def __init__(self, code: int = LATENT - 1, channels=(32, 64, 128, 128)):
        super().__init__()
        layers, cin = [], 3
        for cout in channels:
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(cin * 16, 2 * code)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.out(self.net(x * 2 - 1).flatten(1)).chunk(2, 1)
        return mu, logvar.clamp(-12, 6)


def vae_loss(
    g: PriorGenerator,
    enc: Encoder,
    seg_net: nn.Module,
    seg_norm: tuple,
    x: torch.Tensor,
    labels: torch.Tensor,
    noise: torch.Tensor,
    w_seg: float,
    w_kl: float,
    class_weight: torch.Tensor | None = None,
    target: str = "truth",
) -> tuple[torch.Tensor, dict]:
    """Loss on images x [B, 3, 64, 64] in [0, 1] with object labels [B, 64, 64] (the segmenter's head
    classes): L1(decoded, x) + w_seg S + w_kl KL(q(code | x) || N(0, I)) summed over the code, averaged
    over the batch. ``noise`` [B, d] draws the code. ``target`` "truth": S is the cross-entropy of
    seg(decoded) against the labels; "segmenter": S is :func:`distill_loss`, the KL divergence from the
    frozen segmenter's own soft prediction on x to its prediction on the decoded image (so decoded
    images segment as the real ones do, the segmenter's errors included). ``class_weight`` [L] (or
    None: all 1) weighs each head class's pixels in S (a weighted mean)."""
    mu, logvar = enc(x)
    l1, seg_term = decoder_terms(
        g, seg_net, seg_norm, mu + (0.5 * logvar).exp() * noise, x, labels, class_weight, target
    )
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
    parts = {"l1": float(l1.detach()), "ce": float(seg_term.detach()), "kl": float(kl.detach())}
    return l1 + w_seg * seg_term + w_kl * kl, parts


TARGETS = ("truth", "segmenter")


def decoder_terms(
    g: PriorGenerator,
    seg_net: nn.Module,
    seg_norm: tuple,
    code: torch.Tensor,
    x: torch.Tensor,
    labels: torch.Tensor,
    class_weight: torch.Tensor | None = None,
    target: str = "truth",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L1(decoded, x), S)`` for codes [B, d] decoded and compared with images x [B, 3, 64, 64] in
    [0, 1] and their object labels [B, 64, 64]; S as :func:`vae_loss` defines it for ``target``."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    y = g.decode(code)
    mean, std = seg_norm
    logits = seg_net((y - mean) / std)["object"]  # [B, L, 32, 32] (see frozen_segmenter)
    l1 = (y - x).abs().mean()
    if target == "segmenter":
        with torch.no_grad():
            real_logits = seg_net((x - mean) / std)["object"]  # [B, L, 32, 32]
        return l1, distill_loss(logits, real_logits, class_weight)
    truth = labels[:, ::2, ::2] if logits.shape[-1] < labels.shape[-1] else labels
    return l1, F.cross_entropy(logits, truth, weight=class_weight)


def distill_loss(
    logits: torch.Tensor, target_logits: torch.Tensor, class_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-pixel KL(p || q) of the target's class distribution p = softmax(target_logits) to q =
    softmax(logits), both [B, L, H, W], averaged over the pixels, each weighted by its expected class
    weight sum_c p_c w_c (``class_weight`` [L]; None: all 1). 0 when the logits are equal."""
    logp = F.log_softmax(target_logits, 1)
    kl = (logp.exp() * (logp - F.log_softmax(logits, 1))).sum(1)  # [B, H, W]
    if class_weight is None:
        return kl.mean()
    w = torch.einsum("blhw,l->bhw", logp.exp(), class_weight)
    return (w * kl).sum() / w.sum()


def frozen_segmenter(device: str = "cpu") -> nn.Module:
    """``world_segmenter``'s network with its weights frozen and batch norm on its running statistics,
    but otherwise in training mode, so it returns logits at half size [N, L, 32, 32] (the size it was
    trained at; the full-size upsampling costs as much as the network on a CPU)."""
    from unitscope.models import create_model

    net = create_model("world_segmenter").to(device).train()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@torch.no_grad()
def encode_all(enc: Encoder, rgb: np.ndarray, batch_size: int = 256, device: str = "cpu") -> torch.Tensor:
    """uint8 images [N, 64, 64, 3] -> code means [N, d] (encoder in eval mode)."""
    return encode_posteriors(enc, rgb, batch_size, device)[0]


@torch.no_grad()
def encode_posteriors(
    enc: Encoder, rgb: np.ndarray, batch_size: int = 256, device: str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [N, 64, 64, 3] -> (code means, log variances), each [N, d] (encoder in eval mode)."""
    enc.eval()
    means, logvars = [], []
    for s in range(0, len(rgb), batch_size):
        x = torch.from_numpy(rgb[s : s + batch_size]).permute(0, 3, 1, 2).float().to(device) / 255.0
        mu, logvar = enc(x)
        means.append(mu.cpu()), logvars.append(logvar.cpu())
    return torch.cat(means), torch.cat(logvars)


def training_stages(recipe, per_epoch: int) -> list[dict]:
    """The recipe's training stages: ``task_kw["stages"]`` (a list of {"steps", "lr", "class_weights",
    "target": "truth" or "segmenter" (:func:`vae_loss`), "w_seg": the stage's own weight of that term}),
    each with its own warm-up and cosine decay, run one after the other; without it one stage of
    ``task_kw["steps"]`` (default: ``epochs`` epochs) at the recipe's lr."""
    kw = recipe.task_kw
    if kw.get("stages"):
        for st in kw["stages"]:
            if st.get("target", "truth") not in TARGETS:
                raise ValueError(f"stage target must be one of {', '.join(TARGETS)}, not {st['target']!r}")
        return [dict(st) for st in kw["stages"]]
    return [{"steps": min(per_epoch * recipe.epochs, int(kw.get("steps", per_epoch * recipe.epochs))), "lr": recipe.lr}]


def stage_at(stages: list[dict], step: int) -> tuple[int, int]:
    """(index, first step) of the stage that holds ``step`` (the last stage past the end)."""
    start = 0
    for i, st in enumerate(stages):
        if step < start + st["steps"] or i == len(stages) - 1:
            return i, start
        start += st["steps"]
    raise ValueError("no training stages")


def class_weights(weights: dict | None, device: str = "cpu") -> torch.Tensor | None:
    """{object name: weight} -> the cross-entropy's weight per segmenter head class [1 + objects]
    ("none" and unnamed objects 1); None for None. Unknown names raise ValueError."""
    if not weights:
        return None
    from unitscope.world.vocab import VOCAB

    names = [name for name, _ in VOCAB["object"]]
    w = torch.ones(len(names) + 1)
    for name, value in weights.items():
        if name not in names:
            raise ValueError(f"class_weights: {name!r} is not an object of the world (objects: {', '.join(names)})")
        w[names.index(name) + 1] = float(value)
    return w.to(device)


def training_batch(
    rgb: np.ndarray, objects: np.ndarray, recipe, seed: int, step: int, latent: int, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step ``step``'s batch of a decoder's training, the same on every rerun (batch order, flips and
    noise come from ``seed`` and ``step``): ``(idx [B], flip [B] bool, x [B, 3, 64, 64] in [0, 1],
    labels [B, 64, 64] head classes, noise [B, latent])`` from the world's ``rgb [N, 64, 64, 3]`` uint8
    and ``objects [N, 64, 64]``, images mirrored where ``flip``."""
    per_epoch = recipe.n_train // recipe.batch_size
    epoch, b = divmod(step, per_epoch)
    perm = torch.randperm(recipe.n_train, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).numpy()
    gen = torch.Generator().manual_seed(seed * 10_000_019 + step)
    idx = np.sort(perm[b * recipe.batch_size : (b + 1) * recipe.batch_size])
    flip = torch.rand(len(idx), generator=gen).numpy() < 0.5
    x = np.where(flip[:, None, None, None], rgb[idx][:, :, ::-1], rgb[idx])
    y = np.where(flip[:, None, None], objects[idx][:, :, ::-1], objects[idx])
    x_t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().to(device) / 255.0
    noise = torch.randn(len(idx), latent, generator=gen).to(device)
    return idx, flip, x_t, torch.from_numpy(np.ascontiguousarray(y)).to(device), noise


def new_state(**extra) -> dict:
    """A decoder or GAN trainer's state before its first step (what :func:`record_losses` adds to and
    the checkpoints carry), with ``extra`` entries."""
    return {"step": 0, "d_losses": [], "g_losses": [], "sums": [0.0, 0.0], "seconds": 0.0, **extra}


def loss_record(state: dict, loss: str) -> dict:
    """The per-epoch means :func:`record_losses` kept, as a trainer's metadata: the loss and the
    segmenter term per epoch, and ``loss``, what the loss was."""
    return {"losses_per_epoch": state["d_losses"], "segmenter_ce_per_epoch": state["g_losses"], "loss": loss}


def record_losses(
    state: dict, loss: float, seg: float, step: int, per_epoch: int, start: int, stage_steps: int
) -> None:
    """Add a step's loss and segmenter term to ``state["sums"]``; at the end of an epoch or a stage,
    append their means to ``state["d_losses"]`` and ``state["g_losses"]`` and start again."""
    state["sums"] = [state["sums"][0] + loss, state["sums"][1] + seg]
    if (step + 1) % per_epoch == 0 or step + 1 == start + stage_steps:
        n = min(step % per_epoch, step - start) + 1
        state["d_losses"].append(state["sums"][0] / n)
        state["g_losses"].append(state["sums"][1] / n)
        state["sums"] = [0.0, 0.0]


def train_decoder(
    recipe,
    out: str | Path,
    cache: str | Path,
    device: str = "cpu",
    seed: int = 0,
    checkpoint_every: int = 100,
    progress: bool = True,
    fresh: bool = False,
) -> dict:
    """Train ``recipe``'s decoder and encoder (``recipe.task_kw``: ``g_channels``, ``components`` per
    scene, ``temperature``, ``w_seg``, ``w_kl``, ``steps``, ``prior_images``: how many training images'
    codes the prior is fitted on, default all) with Adam (the recipe's ``lr``, warm-up and
    cosine decay), checkpointing every ``checkpoint_every`` steps (rerun to resume: batch order, flips
    and noise of step s come from ``seed`` and s); then fit the prior, recalibrate batch norm and write
    ``out/NAME.safetensors`` (G with its prior) + ``NAME.json`` as :func:`unitscope.organisms.gan.train_gan`."""
    from tqdm import tqdm

    from unitscope.organisms.checkpoint import read_checkpoint, write_checkpoint
    from unitscope.organisms.data import world_arrays
    from unitscope.organisms.gan import _finish
    from unitscope.organisms.nets import generator_for
    from unitscope.organisms.tasks import MEAN, STD, local_codes
    from unitscope.organisms.train import lr_at, prepare_output

    path = prepare_output(recipe, out, fresh, seed)
    data = world_arrays(cache, recipe.world_seed, recipe.n_train, recipe.render_size, progress=progress)
    rgb, scenes = data["rgb"], torch.from_numpy(data["scene"])
    objects = local_codes("object")[data["object"]]  # [N, 64, 64] head classes
    kw = recipe.task_kw
    g = generator_for(kw).to(device)
    assert isinstance(g, PriorGenerator)
    enc = Encoder(g.latent - 1).to(device)
    seg_net = frozen_segmenter(device)
    seg_norm = (torch.tensor(MEAN, device=device).view(1, 3, 1, 1), torch.tensor(STD, device=device).view(1, 3, 1, 1))
    params = [p for n, p in g.named_parameters() if not n.startswith("prior.")] + list(enc.parameters())
    opt = torch.optim.Adam(params, lr=recipe.lr)
    per_epoch = recipe.n_train // recipe.batch_size
    stages = training_stages(recipe, per_epoch)
    total = sum(st["steps"] for st in stages)
    weights = [class_weights(st.get("class_weights"), device) for st in stages]
    modules = {"g": g, "enc": enc}
    state = read_checkpoint(path, device, modules, {"opt": opt}) or new_state(parts=[])
    g.prior = generator_for(kw).prior.to(device)  # fitted after training: the recipe's kind, whatever a checkpoint held
    if state["step"] >= total and path.with_suffix(".json").exists():
        return json.loads(path.with_suffix(".json").read_text())
    bar = tqdm(total=total, initial=state["step"], desc=recipe.name, unit="step", disable=not progress)
    t0 = time.perf_counter()
    g.train(), enc.train()  # (the segmenter keeps its frozen batch norm)
    for step in range(state["step"], total):
        epoch = step // per_epoch
        _, _, x_t, y_t, noise = training_batch(rgb, objects, recipe, seed, step, g.latent - 1, device)
        i, start = stage_at(stages, step)
        for group in opt.param_groups:
            group["lr"] = lr_at(step - start, stages[i]["steps"], float(stages[i].get("lr", recipe.lr)))
        loss, parts = vae_loss(
            g,
            enc,
            seg_net,
            seg_norm,
            x_t,
            y_t,
            noise,
            float(stages[i].get("w_seg", kw.get("w_seg", 0.1))),
            float(kw.get("w_kl", 1e-3)),
            weights[i],
            stages[i].get("target", "truth"),
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        fault("gan.step")
        record_losses(state, float(loss.detach()), parts["ce"], step, per_epoch, start, stages[i]["steps"])
        bar.update()
        bar.set_postfix(l1=f"{parts['l1']:.3f}", ce=f"{parts['ce']:.3f}", kl=f"{parts['kl']:.1f}", epoch=epoch)
        if (step + 1) % checkpoint_every == 0 or step + 1 == total:
            state["step"] = step + 1
            state["seconds"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            write_checkpoint(path, state, modules, {"opt": opt})
            fault("gan.checkpoint.after")
    bar.close()
    n_fit = int(kw.get("prior_images", len(rgb)))  # the first n_fit training images
    fit_prior(
        g,
        enc,
        rgb[:n_fit],
        scenes[:n_fit],
        int(kw.get("components", 4)),
        float(kw.get("temperature", 1.0)),
        seed,
        device,
    )
    losses = loss_record(
        state,
        "L1 + w_seg * segmenter cross-entropy (distillation stages: KL from the segmenter's prediction on "
        "the real image) + w_kl * KL, mean over each epoch's steps",
    )
    return _finish(recipe, g, path, state, seed, device, cache, recipe.n_held_out, progress, losses)


def fit_prior(
    g: PriorGenerator,
    enc: Encoder,
    rgb: np.ndarray,
    scenes: torch.Tensor,
    per_scene: int,
    temperature: float,
    seed: int = 0,
    device: str = "cpu",
) -> PriorGenerator:
    """Fit ``g.prior`` on the codes of images rgb [N, 64, 64, 3] with their scenes [N]: a
    :class:`MixturePrior` with ``per_scene`` components a scene, or an :class:`EmpiricalPrior` keeping
    ``per_scene`` of the N posteriors (the scenes unused)."""
    means, logvars = encode_posteriors(enc, rgb, device=device)
    if isinstance(g.prior, EmpiricalPrior):
        g.prior.fit(means, logvars, per_scene, seed)
    else:
        g.prior.fit(means, scenes, per_scene, seed)
    g.prior.temperature.fill_(temperature)
    return g.to(device)
