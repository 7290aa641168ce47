"""Counts for Network Dissection's unit/concept IoU, and the counting primitives its kernel shares.

from unitscope.stats import IoUCounts
counts = IoUCounts(num_units=C, label_category=cats, num_categories=G)   # cats [L]
counts.add(masks, label_maps, present)   # bool [N, C, H, W], long [N, K, H, W], bool [N, G]
counts.iou()                             # [C, L]
null = NullIoUCounts(C, cats, G, draws=8)  # the same counts with masks matched to other images
null.add_counts(inter, unit_area, label_area)   # [D, C, L], [D, C, G], [L]: see dissect/iou.py
"""

from __future__ import annotations

import torch

from unitscope.stats.base import Device, Stat, as_device


class _CountArrays:
    """What IoUCounts and NullIoUCounts share: three count arrays, added to with a shape check,
    saved as they are and merged by adding them."""

    device: torch.device
    intersection: torch.Tensor
    unit_area: torch.Tensor
    label_area: torch.Tensor

    def add_counts(self, intersection: torch.Tensor, unit_area: torch.Tensor, label_area: torch.Tensor) -> None:
        """Add counts computed elsewhere, shaped as this statistic's own (IoUCounts: ``[C, L]``,
        ``[C, G]``, ``[L]``; NullIoUCounts: ``[D, C, L]``, ``[D, C, G]``, ``[L]``)."""
        for name, got, want in (
            ("intersection", intersection, self.intersection),
            ("unit_area", unit_area, self.unit_area),
            ("label_area", label_area, self.label_area),
        ):
            if tuple(got.shape) != tuple(want.shape):
                raise ValueError(f"{name} must be {tuple(want.shape)}, got {tuple(got.shape)}")
        self.intersection += intersection.to(self.device, torch.int64)
        self.unit_area += unit_area.to(self.device, torch.int64)
        self.label_area += label_area.to(self.device, torch.int64)

    def _data(self) -> dict[str, torch.Tensor]:
        return {"intersection": self.intersection, "unit_area": self.unit_area, "label_area": self.label_area}

    def _set_data(self, arrays: dict[str, torch.Tensor]) -> None:
        self.intersection = arrays["intersection"]
        self.unit_area, self.label_area = arrays["unit_area"], arrays["label_area"]

    def _merge(self, other: _CountArrays) -> None:
        self.add_counts(other.intersection, other.unit_area, other.label_area)


class IoUCounts(_CountArrays, Stat):
    """Pixel counts from which Network Dissection's IoU of every (unit, label) pair follows.

    ``label_category`` ``[L]`` gives the category of each label number (label 0 means "none" and is
    never counted). ``add`` accumulates, in int64:

    - ``intersection`` ``[C, L]``: pixels where the unit's mask is on and the label is present in
      any plane (a label in several planes at one pixel counts once);
    - ``unit_area`` ``[C, G]``: mask pixels counted for category ``g``. Rule ``overlap=False``
      ("annotated", the default): over the images where ``g`` is annotated (``category_present``),
      so a unit is not penalised on images nobody labelled for ``g``. Rule ``overlap=True``: only
      over the images where the mask also covers a pixel labelled in ``g``, as NetDissect-Lite's
      ``tally_units_cat`` counts it (higher IoUs where a category is sparsely labelled);
    - ``label_area`` ``[L]``: labelled pixels.
    """

    def __init__(
        self,
        num_units: int,
        label_category: torch.Tensor,
        num_categories: int,
        device: Device = None,
        overlap: bool = False,
    ) -> None:
        self.overlap = bool(overlap)
        self.num_units = int(num_units)
        self.num_categories = int(num_categories)
        self.device = as_device(device)
        self.label_category = torch.as_tensor(label_category, dtype=torch.int64).to(self.device)
        if self.label_category.dim() != 1:
            raise ValueError("label_category must be a 1-d tensor [L]")
        if self.label_category.numel() and (
            self.label_category.min() < 0 or self.label_category.max() >= self.num_categories
        ):
            raise ValueError(f"label_category values must lie in [0, {self.num_categories})")
        self.num_labels = self.label_category.shape[0]
        c, g, l_ = self.num_units, self.num_categories, self.num_labels
        self.intersection = torch.zeros(c, l_, dtype=torch.int64, device=self.device)
        self.unit_area = torch.zeros(c, g, dtype=torch.int64, device=self.device)
        self.label_area = torch.zeros(l_, dtype=torch.int64, device=self.device)

    def add(self, unit_masks: torch.Tensor, label_maps: torch.Tensor, category_present: torch.Tensor) -> None:
        """``unit_masks`` bool ``[N, C, H, W]``; ``label_maps`` long ``[N, K, H, W]`` (K label
        planes, 0 = unlabelled); ``category_present`` bool ``[N, G]``."""
        n, c, h, w = unit_masks.shape
        if c != self.num_units:
            raise ValueError(f"IoUCounts counts {self.num_units} units, got masks for {c}")
        if label_maps.dim() != 4 or label_maps.shape[0] != n or label_maps.shape[2:] != (h, w):
            raise ValueError(
                f"label_maps must be [N, K, H, W] = [{n}, K, {h}, {w}] to match the masks, "
                f"got {tuple(label_maps.shape)} (resize masks or labels first)"
            )
        if tuple(category_present.shape) != (n, self.num_categories):
            raise ValueError(
                f"category_present must be [{n}, {self.num_categories}], got {tuple(category_present.shape)}"
            )
        masks = unit_masks.to(self.device, torch.bool)
        labels = label_maps.to(self.device, torch.int64)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_labels):
            raise ValueError(f"label numbers must lie in [0, {self.num_labels}), got up to {labels.max()}")
        flat_labels = distinct_planes(labels).flatten(2)  # [N, K, P]
        img, unit = masks.flatten(2).any(2).nonzero(as_tuple=True)  # (image, unit) pairs with a mask
        inter = mask_intersections(img, unit, masks[img, unit].flatten(1), flat_labels, c, self.num_labels)
        area = masks.sum(dim=(2, 3), dtype=torch.int64)  # [N, C]
        if self.overlap:
            hits = mask_category_hits(
                img, masks[img, unit].flatten(1), flat_labels, self.label_category, self.num_categories
            )  # [A, G]
            unit_area = torch.zeros(c, self.num_categories, dtype=torch.int64, device=self.device)
            unit_area.index_add_(0, unit, hits.long() * area[img, unit][:, None])
        else:
            unit_area = unit_areas(area, category_present.to(self.device))
        self.add_counts(inter, unit_area, label_areas(flat_labels, self.num_labels))

    def iou(self) -> torch.Tensor:
        """``[C, L]`` float64: inter / (unit_area[:, category] + label_area - inter); 0 where the
        union is empty."""
        union = self.unit_area[:, self.label_category] + self.label_area[None, :] - self.intersection
        iou = self.intersection.double() / union.clamp_min(1).double()
        return torch.where(union > 0, iou, torch.zeros_like(iou))

    def _config(self) -> dict[str, object]:
        return {
            "num_units": self.num_units,
            "label_category": self.label_category,
            "num_categories": self.num_categories,
            "overlap": int(self.overlap),
        }


