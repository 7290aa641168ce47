"""Network Dissection's counting kernel (private; used by :mod:`unitscope.dissect`).

    inter, unit_area, label_area = count_batch(acts, thresholds, labels, image_labels, present, L)

For one batch: upsample each unit's map bilinearly to the label resolution, threshold it at the
unit's T_k, and count pixels shared with every label (the primitives of
:class:`~unitscope.stats.IoUCounts`). A unit whose map never exceeds T_k in an image has an empty
mask there (bilinear interpolation is a convex combination of the map's values, so it never
exceeds their maximum), so only (image, unit) pairs whose peak exceeds T_k are upsampled at all:
with T_k at the top 0.5% that is a small fraction of the pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unitscope.stats.iou import distinct_planes, label_areas, mask_intersections, unit_areas

# Mask pixels (pairs x pixels) upsampled at once; bounds the kernel's memory to ~100 MB.
_CHUNK_ELEMENTS = 1 << 23


def upsample_masks(maps: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Unit masks: ``maps [B, h, w]`` upsampled bilinearly to ``size`` and thresholded ``> thresholds [B]``."""
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return up > thresholds.view(-1, 1, 1)


def count_batch(
    acts: torch.Tensor,
    thresholds: torch.Tensor,
    labels: torch.Tensor,
    image_labels: torch.Tensor,
    present: torch.Tensor,
    num_labels: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IoU counts of one batch.

    acts [N, C, h, w]; thresholds [C]; labels [N, K, S, S'] (0 = none); image_labels [N, M]
    (image-level labels, full-image masks; 0 = padding); present [N, G] (category annotated).
    Returns intersection [C, L], unit_area [C, G] (over images where the category is present),
    label_area [L]; all int64.
    """
    n, c = acts.shape[:2]
    size = tuple(labels.shape[-2:])
    pixels = size[0] * size[1]
    L = num_labels
    device = acts.device
    thresholds = thresholds.to(device=device, dtype=acts.dtype)
    image_labels = distinct_image_labels(image_labels.to(device))
    flat_labels = distinct_planes(labels.to(device)).flatten(2)  # [N, K, P]
    flat_labels = drop_image_level(flat_labels, image_labels)

    inter = torch.zeros(c, L, dtype=torch.long, device=device)
    area = torch.zeros(n, c, dtype=torch.long, device=device)
    peak = acts.flatten(2).amax(dim=2)  # [N, C]
    pairs = (peak > thresholds).nonzero()  # [A, 2]: (image, unit)
    step = max(1, _CHUNK_ELEMENTS // pixels)
    for start in range(0, len(pairs), step):
        img, unit = pairs[start:start + step].unbind(1)
        mask = upsample_masks(acts[img, unit], thresholds[unit], size).flatten(1)  # [B, P]
        area[img, unit] = torch.count_nonzero(mask, dim=1)
        if flat_labels.shape[1]:
            inter += mask_intersections(img, unit, mask, flat_labels, c, L)

    label_area = label_areas(flat_labels, L)
    # image-level labels count as full-image masks: the unit's whole area intersects them
    img_idx, m_idx = (image_labels > 0).nonzero(as_tuple=True)
    if len(img_idx):
        lab = image_labels[img_idx, m_idx]  # [V]
        code = torch.arange(c, device=device).view(1, -1) * L + lab.view(-1, 1)  # [V, C]
        inter += torch.zeros(c * L, dtype=torch.long, device=device).index_add_(
            0, code.flatten(), area[img_idx].flatten()).view(c, L)
        label_area += torch.bincount(lab, minlength=L)[:L] * pixels
    return inter, unit_areas(area, present.to(device)), label_area


def distinct_image_labels(image_labels: torch.Tensor) -> torch.Tensor:
    """``image_labels [N, M]`` with repeats within an image set to 0 (padding): an image-level
    label covers the whole image once, however often its cell names it."""
    if image_labels.shape[1] < 2:
        return image_labels
    ordered, _ = image_labels.sort(dim=1)
    repeat = torch.zeros_like(ordered, dtype=torch.bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    return ordered.masked_fill(repeat, 0)


def drop_image_level(flat_labels: torch.Tensor, image_labels: torch.Tensor) -> torch.Tensor:
    """``flat_labels [N, K, P]`` without the pixels of labels that the same image also carries as
    an image-level label ``image_labels [N, M]``: the full-image mask already holds those pixels."""
    if not flat_labels.shape[1] or not bool((image_labels > 0).any()):
        return flat_labels
    covered = torch.zeros_like(flat_labels, dtype=torch.bool)
    for m in range(image_labels.shape[1]):
        lab = image_labels[:, m].view(-1, 1, 1)
        covered |= (flat_labels == lab) & (lab > 0)
    return flat_labels.masked_fill(covered, 0)
