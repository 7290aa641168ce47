"""Network definitions of the model organisms (architectures only; weights live in ``weights/``).

    from unitscope.organisms.nets import SceneNet, SegNet
    net = SceneNet(num_classes=8)
    net(torch.zeros(2, 3, 48, 48)).shape          # [2, 8] scene logits
    net.features(torch.zeros(2, 3, 48, 48)).shape # [2, 128, 6, 6]: the last conv layer, after its ReLU
    SegNet().eval()(torch.zeros(2, 3, 64, 64))["object"].shape   # [2, 18, 64, 64] per-pixel logits
    ColorNet()(torch.zeros(2, 3, 48, 48)).shape   # [2, 36, 48, 48] colour logits over the codebook
    generate(Generator(), n=4, seed=0).shape      # [4, 3, 64, 64] in [0, 1]: world_generator's G

``SceneNet`` is a plain VGG-like CNN: five conv layers (64-128 channels), each followed by batch
norm and a ReLU named ``features.relu<k>``; dissect those (after the ReLU, the privileged basis).
The colorizer and the rotation predictor reuse the same ``features`` with other heads (the
colorizer classifies every pixel's colour over a codebook, from the grey image only). The scene
networks (``world_scenes`` and its twin) take 64-px input (8x8 at ``features.relu5``); the rotation
predictor and the colorizer 48 px (the recipe's ``size``). ``Generator`` and ``Discriminator`` are
``world_generator``'s G and D (trained in :mod:`unitscope.organisms.gan`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

# (in, out, stride) of the conv layers.
# Five conv layers (64-128 channels): a 4x4 stride-4 stem, then 3x3 convs; 48x48 input -> 6x6 at the
# last conv layer (8x8 from 64x64). Sized to train on 20,000-40,000 images in minutes on a 2-core CPU.
SCENE_CONVS = ((3, 64, 4), (64, 64, 2), (64, 64, 1), (64, 64, 1), (64, 128, 1))
SCENE_LAYERS = ["features.relu2", "features.relu4", "features.relu5"]


def conv_stack(convs=SCENE_CONVS) -> nn.Sequential:
    """conv-bn-relu blocks named conv<k>, bn<k>, relu<k> (k from 1): [N, 3, H, W] -> [N, C, H/8, W/8] (with SCENE_CONVS)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for k, (cin, cout, stride) in enumerate(convs, start=1):
        kernel, pad = (4, 0) if stride == 4 else (3, 1)
        layers[f"conv{k}"] = nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, bias=False)
        layers[f"bn{k}"] = nn.BatchNorm2d(cout)
        layers[f"relu{k}"] = nn.ReLU(inplace=False)  # not in place: hooks see the ReLU's own output
    return nn.Sequential(layers)


