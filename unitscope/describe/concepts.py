"""Concept masks at a working resolution, derived position masks, and pixel signatures.

    vocab = Vocabulary.from_labels(names, categories)          # labels.json of a dissection
    bits = image_concepts(item["labels"], item["image_labels"], plane_category, vocab, (56, 56))
    bits.shape                                                   # [K, 56, 56] bool
    sigs = Signatures.build([bits_0, bits_1, ...])               # every pixel -> one signature id
    sigs.table                                                   # [S, K] bool: which concepts each signature has
    sigs.ids                                                     # [N, H*W] long

Concepts are the data set's labels (every category: colour, object, part, material, scene,
texture) plus six *position* concepts derived from the region a pixel belongs to: ``top``,
``bottom``, ``left``, ``right`` (the outer third of the region's bounding box on that side),
``centre`` (the middle third both ways) and ``edge`` (a 4-neighbour lies outside the region). The
region of a pixel is the connected component of its *anchor* label: its part when a part plane
labels it, else its object. Positions only ever refine another concept (``crown AND top AND edge``
= "the top edge of crowns"); they are never a description alone.

Every formula over concepts is a function of a pixel's concept set, so pixels with the same set
(a *signature*) are interchangeable: counting pixels per signature once turns every overlap of a
unit mask with any formula into a dot product over a few thousand signatures
(:mod:`unitscope.describe.formulas`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

POSITIONS = ("top", "bottom", "left", "right", "centre", "edge")
POSITION_CATEGORY = "position"


@dataclass
class Vocabulary:
    """Concept names ``[K]`` and categories ``[K]``; ``of_label [L]`` maps a label number to its
    concept (-1: none). Position concepts come last."""

    names: list[str]
    categories: list[str]
    of_label: torch.Tensor

    @classmethod
    def from_labels(cls, names: Sequence[str], categories: Sequence[str | None]) -> Vocabulary:
        """From ``labels.json``: ``names[n]`` and ``categories[n]`` of label number ``n`` (0 = none)."""
        of_label = torch.full((len(names),), -1, dtype=torch.long)
        out_names, out_cats = [], []
        for n, (name, cat) in enumerate(zip(names, categories)):
            if n == 0 or not cat:
                continue
            of_label[n] = len(out_names)
            out_names.append(name)
            out_cats.append(cat)
        out_names += list(POSITIONS)
        out_cats += [POSITION_CATEGORY] * len(POSITIONS)
        return cls(out_names, out_cats, of_label)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def position(self) -> torch.Tensor:
        """``[K]`` bool: position concepts (they only refine others)."""
        return torch.tensor([c == POSITION_CATEGORY for c in self.categories])

    def index(self, name: str) -> int:
        return self.names.index(name)

    def first_position(self) -> int:
        return len(self.names) - len(POSITIONS)


def _resize_nearest(planes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``planes [P, S, S']`` long -> ``[P, *size]``, nearest sample (label maps are never averaged)."""
    if tuple(planes.shape[-2:]) == tuple(size):
        return planes
    return F.interpolate(planes[None].float(), size=size, mode="nearest")[0].long()


def anchor_map(planes: torch.Tensor, plane_category: torch.Tensor, categories: Sequence[str]) -> torch.Tensor:
    """``[H, W]`` label numbers of each pixel's anchor region: the first ``part`` plane that
    labels it, else the first ``object`` plane (0: none)."""
    out = torch.zeros(planes.shape[-2:], dtype=torch.long)
    for want in ("object", "part"):  # later wins: a part refines its object
        for p in range(planes.shape[0]):
            if categories[int(plane_category[p])] == want:
                out = torch.where(planes[p] > 0, planes[p], out)
                break
    return out