class NullIoUCounts(_CountArrays, Stat):
    """:class:`IoUCounts` under the null of no association: ``draws`` sets of counts, each with every
    unit mask matched to the labels of another image (a random derangement per batch and draw;
    see :func:`unitscope.dissect.iou.count_orders`). Mask sizes and label sizes are kept, so the
    IoUs ``[D, C, L]`` are what a unit would score by chance with this data set's size."""

    def __init__(
        self,
        num_units: int,
        label_category: torch.Tensor,
        num_categories: int,
        draws: int = 8,
        device: Device = None,
        overlap: bool = False,
    ) -> None:
        self.real = IoUCounts(num_units, label_category, num_categories, device, overlap)
        self.draws, self.device = int(draws), self.real.device
        if self.draws < 2:
            raise ValueError(f"a null distribution needs at least 2 draws, got {draws}")
        c, g, l_ = num_units, num_categories, self.real.num_labels
        self.intersection = torch.zeros(self.draws, c, l_, dtype=torch.int64, device=self.device)
        self.unit_area = torch.zeros(self.draws, c, g, dtype=torch.int64, device=self.device)
        self.label_area = torch.zeros(l_, dtype=torch.int64, device=self.device)

    def iou(self) -> torch.Tensor:
        """``[D, C, L]`` float64: the IoU of every draw, as :meth:`IoUCounts.iou`."""
        union = self.unit_area[:, :, self.real.label_category] + self.label_area - self.intersection
        iou = self.intersection.double() / union.clamp_min(1).double()
        return torch.where(union > 0, iou, torch.zeros_like(iou))

    def _config(self) -> dict[str, object]:
        return {**self.real._config(), "draws": self.draws}


# -- counting primitives, shared with the dissection kernel (unitscope.dissect.iou)  ----------------------


def distinct_planes(labels: torch.Tensor) -> torch.Tensor:
    """``labels [N, K, ...]`` with a label repeated on a later plane at the same pixel set to 0, so
    that every (pixel, label) pair counts once: a concept's region is a set of pixels."""
    if labels.shape[1] < 2:
        return labels
    out = labels.clone()
    for k in range(1, labels.shape[1]):
        repeat = (labels[:, k : k + 1] == labels[:, :k]).any(1) & (labels[:, k] > 0)
        out[:, k][repeat] = 0
    return out


