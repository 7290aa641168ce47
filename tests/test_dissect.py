"""Network Dissection: the counting kernel against brute force, planted units, resume, bad input."""

import numpy as np
import pytest
import torch

from unitscope._iou import count_batch


def bilinear_numpy(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Reference bilinear upsampling (half-pixel centres, edges clamped), written out by hand."""
    in_h, in_w = a.shape

    def axis(n_out, n_in):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, wy = axis(out_h, in_h)
    x0, x1, wx = axis(out_w, in_w)
    top = a[y0][:, x0] * (1 - wx) + a[y0][:, x1] * wx
    bottom = a[y1][:, x0] * (1 - wx) + a[y1][:, x1] * wx
    return top * (1 - wy)[:, None] + bottom * wy[:, None]


def brute_force_iou(acts, thresholds, labels, image_labels, present, label_category, num_labels):
    n, c = acts.shape[:2]
    s = labels.shape[-2:]
    inter = np.zeros((c, num_labels))
    unit_area = np.zeros((c, present.shape[1]))
    label_area = np.zeros(num_labels)
    for i in range(n):
        for lab in range(1, num_labels):
            lmask = (labels[i] == lab).any(0) | (image_labels[i] == lab).any()
            label_area[lab] += lmask.sum()
        for k in range(c):
            mask = bilinear_numpy(acts[i, k], *s) > thresholds[k]
            unit_area[k] += mask.sum() * present[i]
            for lab in range(1, num_labels):
                lmask = (labels[i] == lab).any(0) | (image_labels[i] == lab).any()
                inter[k, lab] += (mask & lmask).sum()
    union = unit_area[:, label_category] + label_area - inter
    return inter, unit_area, label_area, np.where(union > 0, inter / np.maximum(union, 1), 0)


def test_counts_equal_brute_force():
    rng = np.random.default_rng(0)
    n, c, L, G = 6, 5, 7, 3
    acts = rng.normal(size=(n, c, 3, 4)).astype(np.float32)
    # labels 1-4 are pixel labels on two planes (category 0 and 1), 5-6 image-level (category 2)
    labels = np.stack([rng.integers(0, 3, size=(n, 9, 12)), rng.integers(0, 5, size=(n, 9, 12)) * (rng.random((n, 9, 12)) < 0.5)], 1)
    # labels 1 and 2 can stand on both planes at one pixel: they must count once
    image_labels = rng.integers(5, 7, size=(n, 1)) * (rng.random((n, 1)) < 0.7)
    present = rng.random((n, G)) < 0.8
    label_category = np.array([0, 0, 0, 1, 1, 2, 2])
    thresholds = np.quantile(acts.transpose(1, 0, 2, 3).reshape(c, -1), 0.8, axis=1).astype(np.float32)

    inter, unit_area, label_area = count_batch(
        torch.from_numpy(acts), torch.from_numpy(thresholds), torch.from_numpy(labels),
        torch.from_numpy(image_labels), torch.from_numpy(present), L)
    ref_inter, ref_unit, ref_label, ref_iou = brute_force_iou(acts, thresholds, labels, image_labels, present,
                                                              label_category, L)
    assert np.array_equal(inter.numpy(), ref_inter)
    assert np.array_equal(unit_area.numpy(), ref_unit)
    assert np.array_equal(label_area.numpy()[1:], ref_label[1:])
    union = unit_area.numpy()[:, label_category] + label_area.numpy() - inter.numpy()
    iou = np.where(union > 0, inter.numpy() / np.maximum(union, 1), 0)
    assert np.abs(iou[:, 1:] - ref_iou[:, 1:]).max() < 1e-6
    assert (ref_iou[:, 1:] > 0).sum() > 10  # the data really exercises the counts


def test_counts_stream_equals_one_shot():
    rng = np.random.default_rng(1)
    acts = torch.from_numpy(rng.normal(size=(8, 3, 4, 4)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 4, size=(8, 1, 8, 8)))
    image_labels = torch.zeros(8, 0, dtype=torch.long)
    present = torch.ones(8, 1, dtype=torch.bool)
    t = torch.tensor([0.5, 1.0, 1.5])
    whole = count_batch(acts, t, labels, image_labels, present, 4)
    parts = [count_batch(acts[s], t, labels[s], image_labels[s], present[s], 4) for s in (slice(0, 3), slice(3, 8))]
    for w, a, b in zip(whole, *parts):
        assert torch.equal(w, a + b)
