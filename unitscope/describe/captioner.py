"""Descriptions without labels: an exemplar captioner (images and masks in, an English phrase out).

    from unitscope.describe.captioner import load_captioner
    cap = load_captioner("default")                 # the shipped weights; or "my_caps.py:factory"
    cap(images, masks)                              # images [15, 3, H, W] in [0, 1], masks [15, H, W] bool
    # 'windows of houses'
    cap.formula(images, masks)                      # 'window AND house'

The default captioner reads each exemplar (image at 64x64, mask at 32x32) through a frozen
backbone, ``world_scenes`` (the scene classifier trained on the probe world, whose weights the
package already ships): its ``relu1`` and ``relu5`` features averaged inside the mask, ``relu5``
over the whole image, the colour names of the pixels inside the mask and the mask's area,
centroid and spread (:func:`exemplar_features`). A small network (:class:`ExemplarNet`, weights
in ``describe/weights/captioner.pt``, float16) encodes each exemplar, pools over the set (mean and
max) and predicts the formula's concepts (multi-label over the world's vocabulary), how many
there are, whether AND or OR joins them, and the concept after AND NOT (or none). It is trained
by ``python -m unitscope.describe.train_captioner`` on exemplar sets the probe world generates
itself: the masks of known formulas of its concepts over its images, captioned from the formula. The formula is rendered by :mod:`.phrases`, the
renderer that captioned the training sets, so the captioner speaks its language and names the
probe world's concepts (on other images, the nearest of them).

A user's captioner is ``file.py:factory``: ``factory()`` returns a callable
``(images [K, 3, H, W] float, masks [K, H, W] bool) -> str``; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unitscope.describe.formulas import AND, AND_NOT, FIRST, OP_NAMES, OR
from unitscope.describe.phrases import render
from unitscope.runs import CATALOG, CONFIG

SIDE = 32  # masks are read at 32x32 (the probe world's label resolution at 64 px), images at 64x64
IMAGE_SIDE = 64
WEIGHTS = Path(__file__).resolve().parent / "weights" / "captioner.pt"
# the same network trained on the photo world's sets (its 110 concepts: photo objects, materials, scenes)
WEIGHTS_PHOTO = Path(__file__).resolve().parent / "weights" / "captioner_photo.pt"
SHIPPED = {"default": WEIGHTS, "": WEIGHTS, "cartoon": WEIGHTS, "photo": WEIGHTS_PHOTO}
Caption = Callable[[torch.Tensor, torch.Tensor], str]
N_COLOURS = 11  # the probe world's colour names (unitscope.world.vocab.COLORS)
FEATURES = 64 + 128 + 128 + N_COLOURS + 5


class Backbone:
    """The frozen image features the captioner reads: ``world_scenes`` (the scene classifier trained
    on the probe world, shipped in the package) at ``relu1`` ([64, 16, 16]) and ``relu5``
    ([128, 8, 8]), and every pixel's colour name (``[11, 32, 32]`` one-hot)."""

    def __init__(self) -> None:
        from unitscope.models import create_model

        self.net = create_model("world_scenes").eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images [N, 3, 64, 64]`` in [0, 1] -> ``{"f1", "f5", "colours"}``."""
        from unitscope.world.vocab import COLORS, color_labels

        x = (images - 0.5) / 0.25
        out = {}
        for name, layer in self.net.features.named_children():
            x = layer(x)
            if name in ("relu1", "relu5"):
                out["f" + name[-1]] = x
        small = F.interpolate(images, size=(SIDE, SIDE), mode="area")
        rgb = (small.permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
        lab = torch.from_numpy(color_labels(rgb).astype("int64")) - 1  # global colour labels 1..11
        out["colours"] = F.one_hot(lab.clamp(0, len(COLORS) - 1), len(COLORS)).permute(0, 3, 1, 2).float()
        return out


def exemplar_features(f1: torch.Tensor, f5: torch.Tensor, colours: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per exemplar ``[..., FEATURES]``: the backbone's features averaged inside the mask
    (``f1 [..., 64, 16, 16]``, ``f5 [..., 128, 8, 8]``), ``f5`` over the whole image (the scene), the
    colour names inside the mask (``colours [..., 11, 32, 32]``), and the mask's area, centroid and
    spread (``masks [..., 32, 32]``)."""
    m = masks.float()
    lead = m.shape[:-2]
    flat = m.reshape(-1, 1, SIDE, SIDE)

    def inside(f: torch.Tensor, side: int) -> torch.Tensor:
        w = F.adaptive_avg_pool2d(flat, side).reshape(*lead, 1, side, side)
        w = w / w.sum((-2, -1), keepdim=True).clamp_min(1e-6)
        return (f * w).sum((-2, -1))

    area = m.mean((-2, -1))
    grid = (torch.arange(SIDE, dtype=torch.float32) + 0.5) / SIDE
    w = m / m.sum((-2, -1), keepdim=True).clamp_min(1e-6)
    cy, cx = (w.sum(-1) * grid).sum(-1), (w.sum(-2) * grid).sum(-1)
    sy = ((w.sum(-1) * (grid - cy[..., None]) ** 2).sum(-1)).sqrt()
    sx = ((w.sum(-2) * (grid - cx[..., None]) ** 2).sum(-1)).sqrt()
    stats = torch.stack([area.sqrt(), cy, cx, sy, sx], -1)
    return torch.cat([inside(f1, 16), inside(f5, 8), f5.mean((-2, -1)), inside(colours, SIDE), stats], -1)


