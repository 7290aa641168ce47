"""The windowed mask kernel gives exactly the pixels of upsampling whole maps with F.interpolate."""

import torch
import torch.nn.functional as F

from unitscope.dissect.iou import count_orders, in_batch_orders, upsample_masks
from unitscope.dissect.window import exact_here, fma32, interpolate_at, mask_pixels_windowed

# (map h, w) -> (label H, W): integer and non-integer factors, odd sizes, a 1-pixel axis, an axis not
# upsampled, one downsampled; all above the 128-pixel (H + W) line where PyTorch keeps its generic kernel
SHAPES = [
    ((7, 7), (112, 112)),
    ((14, 14), (112, 112)),
    ((28, 28), (112, 112)),
    ((13, 11), (100, 97)),
    ((3, 1), (130, 135)),
    ((9, 9), (9, 130)),
    ((5, 9), (71, 66)),
    ((60, 60), (100, 100)),
    ((21, 8), (64, 70)),
    ((30, 20), (25, 150)),
]


def _masks_from(pair, pix, b, pixels):
    out = torch.zeros(b, pixels, dtype=torch.bool)
    out[pair, pix] = True
    return out


def test_fma32_rounds_once():
    from fractions import Fraction

    g = torch.Generator().manual_seed(1)
    a, b, c = (torch.randn(20000, generator=g) * s for s in (1.0, 1e-3, 10.0))
    got = fma32(a, b, c)
    for i in range(0, 20000, 97):  # the float32 nearest the exact a*b + c: none of its neighbours is nearer
        exact = Fraction(float(a[i])) * Fraction(float(b[i])) + Fraction(float(c[i]))
        f = got[i : i + 1]
        for n in (torch.nextafter(f, torch.tensor(-1e30)), torch.nextafter(f, torch.tensor(1e30))):
            assert abs(Fraction(float(f)) - exact) <= abs(Fraction(float(n)) - exact)
    # 1 + 2**-11 + 2**-24 + 2**-70: float64 drops the last term and lands on a float32 midpoint, which
    # a plain float64 sum rounds to even (down); the exact sum lies above it
    x, tiny = torch.tensor([1 + 2.0**-12]), torch.tensor([2.0**-70])
    assert (x.double() * x.double() + tiny.double()).float().item() == 1 + 2.0**-11
    assert fma32(x, x, tiny).item() == 1 + 2.0**-11 + 2.0**-23
    assert fma32(x, x, -tiny).item() == 1 + 2.0**-11
    assert fma32(-x, x, -tiny).item() == -(1 + 2.0**-11 + 2.0**-23)


def test_interpolate_at_is_bit_exact():
    for (h, w), size in SHAPES:
        assert exact_here(h, w, size), (h, w, size)
        g = torch.Generator().manual_seed(h * 100 + w)
        maps = torch.randn(3, h, w, generator=g) * 4
        want = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        pair, y, x = (
            t.reshape(-1)
            for t in torch.meshgrid(torch.arange(3), torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
        )
        assert torch.equal(interpolate_at(maps, pair, y, x, size).view(3, *size), want)


def test_windowed_masks_equal_whole_maps():
    """Random maps, thresholds at quantiles, at a map's own values (ties: 'value > T' is strict),
    at its peak, below its minimum, negative; every shape of SHAPES."""
    for (h, w), size in SHAPES:
        g = torch.Generator().manual_seed(h * 31 + w)
        maps = torch.randn(24, h, w, generator=g)
        maps[3] = maps[3].clamp(max=0.5)  # a plateau at the cap, ties over whole cells
        maps[4] = torch.round(maps[4] * 2) / 2
        th = torch.quantile(maps.flatten(), torch.linspace(0.5, 0.999, 24))
        th[::4] = maps.flatten(1).amax(1)[::4]  # at the peak: nothing passes
        th[1], th[2], th[3], th[4] = maps[1, 0, 0], maps[2].min() - 1, 0.5 - 1e-7, 0.0
        th[5] = -0.25
        ref = upsample_masks(maps, th, size).flatten(1)
        pair, pix = mask_pixels_windowed(maps, th, size)
        assert len(pair) == int(ref.sum()), (h, w, size)  # no pixel twice
        assert torch.equal(_masks_from(pair, pix, 24, size[0] * size[1]), ref), (h, w, size)


def test_windowed_near_threshold_pixels():
    """Thresholds set to upsampled values themselves: the strict comparison is decided exactly."""
    for (h, w), size in SHAPES[:5]:
        g = torch.Generator().manual_seed(7 + h)
        maps = torch.rand(16, h, w, generator=g)
        up = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].flatten(1)
        pick = torch.randint(0, up.shape[1], (16,), generator=g)
        th = up[torch.arange(16), pick]
        th[::2] = torch.nextafter(th[::2], torch.tensor(-1.0))  # just below a value: that pixel passes
        ref = up > th[:, None]
        pair, pix = mask_pixels_windowed(maps, th, size)
        assert torch.equal(_masks_from(pair, pix, 16, up.shape[1]), ref), (h, w, size)


