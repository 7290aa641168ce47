"""Drawing primitives of the probe world: a canvas with label layers, shapes and surfaces.

    cv = Canvas(224, rng)
    region = cv.ellipse(100, 80, 30, 20)                  # (y0, y1, x0, x1, bool mask) or None
    cv.paint(region, pattern("striped", RED, WHITE, 6), obj=5, part=21, tex=60)
    rgb, layers = cv.finish()                             # uint8 [S, S, 3], dict of uint16 [S, S]

Every paint writes the pixels and all four pixel label layers (object, part, material, texture)
at once, so a later, nearer shape occludes the labels of what lies behind it along with its colour.
Surfaces are functions of the global pixel grid, vectorised over the painted bounding box only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

Region = tuple[int, int, int, int, np.ndarray]
# A surface gets (canvas, ys [h, 1], xs [1, w]) in global pixels and returns float RGB [h, w, 3] in 0..255.
Surface = Callable[["Canvas", np.ndarray, np.ndarray], np.ndarray]

LAYERS = ("object", "part", "material", "texture")


def jitter(rng: np.random.Generator, rgb, amount: float = 14.0) -> np.ndarray:
    return np.clip(np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3), 0, 255).astype(np.float32)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell_y: float, cell_x: float | None = None) -> np.ndarray:
    """Value noise in [-1, 1], [h, w]: a coarse random grid resized bilinearly."""
    cell_x = cell_y if cell_x is None else cell_x
    gh, gw = max(2, int(h / cell_y) + 2), max(2, int(w / cell_x) + 2)
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((w, h), Image.BILINEAR), np.float32)


class Canvas:
    """An RGB float image [S, S, 3] plus uint16 label layers [S, S] named in ``LAYERS``."""

    def __init__(self, size: int, rng: np.random.Generator):
        self.S = size
        self.rng = rng
        self.img = np.zeros((size, size, 3), np.float32)
        self.layers = {k: np.zeros((size, size), np.uint16) for k in LAYERS}
        ang = rng.uniform(0, 2 * np.pi)
        self.light = (np.cos(ang), np.sin(ang), rng.uniform(0.0, 0.35))  # direction, strength
        self._field: np.ndarray | None = None

    def field(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """The canvas's shared value noise in [-1, 1] over the box of ``ys`` × ``xs``, [h, w]."""
        if self._field is None:
            self._field = smooth_noise(self.rng, self.S, self.S, 12 * self.S / 224)
        y0, x0 = int(ys[0, 0]), int(xs[0, 0])
        return self._field[y0 : y0 + ys.shape[0], x0 : x0 + xs.shape[1]]

    # ---- shapes: each returns (y0, y1, x0, x1, mask) clipped to the canvas, or None if empty
    def _clip(self, y0, y1, x0, x1):
        y0, x0 = max(0, int(np.floor(y0))), max(0, int(np.floor(x0)))
        y1, x1 = min(self.S, int(np.ceil(y1))), min(self.S, int(np.ceil(x1)))
        return (y0, y1, x0, x1) if y1 > y0 and x1 > x0 else None

    def rect(self, x0, y0, x1, y1) -> Region | None:
        box = self._clip(y0, y1, x0, x1)
        return None if box is None else (*box, None)  # mask None: the whole box

    def ellipse(self, cx, cy, rx, ry) -> Region | None:
        box = self._clip(cy - ry, cy + ry + 1, cx - rx, cx + rx + 1)
        if box is None:
            return None
        y0, y1, x0, x1 = box
        ys = (np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy) / max(ry, 0.5)
        xs = (np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx) / max(rx, 0.5)
        mask = ys * ys + xs * xs <= 1.0
        return (y0, y1, x0, x1, mask) if mask.any() else None

    def polygon(self, points) -> Region | None:
        pts = np.asarray(points, np.float32)
        box = self._clip(pts[:, 1].min(), pts[:, 1].max() + 1, pts[:, 0].min(), pts[:, 0].max() + 1)
        if box is None:
            return None
        y0, y1, x0, x1 = box
        m = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(m).polygon([(float(x - x0), float(y - y0)) for x, y in pts], fill=1)
        mask = np.asarray(m, bool)
        return (y0, y1, x0, x1, mask) if mask.any() else None

    def union(self, *regions: Region | None) -> Region | None:
        regions = [r for r in regions if r is not None]
        if not regions:
            return None
        y0, y1 = min(r[0] for r in regions), max(r[1] for r in regions)
        x0, x1 = min(r[2] for r in regions), max(r[3] for r in regions)
        mask = np.zeros((y1 - y0, x1 - x0), bool)
        for ry0, ry1, rx0, rx1, m in regions:
            mask[ry0 - y0 : ry1 - y0, rx0 - x0 : rx1 - x0] |= True if m is None else m
        return y0, y1, x0, x1, mask

    # ---- painting
    def paint(
        self,
        region: Region | None,
        surface: Surface | np.ndarray,
        obj: int = 0,
        part: int = 0,
        material: int = 0,
        texture: int = 0,
        shade: bool = True,
    ) -> None:
        """Fill ``region`` with ``surface`` (an RGB colour or a Surface) and set every label layer."""
        if region is None:
            return
        y0, y1, x0, x1, mask = region
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        xs = np.arange(x0, x1, dtype=np.float32)[None, :]
        if callable(surface):
            rgb = surface(self, ys, xs)
        else:
            rgb = np.asarray(surface, np.float32)
        if shade:  # directional light across the shape's box
            lx, ly, k = self.light
            h, w = max(y1 - y0, 1), max(x1 - x0, 1)
            f = (1.0 + k * ((xs - x0) / w - 0.5) * lx) + k * ((ys - y0) / h - 0.5) * ly
            rgb = rgb * f[..., None]
        box = (slice(y0, y1), slice(x0, x1))
        if mask is None:
            self.img[box] = rgb
            for name, value in zip(LAYERS, (obj, part, material, texture)):
                self.layers[name][box] = value
        else:
            np.copyto(self.img[box], rgb, where=mask[..., None])
            for name, value in zip(LAYERS, (obj, part, material, texture)):
                np.copyto(self.layers[name][box], value, where=mask, casting="unsafe")

    def finish(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Global lighting (brightness, tint, sensor noise) and quantisation to uint8."""
        rng = self.rng
        gain = rng.uniform(0.8, 1.12) * (1 + rng.uniform(-0.06, 0.06, 3))
        img = self.img * gain.astype(np.float32)
        img += (rng.random(img.shape[:2] + (1,), dtype=np.float32) - 0.5) * 6.0  # sensor noise (luminance)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8), self.layers


# ---------------------------------------------------------------- surfaces


def plain(rgb, noise: float = 5.0) -> Surface:
    c = np.asarray(rgb, np.float32)

    def f(cv, ys, xs):
        return c + (cv.field(ys, xs) * noise)[..., None]

    return f


def gradient(top, bottom, y_top: float, y_bot: float) -> Surface:
    a, b = np.asarray(top, np.float32), np.asarray(bottom, np.float32)

    def f(cv, ys, xs):
        t = np.clip((ys - y_top) / max(y_bot - y_top, 1), 0, 1)[..., None]
        return np.broadcast_to(a + (b - a) * t, (ys.shape[0], xs.shape[1], 3))

    return f


def _mix(mask, c1, c2):
    return np.where(mask[..., None], np.asarray(c2, np.float32), np.asarray(c1, np.float32))


def _rot(ys, xs, angle):
    ca, sa = np.cos(angle), np.sin(angle)
    return xs * ca + ys * sa, -xs * sa + ys * ca


def pattern(kind: str, c1, c2, period: float, angle: float = 0.0) -> Surface:
    """A two-colour texture (see ``TEXTURES``); ``period`` in pixels."""
    p = max(float(period), 3.0)

    def f(cv, ys, xs):
        rng = cv.rng
        u, v = _rot(ys, xs, angle)
        if kind == "striped":
            m = (v % p) < p / 2
        elif kind == "dotted":
            a, b = u % p - p / 2, v % p - p / 2
            m = a * a + b * b < (p * 0.28) ** 2
        elif kind == "checkered":
            m = ((np.floor(u / p) + np.floor(v / p)) % 2) == 0
        elif kind == "zigzagged":
            tri = np.abs((u / p) % 2 - 1) * p
            m = ((v + tri) % p) < p / 2
        elif kind == "grid":
            t = max(1.5, p * 0.18)
            m = ((u % p) < t) | ((v % p) < t)
        elif kind == "wavy":
            m = ((v + 0.3 * p * np.sin(u * 2 * np.pi / (1.6 * p))) % p) < p / 2
        elif kind == "speckled":
            h, w = ys.shape[0], xs.shape[1]
            m = rng.random(((h + 1) // 2, (w + 1) // 2)) < 0.22
            m = np.repeat(np.repeat(m, 2, 0), 2, 1)[:h, :w]
        elif kind == "scaly":
            row = np.floor(v / p)
            uu = (u + (row % 2) * p / 2) % p - p / 2
            vv = v % p
            d = np.sqrt(uu * uu + vv * vv)
            m = np.abs(d - p * 0.55) < max(1.0, p * 0.12)
        elif kind == "banded":
            m = (v % (2.5 * p)) < p * 0.5
        else:
            raise ValueError(f"unknown texture {kind!r}")
        m = np.broadcast_to(m, (ys.shape[0], xs.shape[1]))
        return _mix(m, c1, c2)

    return f


def material(kind: str, rgb, scale: float = 1.0) -> Surface:
    """A material look (see ``MATERIALS``) around base colour ``rgb``; ``scale`` ~ image size / 224."""
    c = np.asarray(rgb, np.float32)
    s = max(scale, 0.25)

    def f(cv, ys, xs):
        rng = cv.rng
        h, w = ys.shape[0], xs.shape[1]
        Y, X = np.broadcast_to(ys, (h, w)), np.broadcast_to(xs, (h, w))
        if kind == "wood":
            n = smooth_noise(rng, h, w, 10 * s, 40 * s)
            grain = np.sin((Y + 4 * s * n) * (1.3 / s) + rng.uniform(0, 6))
            seam = (Y % (14 * s)) < max(1.0, s)
            g = 0.84 + 0.12 * grain - 0.3 * seam
            return c * g[..., None]
        if kind == "brick":
            bh, bw = 7 * s, 16 * s
            row = np.floor(Y / bh)
            xx = X + (row % 2) * bw / 2
            col = np.floor(xx / bw)
            mortar = ((Y % bh) < max(1.0, 1.2 * s)) | ((xx % bw) < max(1.0, 1.2 * s))
            table = rng.uniform(0.78, 1.12, 64).astype(np.float32)
            var = table[((row * 7 + col * 13) % 64).astype(np.int64)]
            out = c * var[..., None]
            return np.where(mortar[..., None], np.float32(200), out)
        if kind == "metal":
            streak = smooth_noise(rng, h, w, 40 * s, 2 * s) * 0.06
            t = (Y - Y.min()) / max(h, 1)
            spec = np.exp(-((t - rng.uniform(0.2, 0.5)) ** 2) / 0.01) * 0.55
            g = 0.82 + streak + 0.25 * (1 - t)
            return c * g[..., None] + (spec * 120)[..., None]
        if kind == "water":
            ph = rng.uniform(0, 6)
            rip = np.sin(X * (0.35 / s) + 3 * np.sin(Y * (0.5 / s) + ph)) * np.sin(Y * (0.9 / s))
            hi = (rip > 0.75).astype(np.float32)
            return c * (0.9 + 0.08 * rip)[..., None] + (hi * 70)[..., None]
        if kind == "grass":
            blades = smooth_noise(rng, h, w, 9 * s, 1.2 * s)
            patch = smooth_noise(rng, h, w, 30 * s)
            g = 0.85 + 0.22 * blades + 0.1 * patch
            return c * g[..., None]
        if kind == "sand":
            fine = (rng.random((h, w), dtype=np.float32) - 0.5) * 0.24
            ripple = np.sin(Y * (0.7 / s) + 2 * smooth_noise(rng, h, w, 25 * s)) * 0.05
            return c * (1 + fine + ripple)[..., None]
        if kind == "snow":
            soft = smooth_noise(rng, h, w, 30 * s)
            out = c + (soft * 10)[..., None]
            out[..., 2] += 8
            return out
        if kind == "fabric":
            weave = np.sin(X * (2.2 / s)) * np.sin(Y * (2.2 / s))
            fold = smooth_noise(rng, h, w, 25 * s) * 0.12
            return c * (0.92 + 0.08 * weave + fold)[..., None]
        raise ValueError(f"unknown material {kind!r}")

    return f


def textured_material(kind: str, tex: str, c1, c2, period: float, scale: float, angle: float = 0.0) -> Surface:
    """A patterned surface whose colours carry the material's look (e.g. striped fabric)."""
    pat, mat = pattern(tex, c1, c2, period, angle), material(kind, (255, 255, 255), scale)

    def f(cv, ys, xs):
        return pat(cv, ys, xs) * (mat(cv, ys, xs) / 255.0)

    return f
