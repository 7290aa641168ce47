"""Network Dissection's counting kernel (private; used by :mod:`unitscope.dissect`).

    inter, unit_area, label_area = count_batch(acts, thresholds, labels, image_labels, present, L)

For one batch: upsample each unit's map bilinearly to the label resolution, threshold it at the
unit's T_k, and count pixels shared with every label. A unit whose map never exceeds T_k in an
image has an empty mask there (bilinear interpolation is a convex combination of the map's values,
so it never exceeds their maximum), so only (image, unit) pairs whose peak exceeds T_k are
upsampled at all: with T_k at the top 0.5% that is a small fraction of the pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Mask pixels (pairs x pixels) upsampled at once; bounds the kernel's memory to ~100 MB.
_CHUNK_ELEMENTS = 1 << 23


def upsample_masks(maps: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Unit masks: ``maps [B, h, w]`` upsampled bilinearly to ``size`` and thresholded ``> thresholds [B]``."""
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return up > thresholds.view(-1, 1, 1)


def distinct_planes(labels: torch.Tensor) -> torch.Tensor:
    """``labels [N, K, S, S']`` with a label repeated on a later plane at the same pixel zeroed,
    so that every (pixel, label) pair counts once: L_c is a set of pixels."""
    if labels.shape[1] < 2:
        return labels
    out = labels.clone()
    for k in range(1, labels.shape[1]):
        repeat = (labels[:, k:k + 1] == labels[:, :k]).any(1) & (labels[:, k] > 0)
        out[:, k][repeat] = 0
    return out


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
    labels = distinct_planes(labels.to(device))
    image_labels = image_labels.to(device)

    inter = torch.zeros(c * L, dtype=torch.long, device=device)
    area = torch.zeros(n, c, dtype=torch.long, device=device)
    peak = acts.flatten(2).amax(dim=2)  # [N, C]
    pairs = (peak > thresholds).nonzero()  # [A, 2]: (image, unit)
    flat_labels = labels.flatten(2)  # [N, K, P]
    step = max(1, _CHUNK_ELEMENTS // pixels)
    for start in range(0, len(pairs), step):
        img, unit = pairs[start:start + step].unbind(1)
        mask = upsample_masks(acts[img, unit], thresholds[unit], size).flatten(1)  # [B, P]
        area[img, unit] = torch.count_nonzero(mask, dim=1)
        if labels.shape[1]:
            # masks are sparse (a few % of pixels): gather the labels under mask pixels only
            pair, pix = mask.nonzero(as_tuple=True)  # [E]
            lab = flat_labels[img[pair], :, pix]  # [E, K]
            code = unit[pair].view(-1, 1) * L + lab
            inter += torch.bincount(code[lab > 0], minlength=c * L)
    inter = inter.view(c, L)

    # image-level labels count as full-image masks: the unit's whole area intersects them
    if image_labels.numel():
        lab = image_labels  # [N, M]
        valid = lab > 0
        img_idx, m_idx = valid.nonzero().unbind(1)
        if len(img_idx):
            lab_v = lab[img_idx, m_idx]  # [V]
            flat = torch.arange(c, device=device).view(1, -1) * L + lab_v.view(-1, 1)  # [V, C]
            weights = area[img_idx]  # [V, C]
            inter += torch.zeros(c * L, dtype=torch.long, device=device).index_add_(
                0, flat.flatten(), weights.flatten()).view(c, L)

    present_l = present.to(device=device, dtype=torch.float64)
    unit_area = torch.round(area.to(torch.float64).t() @ present_l).to(torch.long)  # [C, G]

    label_area = torch.zeros(L, dtype=torch.long, device=device)
    if labels.numel():
        label_area += torch.bincount(labels.flatten(), minlength=L)[:L]
        label_area[0] = 0  # "unlabelled" is no concept
    if image_labels.numel():
        lab = image_labels[image_labels > 0]
        label_area = label_area + torch.bincount(lab, minlength=L)[:L] * pixels
    return inter, unit_area, label_area