def test_count_orders_same_with_and_without_window(monkeypatch):
    """The counting kernel's IoU counts are the same through the windowed path and whole maps."""
    import unitscope.dissect.iou as iou

    g = torch.Generator().manual_seed(3)
    acts = torch.randn(6, 5, 7, 9, generator=g)
    labels = torch.randint(0, 6, (6, 2, 70, 66), generator=g)
    image_labels = torch.randint(0, 6, (6, 2), generator=g)
    present = torch.rand(6, 3, generator=g) > 0.3
    t = torch.quantile(acts.permute(1, 0, 2, 3).flatten(1), 0.9, dim=1)
    cat = torch.tensor([-1, 0, 0, 1, 2, 2])
    orders = in_batch_orders(6, 3, 5)
    assert exact_here(7, 9, (70, 66))  # the windowed path is the one taken below
    for denominator in ("annotated", "overlap"):
        kw = {"denominator": denominator, "label_category": cat}
        fast = count_orders(acts, t, labels, image_labels, present, 6, orders, **kw)
        monkeypatch.setattr(iou, "exact_here", lambda *a: False)
        slow = count_orders(acts, t, labels, image_labels, present, 6, orders, **kw)
        monkeypatch.undo()
        assert all(torch.equal(x, y) for x, y in zip(fast, slow)), denominator
        assert int(fast[0].sum()) > 0


def test_sparse_codes_skip_their_zero_cells_and_keep_every_pixel():
    """TopK-like codes (a few non-zero cells per map, the rest exactly 0, some maps all 0) against
    thresholds 0, -0.0, negative and positive: the same pixels as whole maps, and a cell whose four
    values are all 0 is never a candidate unless the threshold is negative (it interpolates to 0)."""
    from unitscope.dissect.window import _candidate_cells, _segments

    g = torch.Generator().manual_seed(5)
    for (h, w), size in SHAPES:
        maps = torch.zeros(12, h, w)
        hot = torch.rand(12, h, w, generator=g) < 0.08
        maps[hot] = torch.rand(int(hot.sum()), generator=g) + 0.01
        maps[0] = 0.0  # a code that never fires here
        maps[1, 0, 0] = 2.0  # one corner only
        th = torch.zeros(12)
        th[2], th[3], th[4], th[5] = -0.0, -1e-3, 0.5, float(maps[5].max())
        ref = upsample_masks(maps, th, size).flatten(1)
        pair, pix = mask_pixels_windowed(maps, th, size)
        assert len(pair) == int(ref.sum()), (h, w, size)
        assert torch.equal(_masks_from(pair, pix, 12, size[0] * size[1]), ref), (h, w, size)
        *_, ys_first, ys = _segments(h, size[0], "cpu")
        *_, xs_first, xs = _segments(w, size[1], "cpu")
        cp, *_ = _candidate_cells(maps, th, ys, xs, ys_first, xs_first)
        assert int((cp == 0).sum()) == 0  # an all-zero map at threshold 0: nothing looked into
        every = len(_candidate_cells(torch.ones(1, h, w), torch.zeros(1), ys, xs, ys_first, xs_first)[0])
        assert int((cp == 3).sum()) == every  # at a negative threshold every cell is (its zeros pass)
        assert int((cp == 2).sum()) < every  # at -0.0 only the cells that touch a non-zero value


def test_nonnegative_maps_whole_and_mixed_columns():
    """Maps after a ReLU and a ReLU6 cap (the non-negative branch of the candidate cells, plateaus
    whose columns pass at every row without being evaluated), signed maps (the general branch) and
    subnormal ones (where relative margins vanish), thresholded at quantiles, at map values, exactly
    at upsampled values and just below them, at 0 and at the cap: the same pixels as upsampling whole
    maps, for every shape of SHAPES."""
    for (h, w), size in SHAPES:
        g = torch.Generator().manual_seed(11 * h + w)
        signed = torch.randn(16, h, w, generator=g) * 2
        for maps in (signed.clamp(0, 6), signed.clamp(min=0), signed, signed.clamp(min=0) * 1e-40):  # subnormal
            up = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].flatten(1)
            th = torch.quantile(maps.flatten(), torch.linspace(0.3, 0.995, 16))
            pick = torch.randint(0, up.shape[1], (16,), generator=g)
            th[:4] = up[torch.arange(4), pick[:4]]  # an upsampled value itself: strict '>' decided exactly
            th[4:6] = torch.nextafter(up[torch.arange(4, 6), pick[4:6]], torch.tensor(-1.0))
            th[6], th[7], th[8] = maps[6, 0, 0], 0.0, 6.0
            ref = up > th[:, None]
            pair, pix = mask_pixels_windowed(maps, th, size)
            assert len(pair) == int(ref.sum()), (h, w, size)  # no pixel twice
            assert torch.equal(_masks_from(pair, pix, 16, up.shape[1]), ref), (h, w, size)
            assert bool((pair[1:] >= pair[:-1]).all())  # listed pair by pair (the exemplar masks rely on it)
    # the head's shape with a plateau at the cap: whole columns (every row passes) beside mixed ones
    maps = torch.zeros(3, 7, 7)
    maps[:, 2:5, 2:5] = 6.0
    maps[2, 3, 3] = 7.0
    th = torch.tensor([1.0, 5.0, 6.0])
    up = F.interpolate(maps[:, None], size=(112, 112), mode="bilinear", align_corners=False)[:, 0].flatten(1)
    pair, pix = mask_pixels_windowed(maps, th, (112, 112))
    assert torch.equal(_masks_from(pair, pix, 3, 112 * 112), up > th[:, None])
    assert int((pair == 0).sum()) > 48 * 48  # the plateau's cells and more