def mask_intersections(
    img: torch.Tensor,
    unit: torch.Tensor,
    masks: torch.Tensor,
    flat_labels: torch.Tensor,
    num_units: int,
    num_labels: int,
) -> torch.Tensor:
    """Intersections ``[C, L]`` of unit masks with labels.

    ``masks [B, P]`` is the mask of unit ``unit[b]`` on image ``img[b]``; ``flat_labels [N, K, P]``
    (planes made distinct). Masks are sparse (a unit's top activations), so only the labels under
    mask pixels are gathered (:func:`pixel_label_counts`).
    """
    pair, pix = masks.nonzero(as_tuple=True)  # [E]
    return pixel_label_counts(img[pair], pix, unit[pair], flat_labels, num_units, num_labels)


def pixel_label_counts(
    src: torch.Tensor, pix: torch.Tensor, unit: torch.Tensor, flat_labels: torch.Tensor, num_units: int, num_labels: int
) -> torch.Tensor:
    """``[C, L]``: how often each label lies under a mask pixel of each unit. Mask pixel e belongs to
    unit ``unit[e]`` and sits at pixel ``pix[e]`` of image ``src[e]`` of ``flat_labels [N, K, P]``.

    One bincount on ``unit * L + label`` over every (pixel, plane); label 0 (none) lands in column 0,
    which is cleared, cheaper than selecting the labelled entries first.
    """
    under = flat_labels[src, :, pix]  # [E, K]
    code = (unit * num_labels).view(-1, 1) + under
    counts = torch.bincount(code.view(-1), minlength=num_units * num_labels).view(num_units, num_labels)
    counts[:, 0] = 0
    return counts


def label_rows(flat_labels: torch.Tensor) -> torch.Tensor:
    """``flat_labels [N, K, P]`` as ``[N * P, K]`` rows, one per (image, pixel): what
    :func:`row_label_counts` gathers from (one ``index_select`` of whole rows, about twice as fast
    as indexing ``[src, :, pix]``)."""
    n, k, p = flat_labels.shape
    return flat_labels.permute(0, 2, 1).reshape(n * p, k).contiguous()


def row_label_counts(
    rows: torch.Tensor, row: torch.Tensor, unit: torch.Tensor, num_units: int, num_labels: int
) -> torch.Tensor:
    """:func:`pixel_label_counts` from :func:`label_rows`: mask pixel e of unit ``unit[e]`` lies on
    row ``row[e]`` (``image * P + pixel``). Codes in int32 where they fit (a narrower bincount input)."""
    under = rows.index_select(0, row)  # [E, K]
    small = num_units * num_labels < 2**31 and under.dtype == torch.int32
    code = (unit * num_labels).to(torch.int32 if small else torch.int64).view(-1, 1) + under
    counts = torch.bincount(code.view(-1), minlength=num_units * num_labels).view(num_units, num_labels)
    counts[:, 0] = 0
    return counts


def unit_areas(area: torch.Tensor, category_present: torch.Tensor) -> torch.Tensor:
    """``[C, G]``: mask pixels ``area [N, C]`` summed over the images where category g is present."""
    return (area.t().double() @ category_present.double()).round().long()  # exact below 2**53


def label_areas(flat_labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """``[L]``: labelled pixels of each label (planes made distinct); label 0 is never counted."""
    counts = torch.bincount(flat_labels.reshape(-1), minlength=num_labels)[:num_labels].clone()
    counts[0] = 0
    return counts


def mask_category_hits(
    img: torch.Tensor, masks: torch.Tensor, flat_labels: torch.Tensor, label_category: torch.Tensor, num_categories: int
) -> torch.Tensor:
    """``[B, G]`` bool: whether mask ``masks[b]`` ``[B, P]`` covers a pixel of image ``img[b]``
    labelled in category g (``flat_labels [N, K, P]``, ``label_category [L]``)."""
    pair, pix = masks.nonzero(as_tuple=True)
    return pixel_category_hits(img[pair], pix, pair, flat_labels, label_category, masks.shape[0], num_categories)


def pixel_category_hits(
    src: torch.Tensor,
    pix: torch.Tensor,
    pair: torch.Tensor,
    flat_labels: torch.Tensor,
    label_category: torch.Tensor,
    num_pairs: int,
    num_categories: int,
) -> torch.Tensor:
    """``[B, G]`` bool: whether any pixel of mask ``b`` (mask pixel e belongs to mask ``pair[e]`` and
    sits at ``pix[e]`` of image ``src[e]``) is labelled in category g. Label 0 (none) counts in an
    extra column that is dropped."""
    g = num_categories
    category = label_category.clamp(min=0).clone()
    category[0] = g
    under = flat_labels[src, :, pix]  # [E, K]
    code = pair.view(-1, 1) * (g + 1) + category[under]
    counts = torch.bincount(code.view(-1), minlength=num_pairs * (g + 1))
    return counts.view(-1, g + 1)[:, :g] > 0
