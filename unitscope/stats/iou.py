"""Counts for Network Dissection's unit/concept IoU, and the counting primitives its kernel shares.

    from unitscope.stats import IoUCounts
    counts = IoUCounts(num_units=C, label_category=cats, num_categories=G)   # cats [L]
    counts.add(masks, label_maps, present)   # bool [N, C, H, W], long [N, K, H, W], bool [N, G]
    counts.iou()                             # [C, L]
"""

from __future__ import annotations

import torch

from unitscope.stats.base import Device, Stat, as_device


class IoUCounts(Stat):
    """Pixel counts from which Network Dissection's IoU of every (unit, label) pair follows.

    ``label_category`` ``[L]`` gives the category of each label number (label 0 means "none" and is
    never counted). ``add`` accumulates, in int64:

    - ``intersection`` ``[C, L]``: pixels where the unit's mask is on and the label is present in
      any plane (a label in several planes at one pixel counts once);
    - ``unit_area`` ``[C, G]``: mask pixels, counted only over images where category ``g`` is
      present, as NetDissect does, so a unit is not penalised on images nobody labelled for ``g``;
    - ``label_area`` ``[L]``: labelled pixels.
    """

    def __init__(
        self, num_units: int, label_category: torch.Tensor, num_categories: int, device: Device = None
    ) -> None:
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

    def add(
        self, unit_masks: torch.Tensor, label_maps: torch.Tensor, category_present: torch.Tensor
    ) -> None:
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
        self.add_counts(inter, unit_areas(area, category_present.to(self.device)),
                        label_areas(flat_labels, self.num_labels))

    def add_counts(
        self, intersection: torch.Tensor, unit_area: torch.Tensor, label_area: torch.Tensor
    ) -> None:
        """Add counts computed elsewhere: ``[C, L]``, ``[C, G]``, ``[L]``."""
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
        }

    def _data(self) -> dict[str, torch.Tensor]:
        return {"intersection": self.intersection, "unit_area": self.unit_area, "label_area": self.label_area}

    def _set_data(self, arrays: dict[str, torch.Tensor]) -> None:
        self.intersection = arrays["intersection"]
        self.unit_area, self.label_area = arrays["unit_area"], arrays["label_area"]

    def _merge(self, other: IoUCounts) -> None:
        self.add_counts(other.intersection, other.unit_area, other.label_area)


# -- counting primitives, shared with the dissection kernel (unitscope.dissect.iou)  ----------------------

def distinct_planes(labels: torch.Tensor) -> torch.Tensor:
    """``labels [N, K, ...]`` with a label repeated on a later plane at the same pixel set to 0, so
    that every (pixel, label) pair counts once: a concept's region is a set of pixels."""
    if labels.shape[1] < 2:
        return labels
    out = labels.clone()
    for k in range(1, labels.shape[1]):
        repeat = (labels[:, k:k + 1] == labels[:, :k]).any(1) & (labels[:, k] > 0)
        out[:, k][repeat] = 0
    return out


def mask_intersections(img: torch.Tensor, unit: torch.Tensor, masks: torch.Tensor, flat_labels: torch.Tensor,
                       num_units: int, num_labels: int) -> torch.Tensor:
    """Intersections ``[C, L]`` of unit masks with labels.

    ``masks [B, P]`` is the mask of unit ``unit[b]`` on image ``img[b]``; ``flat_labels [N, K, P]``
    (planes made distinct). Masks are sparse (a unit's top activations), so only the labels under
    mask pixels are gathered, then counted with one bincount on ``unit * L + label``.
    """
    pair, pix = masks.nonzero(as_tuple=True)  # [E]
    under = flat_labels[img[pair], :, pix]  # [E, K]
    code = unit[pair].view(-1, 1) * num_labels + under
    counts = torch.bincount(code[under > 0], minlength=num_units * num_labels)
    return counts.view(num_units, num_labels)


def unit_areas(area: torch.Tensor, category_present: torch.Tensor) -> torch.Tensor:
    """``[C, G]``: mask pixels ``area [N, C]`` summed over the images where category g is present."""
    return (area.t().double() @ category_present.double()).round().long()  # exact below 2**53


def label_areas(flat_labels: torch.Tensor, num_labels: int) -> torch.Tensor:
    """``[L]``: labelled pixels of each label (planes made distinct); label 0 is never counted."""
    counts = torch.bincount(flat_labels.reshape(-1), minlength=num_labels)[:num_labels].clone()
    counts[0] = 0
    return counts
