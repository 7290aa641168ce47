"""The counting kernel's sparse mask scan equals ``nonzero`` (values and order)."""

import torch

from unitscope.dissect.iou import mask_pixels


def test_mask_pixels_equals_nonzero():
    g = torch.Generator().manual_seed(0)
    for b, p, density in [(7, 64, 0.02), (5, 12544, 0.003), (3, 40, 0.5), (4, 13, 0.2), (0, 16, 0.1), (6, 24, 0.0)]:
        mask = torch.rand(b, p, generator=g) < density
        mask[:, -1] |= b > 2  # the last pixel of a word boundary
        for m in (mask, mask[1:] if b > 1 else mask):  # a view at an offset
            want = m.nonzero(as_tuple=True)
            got = mask_pixels(m)
            assert all(torch.equal(x, y) for x, y in zip(got, want)), (b, p, density)
