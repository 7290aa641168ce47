"""Unit masks without upsampling whole maps: only the cells whose value can pass the threshold.

    from unitscope.dissect.window import mask_pixels_windowed
    pair, pixel = mask_pixels_windowed(maps, thresholds, (112, 112))   # maps [B, h, w], thresholds [B]
    # == upsample_masks(maps, thresholds, (112, 112)).flatten(1).nonzero(as_tuple=True), as sets

Network Dissection thresholds each (image, unit) map upsampled bilinearly to the label size, and
only 0.2-3% of the pixels end in a mask. Bilinear interpolation is a convex combination of the
four map values around an output pixel, so a pixel can pass the threshold only inside a *cell*
(the output pixels that share those four values) whose 2x2 neighbourhood reaches it. This module
finds those cells on the small map and evaluates only their pixels, **bit for bit as**
``F.interpolate(mode="bilinear", align_corners=False)`` **does**: the source index
``src = fma(in / out, dst + 0.5, -0.5)``, clamped at 0, its floor and fraction as the weights, and
per pixel ``t_r = fma(a_r0, w_x0, a_r1 * w_x1)`` along the row, ``out = fma(t_0, w_y0, t_1 * w_y1)``
(PyTorch's generic CPU kernel, compiled with fused multiply-adds; the fused operations are
emulated exactly in float64 with round-to-odd, :func:`fma32`). Which kernel PyTorch picks, and
its arithmetic, depend on the sizes (below 128 output pixels of height plus width it switches to
another kernel), the device and the build, so every (map size, output size, device) is first
checked against ``F.interpolate`` on random maps (:func:`exact_here`); where the arithmetic does
not match, callers fall back to upsampling whole maps. The bound is taken with a margin (a few
float rounding errors) so that no pixel that passes is ever left out of a cell.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

# a cell is looked into when its 2x2 maximum is within this relative margin of the threshold
# (rounding can lift an interpolated value a few float32 ulps above the maximum of its four inputs)
_MARGIN = 1e-5
# and by at least this much: relative margins vanish for subnormal values, whose rounding is absolute
_FLOOR = 2.0**-100


def fma32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``a * b + c`` rounded once to float32 (a fused multiply-add), for float32 tensors of one shape.

    The product is exact in float64; the sum's rounding error is found exactly (TwoSum) and the
    float64 sum rounded to odd where inexact, after which rounding to float32 is correct."""
    p = a.double() * b.double()
    c64 = c.double()
    s = p + c64
    bb = s - p
    err = (p - (s - bb)) + (c64 - bb)
    bits = s.view(torch.int64)
    fix = (err != 0) & ((bits & 1) == 0)
    if bool(fix.any()):
        away = (err > 0) == (s > 0)  # the exact sum lies further from zero than s
        bits = torch.where(fix, bits + torch.where(away, 1, -1), bits)
    return bits.view(torch.float64).float()


@lru_cache(maxsize=64)
def axis_table(n_in: int, n_out: int, device: str = "cpu") -> tuple[torch.Tensor, ...]:
    """``(i0, i1, w0, w1)``, each ``[n_out]``: the two source indices and weights of each output
    position along one axis, as PyTorch's bilinear kernel (``align_corners=False``) computes them."""
    dst = torch.arange(n_out, device=device)
    if n_in == n_out:
        return dst, dst, torch.ones(n_out, device=device), torch.zeros(n_out, device=device)
    scale = torch.tensor(float(n_in), device=device) / torch.tensor(float(n_out), device=device)  # float32
    src = fma32(scale.expand(n_out), dst.float() + 0.5, torch.full((n_out,), -0.5, device=device))
    src = src.clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    w1 = (src - i0.float()).clamp(0, 1)
    i1 = i0 + (i0 < n_in - 1).long()
    return i0, i1, 1 - w1, w1