class SceneNet(nn.Module):
    """Image [N, 3, 48, 48] -> logits [N, num_classes]: conv stack, global average pool, linear."""

    def __init__(self, num_classes: int = 8):
        super().__init__()
        self.features = conv_stack()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(SCENE_CONVS[-1][1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


LUMA = (0.299, 0.587, 0.114)  # Rec. 601 weights of R, G, B in the grey value


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """RGB [N, 3, H, W] in [0, 1] -> grey value [N, 1, H, W]."""
    return (rgb * torch.tensor(LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)).sum(1, keepdim=True)


class Grey(nn.Module):
    """Normalised colour [N, 3, H, W] -> normalised grey (luma in all three channels), same shape."""

    def __init__(self, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = luma(x * self.std + self.mean)
        return (y.expand(-1, 3, -1, -1) - self.mean) / self.std


class ColorNet(nn.Module):
    """Image [N, 3, 48, 48] -> colour logits [N, K, 48, 48] over a codebook of K colours.

    The network sees only the image's grey (``self.grey`` drops the colour first), so any image,
    colour or grey, can be fed and dissected. The scene backbone (``features``) and an upsampling
    head; :func:`unitscope.organisms.tasks.decode_colors` turns logits into RGB (classification over
    quantised colours as in Zhang et al. 2016, not regression, which desaturates)."""

    def __init__(self, num_colors: int = 36):
        super().__init__()
        self.grey = Grey()
        self.features = conv_stack()
        self.head = nn.Sequential(
            nn.Conv2d(SCENE_CONVS[-1][1], 64, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=2, mode="bilinear"),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.Upsample(scale_factor=4, mode="bilinear"),
            nn.Conv2d(64, num_colors, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.grey(x)))


class SegNet(nn.Module):
    """A small fully convolutional network: image [N, 3, H, W] -> {category: logits [N, L, H, W]}.

    ``heads`` maps a category to its number of classes (class 0 = unlabelled / none). Encoder at
    H/2, H/4, H/8; a light decoder (1x1 merges) back to H/2 (Broden's mask resolution); in eval mode
    logits are upsampled bilinearly to H. In training mode they stay at H/2 [N, L, H/2, W/2] and the
    loss is taken there: upsampling and the softmax over every full-size pixel cost more than the
    whole network on a CPU."""

    def __init__(self, heads: dict[str, int] | None = None, width: int = 16):
        super().__init__()
        self.heads_spec = dict(heads or {"object": 18, "part": 22, "material": 9, "color": 12})
        w = width

        def block(cin, cout, stride=1, k=3):
            return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.enc1 = nn.Sequential(block(3, w, 2), block(w, w))  # H/2
        self.enc2 = nn.Sequential(block(w, 2 * w, 2), block(2 * w, 2 * w))  # H/4
        self.enc3 = nn.Sequential(block(2 * w, 4 * w, 2), block(4 * w, 4 * w))  # H/8
        self.up2 = nn.Sequential(block(4 * w + 2 * w, 2 * w, k=1), block(2 * w, 2 * w))
        self.up1 = block(2 * w + w, 2 * w, k=1)
        self.heads = nn.ModuleDict({c: nn.Conv2d(2 * w, n, 1) for c, n in self.heads_spec.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.up2(torch.cat([F.interpolate(e3, size=e2.shape[-2:], mode="bilinear"), e2], 1))
        d1 = self.up1(torch.cat([F.interpolate(d2, size=e1.shape[-2:], mode="bilinear"), e1], 1))
        if self.training:
            return {c: head(d1) for c, head in self.heads.items()}
        return {c: F.interpolate(head(d1), size=x.shape[-2:], mode="bilinear") for c, head in self.heads.items()}


# -- world_generator's networks (trained by unitscope.organisms.gan) ----------------------------------

LATENT = 64
# Sized for a 30-minute schedule on a shared 2-core CPU (about 1 s per step of 32 images, 1 thread).
G_CHANNELS = (128, 64, 32, 16)  # at 4, 8, 16, 32 px: 0.23 M parameters, 0.9 MB (resize + 3x3 conv)
D_CHANNELS = (16, 32, 64, 128)  # at 32, 16, 8, 4 px
GENERATOR_LAYERS = ("relu1", "relu2", "relu3", "relu4")


def scene_of_z(z: torch.Tensor, scenes: int) -> torch.Tensor:
    """The scene a conditional G draws for latent z [N, Z] (or [N, Z, 1, 1]): the argmax of its first
    ``scenes`` coordinates -> [N] int64, uniform over the scenes for z ~ N(0, I)."""
    return z.reshape(z.shape[0], -1)[:, :scenes].argmax(1)


def scene_one_hot(z: torch.Tensor, scenes: int) -> torch.Tensor:
    """One-hot [N, scenes] of :func:`scene_of_z` (element-wise ops only, so ``torch.fx`` traces it)."""
    zs = z[:, :scenes]
    return (zs == zs.amax(1, keepdim=True)).to(z.dtype)


class Generator(nn.Sequential):
    """Latent z [N, Z] (or [N, Z, 1, 1]) -> image [N, 3, 64, 64] in [0, 1].

    ``upsample="transposed"``: each doubling is a 4x4 stride-2 transposed convolution (DCGAN; its
    uneven overlap leaves a checkerboard); ``"nearest"`` or ``"bilinear"``: an ``up<k>`` resize then
    a 3x3 ``conv<k>`` (no checkerboard, about twice the multiply-adds). ``scenes`` > 0: conditional
    on the scene :func:`scene_of_z` reads from z itself (the argmax of z's first ``scenes``
    coordinates), fed to ``conv1`` as a one-hot beside z; so the model is still z -> image and
    sampling z is unchanged."""

    def __init__(self, latent: int = LATENT, channels=G_CHANNELS, upsample: str = "transposed", scenes: int = 0):
        if upsample not in ("transposed", "nearest", "bilinear"):
            raise ValueError(f"upsample must be 'transposed', 'nearest' or 'bilinear', not {upsample!r}")
        if not 0 <= scenes <= latent:
            raise ValueError(f"scenes must be between 0 and the latent size {latent}, not {scenes}")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        cin = latent + scenes
        for k, cout in enumerate([*channels, 3], start=1):
            last = k == len(channels) + 1
            if k == 1:
                layers["conv1"] = nn.ConvTranspose2d(cin, cout, 4, 1, 0, bias=False)  # 1x1 -> 4x4
            elif upsample == "transposed":
                layers[f"conv{k}"] = nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=last)
            else:
                layers[f"up{k}"] = nn.Upsample(scale_factor=2, mode=upsample)
                layers[f"conv{k}"] = nn.Conv2d(cin, cout, 3, 1, 1, bias=last)
            if not last:
                layers[f"bn{k}"] = nn.BatchNorm2d(cout)
                layers[f"relu{k}"] = nn.ReLU()
            cin = cout
        layers["tanh"] = nn.Tanh()
        super().__init__(layers)
        self.latent = latent
        self.upsample = upsample
        self.scenes = scenes

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.reshape(z.shape[0], self.latent)
        if self.scenes:
            z = torch.cat([z, scene_one_hot(z, self.scenes)], 1)
        x = super().forward(z.reshape(z.shape[0], -1, 1, 1))
        return (x + 1) / 2


def generator_for(task_kw: dict) -> nn.Module:
    """The G a recipe's ``task_kw`` describes (``upsample``, ``g_channels``, ``scenes``; defaults: the DCGAN;
    ``prior``: a decoder behind a fitted prior, :class:`unitscope.organisms.prior_gen.PriorGenerator`;
    ``"empirical"``: the training codes' own posteriors, else a Gaussian mixture)."""
    if task_kw.get("prior"):
        from unitscope.organisms.prior_gen import PriorGenerator

        return PriorGenerator(
            channels=tuple(task_kw.get("g_channels", (160, 80, 40, 20))),
            upsample=task_kw.get("upsample", "nearest"),
            prior="empirical" if task_kw["prior"] == "empirical" else "mixture",
        )
    return Generator(
        channels=tuple(task_kw.get("g_channels", G_CHANNELS)),
        upsample=task_kw.get("upsample", "transposed"),
        scenes=int(task_kw.get("scenes", 0)),
    )


class Discriminator(nn.Module):
    """Image [N, 3, 64, 64] in [0, 1] (and, with ``classes`` > 0, labels [N]) -> realness score [N]
    (spectral norm, leaky ReLU). With ``classes``: a projection discriminator (Miyato & Koyama 2018),
    the score plus <embed(label), features summed over the last 4x4 map>."""

    def __init__(self, channels=D_CHANNELS, classes: int = 0):
        super().__init__()
        channels = tuple(channels)
        layers, cin = [], 3
        for cout in channels:
            layers += [spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
            cin = cout
        self.net = nn.Sequential(*layers)
        self.out = spectral_norm(nn.Conv2d(cin, 1, 4, 1, 0))
        self.embed = spectral_norm(nn.Embedding(classes, cin)) if classes else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.net(x * 2 - 1)
        score = self.out(h).flatten()
        if self.embed is not None:
            if labels is None:
                raise ValueError("this discriminator is class-conditional: pass the labels [N]")
            score = score + (self.embed(labels) * h.sum((2, 3))).sum(1)
        return score


def sample_z(n: int, seed: int, latent: int = LATENT) -> torch.Tensor:
    """``n`` latent vectors [n, Z] drawn from ``seed`` alone (the same seed gives the same z)."""
    return torch.randn(n, latent, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def generate(model: Generator, n: int, seed: int = 0, batch_size: int = 128, device: str = "cpu") -> torch.Tensor:
    """``n`` images [n, 3, 64, 64] in [0, 1] from ``sample_z(n, seed)``, in eval mode."""
    model.eval()
    z = sample_z(n, seed, model.latent)
    return torch.cat([model(z[s : s + batch_size].to(device)).cpu() for s in range(0, n, batch_size)])