def components(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """4-connected components of ``mask [H, W]`` bool: labels ``[H, W]`` (0 outside, 1..n) and each
    component's bounding box. scipy.ndimage when installed, else the same labels by propagation."""
    try:
        from scipy import ndimage
    except ImportError:  # scipy is not a core dependency
        return _components_numpy(mask)
    comps, _ = ndimage.label(mask)
    return comps, ndimage.find_objects(comps)


def _components_numpy(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    h, w = mask.shape
    big = h * w + 1
    lab = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), big)
    while True:  # every pixel takes the smallest label among itself and its 4-neighbours in the mask
        p = np.pad(lab, 1, constant_values=big)
        new = np.minimum.reduce([lab, p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
        new = np.where(mask, new, big)
        if np.array_equal(new, lab):
            break
        lab = new
    roots = np.unique(lab[mask])
    out = np.zeros((h, w), np.int64)
    boxes = []
    for k, r in enumerate(roots, start=1):  # numbered in raster order of their first pixel, as scipy
        ys, xs = np.nonzero(lab == r)
        out[ys, xs] = k
        boxes.append((slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)))
    return out, boxes


def position_masks(anchor: torch.Tensor) -> torch.Tensor:
    """``[6, H, W]`` bool, in :data:`POSITIONS` order, relative to each connected region of
    ``anchor [H, W]`` (label numbers, 0 = none; 4-connectivity)."""
    a = anchor.numpy()
    h, w = a.shape
    out = np.zeros((len(POSITIONS), h, w), bool)
    for lab in np.unique(a):
        if lab == 0:
            continue
        comps, boxes = components(a == lab)
        for k, sl in enumerate(boxes, start=1):
            ys, xs = sl
            region = comps[sl] == k
            rh, rw = ys.stop - ys.start, xs.stop - xs.start
            yy = np.arange(rh)[:, None] * 3 // rh  # 0, 1, 2: which third of the box
            xx = np.arange(rw)[None, :] * 3 // rw
            for i, part in enumerate((yy == 0, yy == 2, xx == 0, xx == 2, (yy == 1) & (xx == 1))):
                out[i][sl] |= region & part
    # edge: a 4-neighbour with another anchor label (the image border is not an edge)
    p = np.pad(a, 1, mode="edge")
    edge = (
        (p[1:-1, 1:-1] != p[:-2, 1:-1])
        | (p[1:-1, 1:-1] != p[2:, 1:-1])
        | (p[1:-1, 1:-1] != p[1:-1, :-2])
        | (p[1:-1, 1:-1] != p[1:-1, 2:])
    ) & (a > 0)
    out[5] = edge
    return torch.from_numpy(out)


def image_concepts(
    labels: torch.Tensor,
    image_labels: torch.Tensor,
    plane_category: torch.Tensor,
    categories: Sequence[str],
    vocab: Vocabulary,
    size: tuple[int, int],
) -> torch.Tensor:
    """``[K, *size]`` bool: which concepts hold at each pixel of one image.

    ``labels [P, S, S']`` (Broden planes, label numbers), ``image_labels [M]`` (0 = padding),
    ``plane_category [P]`` (index into ``categories``, the data set's category names).
    """
    planes = _resize_nearest(labels.long(), size)
    k = len(vocab)
    of_label = vocab.of_label.numpy()
    p = planes.numpy().reshape(planes.shape[0], size[0] * size[1])  # no planes: image-level labels only
    idx = of_label[np.clip(p, 0, len(of_label) - 1)]
    idx = np.where((p > 0) & (idx >= 0), idx, k)  # row k: labels without a concept
    out = np.zeros((k + 1, p.shape[1]), bool)
    out[idx, np.broadcast_to(np.arange(p.shape[1]), idx.shape)] = True
    for lab in image_labels.tolist():
        if lab > 0 and of_label[lab] >= 0:
            out[of_label[lab]] = True
    out = torch.from_numpy(out[:k].reshape(k, *size))
    first = vocab.first_position()
    out[first : first + len(POSITIONS)] = position_masks(anchor_map(planes, plane_category, categories))
    return out


@dataclass
class Signatures:
    """Distinct concept sets of pixels: ``table [S, K]`` bool, ``ids [N, P]`` (per image, per pixel)."""

    table: torch.Tensor
    ids: torch.Tensor

    @classmethod
    def build(cls, bits: Sequence[torch.Tensor] | torch.Tensor) -> Signatures:
        """From per-image concept masks ``[K, H, W]`` (a list, or one ``[N, K, H, W]`` tensor)."""
        k = bits[0].shape[0]
        packed = np.stack([np.packbits(b.flatten(1).t().numpy(), axis=1) for b in bits])  # [N, P, B] uint8
        n, p, nb = packed.shape
        rows = np.ascontiguousarray(packed.reshape(n * p, nb)).view(np.dtype((np.void, nb)))[:, 0]
        uniq, inverse = np.unique(rows, return_inverse=True)
        table = np.unpackbits(uniq.view(np.uint8).reshape(-1, nb), axis=1)[:, :k].astype(bool)
        return cls(torch.from_numpy(table), torch.from_numpy(inverse.reshape(n, p).astype(np.int64)))

    @property
    def size(self) -> int:
        return self.table.shape[0]