def interpolate_at(
    maps: torch.Tensor, pair: torch.Tensor, y: torch.Tensor, x: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """``[E]``: the bilinear upsampling of ``maps [B, h, w]`` to ``size`` at pixels ``(y[e], x[e])``
    of map ``pair[e]``, in PyTorch's arithmetic (see the module docstring)."""
    b, h, w = maps.shape
    dev = str(maps.device)
    y0, y1, wy0, wy1 = axis_table(h, size[0], dev)
    x0, x1, wx0, wx1 = axis_table(w, size[1], dev)
    flat = maps.float().reshape(-1)
    base = pair * (h * w)
    r0, r1 = base + y0[y] * w, base + y1[y] * w
    c0, c1 = x0[x], x1[x]
    ax0, ax1 = wx0[x], wx1[x]
    t0 = fma32(flat[r0 + c0], ax0, flat[r0 + c1] * ax1)
    t1 = fma32(flat[r1 + c0], ax0, flat[r1 + c1] * ax1)
    return fma32(t0, wy0[y], t1 * wy1[y])


@lru_cache(maxsize=256)
def exact_here(h: int, w: int, size: tuple[int, int], device: str = "cpu") -> bool:
    """Whether :func:`interpolate_at` equals ``F.interpolate`` bit for bit for ``[B, h, w]`` maps
    upsampled to ``size`` on ``device``: checked once on random maps (values of several
    magnitudes, ties, zeros), then cached."""
    g = torch.Generator().manual_seed(h * 7919 + w * 104729 + size[0] * 31 + size[1])
    maps = torch.randn(8, h, w, generator=g) * torch.tensor([1e-3, 0.1, 1, 1, 3, 10, 100, 6])[:, None, None]
    maps[1] = maps[1].clamp(min=0)
    maps[7] = maps[7].clamp(0, 6).round()  # ties and a cap
    maps = maps.to(device)
    want = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    pair, y, x = torch.meshgrid(
        torch.arange(8, device=device),
        torch.arange(size[0], device=device),
        torch.arange(size[1], device=device),
        indexing="ij",
    )
    got = interpolate_at(maps, pair.reshape(-1), y.reshape(-1), x.reshape(-1), size).view(8, *size)
    return bool(torch.equal(got, want))


def mask_pixels(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``mask [B, P]`` bool -> ``(pair, pixel)`` of its True entries, as ``mask.nonzero(as_tuple=True)``
    gives them (same order). Masks are sparse (0.2-3% of a pair's pixels at quantile 0.005), so the
    8-pixel words that hold any are found first and only those are looked into: about a third of
    ``nonzero``'s CPU time on Lite0's masks."""
    b, p = mask.shape
    if p % 8 or not mask.is_contiguous() or mask.storage_offset() % 8:
        return mask.nonzero(as_tuple=True)
    words = mask.view(torch.int64)  # [B, P / 8]: 8 pixels a word
    word_pair, word = words.nonzero(as_tuple=True)
    i, bit = mask.view(b, p // 8, 8)[word_pair, word].nonzero(as_tuple=True)
    return word_pair[i], word[i] * 8 + bit


@lru_cache(maxsize=64)
def _segments(n_in: int, n_out: int, device: str) -> tuple[torch.Tensor, ...]:
    """Output positions along one axis cut into segments that share their two source indices, each
    at most ``R = ceil(n_out / n_in)`` long. Returns per segment ``[S]``: its source index i0, its
    second source index i1, weights w0, w1 ``[S, R]`` (0 past its end), which positions it has
    ``[S, R]`` bool, its first position; and per source index ``[n_in, M]``: its segments (padded
    with S; a source index no output position starts from, when downsampling, has none)."""
    i0, i1, w0, w1 = axis_table(n_in, n_out, device)
    most = -(-n_out // n_in)
    new = torch.ones(n_out, dtype=torch.bool, device=device)
    new[1:] = i0[1:] != i0[:-1]
    run_start = torch.nonzero(new)[:, 0]  # first output position of each source index's run
    run_len = torch.diff(run_start, append=torch.tensor([n_out], device=device))
    pieces = -(-run_len // most)
    piece = torch.repeat_interleave(torch.arange(len(run_start), device=device), pieces)
    first = torch.cumsum(pieces, 0) - pieces
    k = torch.arange(len(piece), device=device) - first[piece]
    start = run_start[piece] + k * most
    length = torch.minimum(run_start[piece] + run_len[piece] - start, torch.tensor(most, device=device))
    r = torch.arange(most, device=device)
    inside = r.view(1, -1) < length.view(-1, 1)
    pos = (start.view(-1, 1) + r.view(1, -1)).clamp(max=n_out - 1)
    source = i0[start]
    m = int(pieces.max())
    of_index = torch.full((n_in, m), len(start), dtype=torch.long, device=device)
    slot = torch.arange(len(start), device=device) - first[piece]
    of_index[source, slot] = torch.arange(len(start), device=device)
    return (
        source,
        i1[start],
        torch.where(inside, w0[pos], 0.0),
        torch.where(inside, w1[pos], 0.0),
        inside,
        start,
        of_index,
    )


def _cell_max(a: torch.Tensor) -> torch.Tensor:
    """``[B, h, w]`` -> ``[B, h, w]``: the largest of ``a[i:i+2, j:j+2]`` (clipped at the borders)."""
    out = a.clone()
    out[:, :-1] = torch.maximum(a[:, :-1], a[:, 1:])
    out[:, :, :-1] = torch.maximum(out[:, :, :-1], out[:, :, 1:])
    return out


def _candidate_cells(
    maps: torch.Tensor,
    t: torch.Tensor,
    ys: torch.Tensor,
    xs: torch.Tensor,
    ys_first: torch.Tensor,
    xs_first: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """The cells (pair, row segment, column segment) ``[K]`` whose 2x2 maximum reaches ``t [B]``
    within the margin, and that maximum's magnitude ``[K]`` (for the decision's margin). ``ys``, ``xs``:
    the segments of each source index (:func:`_segments`), ``ys_first``, ``xs_first``: each segment's start."""
    b, h, w = maps.shape
    high, tt = _cell_max(maps), t.view(-1, 1, 1)
    # a cell whose four values are all 0 interpolates to exactly 0 (every product and sum of zeros
    # is 0), which passes only a negative threshold: such cells are never looked into. For sparse
    # codes (TopK SAE latents, thresholded at 0 when they fire at fewer than the top quantile's
    # positions) they are almost every cell of a pair, and each would go through the exact path
    if bool(maps.amin() >= 0):  # after a ReLU, or floored at 0: |values| is the values, one compare a cell
        mag = high
        # high >= t - M (high + |t|), solved for high once per pair (M is many ulps: rounding here is within it)
        lo = (t - _MARGIN * t.abs()) / (1 + _MARGIN) - _FLOOR
        reach = high >= lo.view(-1, 1, 1)
        if bool((lo <= 0).any()):
            reach &= (high > 0) | (tt < 0)
    else:
        mag = _cell_max(maps.abs())
        reach = (high >= tt - _MARGIN * (mag + tt.abs()) - _FLOOR) & ((mag > 0) | (tt < 0))
    # source cells (2-3% of a layer's cells at the top 0.5%): found 8 at a time (mask_pixels), about a
    # quarter of nonzero's time here
    at = mask_pixels(reach.view(1, -1))[1]
    m = mag.view(-1).take(at)
    cp, rest = torch.div(at, h * w, rounding_mode="floor"), at % (h * w)
    ci, cj = torch.div(rest, w, rounding_mode="floor"), rest % w
    if ys.shape[1] == 1 and xs.shape[1] == 1 and bool((ys < len(ys_first)).all() & (xs < len(xs_first)).all()):
        return cp, ys[:, 0].index_select(0, ci), xs[:, 0].index_select(0, cj), m
    # a source index with several segments (a long first run), or none (downsampling): each source
    # cell becomes the ny * nx cells of its segments, in the order (row segment, column segment)
    ny, nx = (ys < len(ys_first)).sum(1).index_select(0, ci), (xs < len(xs_first)).sum(1).index_select(0, cj)
    many = ny * nx  # [K0]
    k = torch.repeat_interleave(many)  # [K]: each cell's source cell
    q = torch.arange(len(k), device=maps.device) - (torch.cumsum(many, 0) - many).index_select(0, k)
    nk = nx.index_select(0, k)
    cy = ys[ci.index_select(0, k), torch.div(q, nk, rounding_mode="floor")]
    cx = xs[cj.index_select(0, k), q % nk]
    return cp.index_select(0, k), cy, cx, m.index_select(0, k)


def mask_pixels_windowed(
    maps: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pair, pixel)`` of the mask pixels of ``maps [B, h, w]`` upsampled bilinearly to ``size``
    and thresholded ``> thresholds [B]``: the same pixels as the whole-map path (grouped by cell,
    not sorted). Only for sizes where :func:`exact_here` holds.

    A cell is a segment of output rows times a segment of output columns with the same four source
    values: the cells whose 2x2 maximum reaches the threshold are looked into, column by column
    (the columns that pass at every row are kept whole, those that may pass at some are evaluated).
    Every value is decided in float32 where it is clear by a margin of many ulps, and in the
    kernel's exact arithmetic (:func:`fma32`, row interpolations included) for the pixels within it."""
    b, h, w = maps.shape
    dev = str(maps.device)
    maps = maps.float()
    t = thresholds.float()
    y0, y1, wy0, wy1, in_y, start_y, ys = _segments(h, size[0], dev)
    x0, x1, wx0, wx1, in_x, start_x, xs = _segments(w, size[1], dev)
    empty = torch.zeros(0, dtype=torch.long, device=maps.device)
    cp, cy, cx, mag = _candidate_cells(maps, t, ys, xs, start_y, start_x)
    if not len(cp):
        return empty, empty
    flat = maps.reshape(-1)
    r0, r1 = cp * (h * w) + y0.index_select(0, cy) * w, cp * (h * w) + y1.index_select(0, cy) * w
    c0, c1 = x0.index_select(0, cx), x1.index_select(0, cx)
    ax0, ax1 = wx0.index_select(0, cx), wx1.index_select(0, cx)  # [K, R']
    v00, v01, v10, v11 = (flat.take(i) for i in (r0 + c0, r0 + c1, r1 + c0, r1 + c1))  # [K]: the four values
    # the row interpolations t0, t1 [K, R'] in float32, within an ulp or two of the kernel's fused
    # values; each output value is a convex combination of t0 and t1 of its column (weights of the
    # rows): a column none of whose values can reach the threshold is dropped, one whose t0 and t1
    # both pass it by the margin passes at every row (whole: no pixel evaluated), and only the
    # others, mixed, are evaluated row by row ([J, R], not [K, R, R']: about half of a live cell's
    # columns are dropped and, on Lite0's head, half of the mask pixels lie in whole columns). The
    # margin is many ulps of the cell's largest value: every float32 decision here is within it, and
    # the pixels inside it are decided in the kernel's exact arithmetic (fma32), from the map values
    t0 = torch.addcmul(v01.view(-1, 1) * ax1, v00.view(-1, 1), ax0)
    t1 = torch.addcmul(v11.view(-1, 1) * ax1, v10.view(-1, 1), ax0)
    tk = t.index_select(0, cp)
    margin = 2.0**-18 * (mag + tk.abs()) + _FLOOR  # [K]
    reach = (torch.maximum(t0, t1) >= (tk - margin).view(-1, 1)) & in_x.index_select(0, cx)
    k, col = reach.nonzero(as_tuple=True)  # [J]: the live columns, cell by cell
    if not len(k):
        return empty, empty
    at = k * t0.shape[1] + col
    t0, t1 = t0.reshape(-1).take(at), t1.reshape(-1).take(at)  # [J]
    tk, margin, cy = tk.index_select(0, k), margin.index_select(0, k), cy.index_select(0, k)
    keep = in_y.index_select(0, cy)  # [J, R]: every row of a whole column (runs are padded)
    mixed = (torch.minimum(t0, t1) <= tk + margin).nonzero()[:, 0]  # [Jm]
    if len(mixed):
        a0, a1, tm, mm, cm = (x.index_select(0, mixed) for x in (t0, t1, tk, margin, cy))
        a0, a1, tm, mm = a0[:, None], a1[:, None], tm[:, None], mm[:, None]
        by0, by1 = wy0.index_select(0, cm), wy1.index_select(0, cm)  # [Jm, R]
        approx = torch.addcmul(a1 * by1, a0, by0)
        passed = approx > tm + mm
        unsure = (approx >= tm - mm) ^ passed  # within the margin (passed implies it: margin >= 0)
        # a few hundred of up to 700k (bn2's [Jm, 16]): found 8 at a time, with no separate any()
        i, r = mask_pixels(unsure)
        if len(i):
            live = mixed.index_select(0, i)
            kk, cc = k.index_select(0, live), col.index_select(0, live)  # the pixel's cell and column
            e0, e1 = ax0[kk, cc], ax1[kk, cc]
            exact0 = fma32(v00.index_select(0, kk), e0, v01.index_select(0, kk) * e1)
            exact1 = fma32(v10.index_select(0, kk), e0, v11.index_select(0, kk) * e1)
            passed[i, r] = fma32(exact0, by0[i, r], exact1 * by1[i, r]) > tm[i, 0]
        keep.index_copy_(0, mixed, passed & keep.index_select(0, mixed))
    # each live column's first output pixel and pair, then its kept rows: two gathers per mask pixel
    first = (start_y.index_select(0, cy) * size[1] + start_x.index_select(0, cx.index_select(0, k))) + col
    j, r = keep.nonzero(as_tuple=True)
    return cp.index_select(0, k).index_select(0, j), first.index_select(0, j) + r * size[1]