class ExemplarNet(nn.Module):
    """``features [B, K, FEATURES] -> dict of logits`` over a vocabulary of ``n`` concepts:
    ``pos [B, n]`` (asserted concepts), ``neg [B, n + 1]`` (after AND NOT; last: none),
    ``count [B, 3]`` (1-3 asserted concepts), ``op [B, 2]`` (AND, OR). Each exemplar is encoded,
    the codes are pooled over the set (mean and max), the heads read the pooled code."""

    def __init__(self, n: int, width: int = 256, hidden: int = 256):
        super().__init__()
        self.norm = nn.LayerNorm(FEATURES)
        self.encode = nn.Sequential(nn.Linear(FEATURES, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.mlp = nn.Sequential(nn.Linear(2 * width, hidden), nn.ReLU())
        self.pos, self.neg = nn.Linear(hidden, n), nn.Linear(hidden, n + 1)
        self.count, self.op = nn.Linear(hidden, 3), nn.Linear(hidden, 2)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.encode(self.norm(features))
        h = self.mlp(torch.cat([h.mean(1), h.amax(1)], -1))
        return {"pos": self.pos(h), "neg": self.neg(h), "count": self.count(h), "op": self.op(h)}


def prepare(images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Any exemplar set -> ``([K, 3, 64, 64], [K, 32, 32])``: images resized by area, masks by area then > 0.5."""
    images = images.float()
    if images.max() > 1.5:  # 0..255
        images = images / 255
    if tuple(images.shape[-2:]) != (IMAGE_SIDE, IMAGE_SIDE):
        images = F.interpolate(images, size=(IMAGE_SIDE, IMAGE_SIDE), mode="area")
    m = masks.float()[:, None]
    if tuple(m.shape[-2:]) != (SIDE, SIDE):
        m = F.interpolate(m, size=(SIDE, SIDE), mode="area") >= 0.5
    return images.clamp(0, 1), m[:, 0].bool()


def decode(out: dict[str, torch.Tensor], categories: list[str]) -> tuple[list[int], list[int]]:
    """Logits of one set (``[n]``-shaped heads) -> a formula ``(concepts, ops)`` as :mod:`.formulas` reads it."""
    p = torch.sigmoid(out["pos"])
    is_pos = torch.tensor([c == "position" for c in categories])
    count = int(out["count"].argmax()) + 1
    op = AND if int(out["op"].argmax()) == 0 or count == 1 else OR
    anchor = int(torch.where(is_pos, -1.0, p).argmax())
    rest = p.clone()
    rest[anchor] = -1
    if op == OR:
        rest[is_pos] = -1
    concepts = [anchor] + [int(c) for c in rest.topk(count - 1).indices]
    ops = [FIRST] + [op] * (count - 1)
    neg = int(out["neg"].argmax())
    if len(concepts) < 3 and neg < len(categories) and neg not in concepts and not bool(is_pos[neg]):
        concepts.append(neg)
        ops.append(AND_NOT)
    return concepts, ops


class ExemplarCaptioner:
    """``cap(images, masks) -> str`` with a trained :class:`ExemplarNet`, its vocabulary and the backbone."""

    def __init__(self, net: ExemplarNet, names: list[str], categories: list[str], backbone: Backbone | None = None):
        self.net, self.names, self.categories = net.eval(), names, categories
        self._backbone = backbone

    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            self._backbone = Backbone()
        return self._backbone

    @torch.no_grad()
    def predict(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[list[int], list[int]]:
        """``images [K, 3, H, W]``, ``masks [K, H', W']`` -> a formula ``(concepts, ops)``."""
        images, masks = prepare(images, masks)
        feats = self.backbone(images)
        x = exemplar_features(feats["f1"], feats["f5"], feats["colours"], masks)
        out = self.net(x[None])
        return decode({k: v[0] for k, v in out.items()}, self.categories)

    def formula(self, images: torch.Tensor, masks: torch.Tensor) -> str:
        concepts, ops = self.predict(images, masks)
        return formula_text(self.names, concepts, ops)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> str:
        concepts, ops = self.predict(images, masks)
        return render([(self.names[c], self.categories[c]) for c in concepts], ops)

    def save(self, path: str | Path) -> None:
        state = {k: v.half() for k, v in self.net.state_dict().items()}
        torch.save(
            {
                "state": state,
                "names": self.names,
                "categories": self.categories,
                "width": self.net.encode[0].out_features,
                "hidden": self.net.pos.in_features,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> ExemplarCaptioner:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        net = ExemplarNet(len(blob["names"]), width=blob["width"], hidden=blob["hidden"])
        net.load_state_dict({k: v.float() for k, v in blob["state"].items()})
        return cls(net, list(blob["names"]), list(blob["categories"]))


def formula_text(names: list[str], concepts: list[int], ops: list[int]) -> str:
    """``[3, 7], [FIRST, AND]`` -> ``"roof AND house"`` (left to right, parenthesised as :mod:`.formulas` reads it)."""
    out = ""
    for j, (c, o) in enumerate(zip(concepts, ops)):
        out = names[c] if j == 0 else (f"({out})" if j > 1 else out) + f" {OP_NAMES[o]} {names[c]}"
    return out


def load_captioner(spec: str = "default") -> Any:
    """``"default"`` (the shipped weights, trained on the cartoon probe world; also ``"cartoon"``),
    ``"photo"`` (trained on the photo world's sets) or ``"path/to/file.py:factory"`` (``factory()``
    returns a callable ``(images, masks) -> str``)."""
    from unitscope.errors import UsageError
    from unitscope.plugins import file_factory

    if spec in SHIPPED:
        weights = SHIPPED[spec]
        if not weights.is_file():
            raise UsageError(
                f"the {spec or 'default'} captioner's weights are missing ({weights}): reinstall unitscope, "
                "or train them: python -m unitscope.describe.train_captioner"
            )
        return ExemplarCaptioner.load(weights)
    path, sep, fn = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not fn.isidentifier():
        raise UsageError(f"--captioner {spec!r}: expected 'default', 'photo' or path/to/file.py:factory")
    if not Path(path).is_file():
        raise UsageError(f"--captioner {spec!r}: {path} does not exist")
    factory = file_factory(path, fn, "unitscope_captioner")
    cap = factory()
    if not callable(cap):
        raise UsageError(f"{spec} returned {type(cap).__name__}, not a callable (images, masks) -> str")
    return cap


def run_images(run: str | Path, positions: list[int]) -> torch.Tensor:
    """``[n, 3, H, W]`` float in [0, 1]: the images at data-set ``positions`` of a run (no labels read)."""
    import json

    from unitscope.describe.folder import open_data

    config = json.loads((Path(run) / CONFIG).read_text())
    data = open_data({**config, "categories": None})
    return torch.stack([data.get(p, labels=False)["image"] for p in positions])


def caption_layer(run: str | Path, layer: str, cap: Caption, k: int = 15) -> list[dict]:
    """One ``descriptions`` row (kind ``caption``) per unit of ``layer``: ``cap`` on its top ``k``
    exemplars among the search images (as the label-based descriptions use) and their masks above
    the unit's 0.99 quantile, at the image resolution."""
    from unitscope.describe import exemplars as ex
    from unitscope.describe.run import held_out

    n = ex.num_images(run, layer)
    search = torch.nonzero(~held_out(n)).flatten()
    tops, _ = ex.top_images(run, layer, search, k)  # [C, k]
    thresholds = ex.threshold(run, layer)
    rows = []
    for u in range(tops.shape[0]):
        positions = tops[u].tolist()
        images = run_images(run, positions)
        maps = ex.unit_maps(run, layer, positions)[:, u]
        masks = ex.masks_of(maps, thresholds[u].expand(len(positions)), tuple(images.shape[-2:]))
        row: dict[str, Any] = {"unit": u, "kind": "caption", "images": 0}
        if masks.any():
            row["description"] = str(cap(images, masks))
            if isinstance(cap, ExemplarCaptioner):
                concepts, ops = cap.predict(images, masks)
                row.update(formula=formula_text(cap.names, concepts, ops), length=len(concepts))
        rows.append(row)
    return rows


def caption_run(run: str | Path, layers: list[str] | None, cap: Caption, k: int = 15) -> dict[str, list[dict]]:
    """Caption every unit of ``layers`` (default: every dissected layer); rows of kind ``caption``
    replace the layer's earlier captions in the catalog table ``descriptions``."""

    from unitscope.catalog import Catalog
    from unitscope.describe import tables  # noqa: F401
    from unitscope.describe.run import model_name, run_layers

    run = Path(run)
    layers = run_layers(run, layers)
    model = model_name(run)
    out = {}
    for layer in layers:
        rows = caption_layer(run, layer, cap, k)
        with Catalog(run / CATALOG) as cat:
            cat.replace("descriptions", rows, model=model, layer=layer, kind="caption")
        out[layer] = rows
    return out
