"""The photo world's compositions: real texture photographs as ground and wall, real cut-outs on top.

    src = find_sources()
    style = PhotoStyle(src)                     # or MixedStyle(src): cartoon scenes with photographs
    rgb, layers, scene, placed = style.compose(seed=0, index=7, size=224)
    # rgb uint8 [S, S, 3]; layers["object"|"parent"|"material"] uint16 [S, S]; scene: index into
    # style.vocab["scene"]; placed: the cut-outs in drawing order (later ones occlude earlier ones)

A photo scene splits the image at a wavy horizon into a ground (below) and a wall or sky (above),
fills each with a random crop of a material photograph, sometimes adds a patch of a third
material, and stands 1-3 cut-outs on the ground, nearer (lower) ones larger and drawn later.
A cut-out's label covers exactly the pixels where its resized alpha is at least 128
(:func:`placed_mask`); its colour is alpha-blended. Classes are drawn uniformly, then a
photograph within the class, so every class is seen about equally often.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from unitscope.world.sources import Sources
from unitscope.world.vocab import CATEGORIES, COLORS

# scene: (ground materials, wall materials, probability of sky instead of a wall)
PHOTO_SCENES: dict[str, tuple[tuple[str, ...], tuple[str, ...], float]] = {
    "field": (("grass", "dirt"), ("leaves", "bark", "grass"), 0.6),
    "beach": (("sand",), ("water", "rock"), 0.7),
    "rocky_hill": (("gravel", "rock", "dirt"), ("rock", "snow"), 0.6),
    "snowfield": (("snow",), ("rock", "bark", "snow"), 0.5),
    "street": (("concrete", "tile", "stone", "gravel"), ("brick", "concrete", "stone"), 0.4),
    "room": (("wood", "tile"), ("brick", "wood", "concrete", "stone", "metal"), 0.0),
    "yard": (("dirt", "grass", "gravel"), ("wood", "metal", "brick"), 0.3),
}
SKY = ((60, 120, 210), (160, 200, 240)), ((145, 150, 160), (205, 205, 210)), ((90, 70, 150), (245, 150, 80))


def numbered(names: dict[str, list[str]]) -> dict[str, list[tuple[str, int]]]:
    """Number labels 1.. in Broden's category order; a name may belong to one category only."""
    vocab, n, seen = {}, 1, {}
    for cat in CATEGORIES:
        vocab[cat] = []
        for name in names.get(cat, []):
            if name in seen:
                raise ValueError(f"label {name!r} is both a {seen[name]} and a {cat}; rename one of them")
            seen[name] = cat
            vocab[cat].append((name, n))
            n += 1
    return vocab


@dataclass(frozen=True)
class Placed:
    """One pasted cut-out: index into ``Sources.cutouts``, top-left corner, size and mirror flag."""

    cutout: int
    y: int
    x: int
    h: int
    w: int
    flip: bool


def placed_rgba(src: Sources, p: Placed) -> np.ndarray:
    """float32 [h, w, 4] of cut-out ``p`` resized (bilinear) and mirrored as placed."""
    im = Image.fromarray(src.cutout(p.cutout)).resize((p.w, p.h), Image.BILINEAR)
    a = np.asarray(im, np.float32)
    return a[:, ::-1] if p.flip else a


def placed_mask(src: Sources, p: Placed) -> np.ndarray:
    """bool [h, w]: the pixels cut-out ``p`` labels (its resized alpha at least 128)."""
    return placed_rgba(src, p)[..., 3] >= 128


def tile_texture(rng: np.random.Generator, src: Sources, material: str, size: int) -> np.ndarray:
    """float32 [S, S, 3]: a random crop of a random tile of ``material``, mirrored/turned, resized to S."""
    ks = [k for k, t in enumerate(src.tiles) if t.material == material]
    tile = src.tile(ks[int(rng.integers(len(ks)))])
    side = min(tile.shape[:2])
    c = max(8, int(side * rng.uniform(0.35, 1.0)))
    y, x = int(rng.integers(tile.shape[0] - c + 1)), int(rng.integers(tile.shape[1] - c + 1))
    crop = np.rot90(tile[y : y + c, x : x + c], int(rng.integers(4)))
    out = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR), np.float32)
    return out * rng.uniform(0.85, 1.15)


class _Style:
    """Shared by the photo and mixed styles: the sources, the vocabulary, pasting cut-outs."""

    name = ""
    categories: tuple[str, ...] = ()
    planes: tuple[tuple[str, str], ...] = ()  # (category, layer name) of every mask plane, colour first

    def __init__(self, src: Sources):
        self.src = src
        self.by_class = {c: [k for k, cut in enumerate(src.cutouts) if cut.label == c] for c in src.classes}
        self.vocab = numbered(self._names())
        self.num = {name: n for cat in CATEGORIES for name, n in self.vocab[cat]}
        self.num_labels = 1 + sum(len(v) for v in self.vocab.values())

    def _names(self) -> dict[str, list[str]]:
        raise NotImplementedError

    def params(self) -> dict:
        return {"style": self.name, "sources": self.src.fingerprint()}

    def _pick_cutout(self, rng: np.random.Generator) -> int:
        ks = self.by_class[self.src.classes[int(rng.integers(len(self.src.classes)))]]
        return ks[int(rng.integers(len(ks)))]

    def _place(self, rng, size: int, k: int, bottom: float, side: float) -> Placed:
        h0, w0 = self.src.cutout(k).shape[:2]
        f = min(side / max(h0, w0), 2.5)  # small photographs are not blown up into blur
        h, w = max(2, round(h0 * f)), max(2, round(w0 * f))
        x = int(round(rng.uniform(0.05, 0.95) * size - w / 2))
        return Placed(k, int(round(bottom - h)), x, h, w, bool(rng.random() < 0.5))

    def _paste(self, img: np.ndarray, layers: dict[str, np.ndarray], p: Placed) -> None:
        """Alpha-blend ``p`` into ``img`` and label its mask pixels (clipped to the image)."""
        rgba = placed_rgba(self.src, p)
        S = img.shape[0]
        y0, x0 = max(0, p.y), max(0, p.x)
        y1, x1 = min(S, p.y + p.h), min(S, p.x + p.w)
        if y1 <= y0 or x1 <= x0:
            return
        part = rgba[y0 - p.y : y1 - p.y, x0 - p.x : x1 - p.x]
        a = part[..., 3:] / 255.0
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - a) + part[..., :3] * a
        mask = part[..., 3] >= 128
        cut = self.src.cutouts[p.cutout]
        values = {"object": self.num[cut.label], "parent": self.num[cut.parent] if cut.parent else 0}
        for name, layer in layers.items():
            np.copyto(layer[y0:y1, x0:x1], values.get(name, 0), where=mask, casting="unsafe")

    @staticmethod
    def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
        img = img * (rng.uniform(0.85, 1.1) * (1 + rng.uniform(-0.05, 0.05, 3))).astype(np.float32)
        img += (rng.random(img.shape[:2] + (1,), dtype=np.float32) - 0.5) * 4.0
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)


class PhotoStyle(_Style):
    """Texture photographs as ground and wall, cut-outs standing on the ground."""

    name = "photo"
    categories = ("color", "object", "material", "scene")
    planes = (("color", "color"), ("object", "object"), ("object", "parent"), ("material", "material"))

    def __init__(self, src: Sources):
        have = set(src.materials)
        self.scenes = {
            s: (tuple(m for m in g if m in have), tuple(m for m in w if m in have), p)
            for s, (g, w, p) in PHOTO_SCENES.items()
        }
        self.scenes = {s: v for s, v in self.scenes.items() if v[0] and v[1]}
        if not self.scenes:  # a user's own materials: any material anywhere
            self.scenes = {"collage": (tuple(src.materials), tuple(src.materials), 0.3)}
        super().__init__(src)

    def _names(self) -> dict[str, list[str]]:
        sky = ["sky"] if any(p > 0 for _, _, p in self.scenes.values()) else []
        return {
            "color": COLORS,
            "object": self.src.classes + self.src.parents + sky,
            "material": self.src.materials,
            "scene": list(self.scenes),
        }

    def scene_of(self, seed: int, index: int) -> int:
        return int(np.random.default_rng([seed, index, 1]).integers(len(self.scenes)))

    def compose(self, seed: int, index: int, size: int):
        rng = np.random.default_rng([seed, index, 1])
        S = size
        scene = int(rng.integers(len(self.scenes)))  # the first draw: scene_of repeats it
        ground, wall, p_sky = list(self.scenes.values())[scene]
        layers = {name: np.zeros((S, S), np.uint16) for _, name in self.planes[1:]}
        horizon = rng.uniform(0.25, 0.6) * S
        xs = np.arange(S, dtype=np.float32)
        line = (
            horizon
            + rng.uniform(-0.15, 0.15) * (xs - S / 2)
            + rng.uniform(0, 0.05) * S * np.sin(xs / S * rng.uniform(2, 9) + rng.uniform(0, 6.3))
        )
        below = np.arange(S, dtype=np.float32)[:, None] >= line[None, :]
        img = np.empty((S, S, 3), np.float32)
        if rng.random() < p_sky:
            top, bot = SKY[int(rng.integers(len(SKY)))]
            t = np.clip(np.arange(S, dtype=np.float32) / max(horizon, 1), 0, 1)[:, None, None]
            img[:] = np.asarray(top, np.float32) + (np.asarray(bot, np.float32) - top) * t
            layers["object"][~below] = self.num["sky"]
        else:
            m = wall[int(rng.integers(len(wall)))]
            img[:] = tile_texture(rng, self.src, m, S)
            layers["material"][~below] = self.num[m]
        m = ground[int(rng.integers(len(ground)))]
        np.copyto(img, tile_texture(rng, self.src, m, S), where=below[..., None])
        layers["material"][below] = self.num[m]
        if rng.random() < 0.4:  # a patch of a third material on the ground
            m = self.src.materials[int(rng.integers(len(self.src.materials)))]
            cy, cx = rng.uniform(horizon, S), rng.uniform(0, S)
            ry, rx = rng.uniform(0.06, 0.2) * S, rng.uniform(0.1, 0.35) * S
            yy, xx = np.ogrid[:S, :S]
            patch = below & (((yy + 0.5 - cy) / ry) ** 2 + ((xx + 0.5 - cx) / rx) ** 2 <= 1)
            np.copyto(img, tile_texture(rng, self.src, m, S), where=patch[..., None])
            layers["material"][patch] = self.num[m]
        placed = []
        for bottom in sorted(rng.uniform(horizon + 0.1 * (S - horizon), 1.05 * S, int(rng.integers(1, 4)))):
            near = (bottom - horizon) / max(S - horizon, 1)  # 0 at the horizon, 1 at the bottom edge
            side = S * (0.3 + 0.45 * near) * rng.uniform(0.85, 1.15)
            p = self._place(rng, S, self._pick_cutout(rng), bottom, side)
            self._paste(img, layers, p)
            placed.append(p)
        return self._finish(rng, img), layers, scene, placed


class MixedStyle(_Style):
    """Cartoon scenes whose material regions are texture photographs, with cut-outs among the objects."""

    name = "mixed"
    categories = CATEGORIES
    planes = (
        ("color", "color"),
        ("object", "object"),
        ("object", "parent"),
        ("part", "part"),
        ("material", "material"),
        ("texture", "texture"),
    )

    def __init__(self, src: Sources):
        from unitscope.world import vocab as cv

        super().__init__(src)
        self.lut = np.zeros(cv.NUM_LABELS, np.uint16)  # cartoon label number -> this vocabulary's
        for cat in CATEGORIES:
            for name, n in cv.VOCAB[cat]:
                self.lut[n] = self.num[name]
        self.photo_materials = [(cv.M[m], m) for m in cv.MATERIALS if m in src.materials]

    def _names(self) -> dict[str, list[str]]:
        from unitscope.world import vocab as cv

        def extend(base: list[str], more: list[str]) -> list[str]:  # equal names share one label
            return base + [m for m in more if m not in base]

        return {
            "color": COLORS,
            "object": extend(cv.OBJECTS, self.src.classes + self.src.parents),
            "part": cv.PARTS,
            "material": extend(cv.MATERIALS, self.src.materials),
            "scene": cv.SCENES,
            "texture": cv.TEXTURES,
        }

    def scene_of(self, seed: int, index: int) -> int:
        from unitscope.world.scenes import scene_of

        return scene_of(seed, index)

    def compose(self, seed: int, index: int, size: int):
        from unitscope.world.scenes import render_scene

        rgb, cartoon, scene = render_scene(seed, index, size)
        rng = np.random.default_rng([seed, index, 2])
        S = size
        img = rgb.astype(np.float32)
        layers = {
            "object": self.lut[cartoon["object"]],
            "parent": np.zeros((S, S), np.uint16),
            "part": self.lut[cartoon["part"]],
            "material": self.lut[cartoon["material"]],
            "texture": self.lut[cartoon["texture"]],
        }
        lum = img.mean(-1)
        for number, name in self.photo_materials:
            mask = cartoon["material"] == number
            if mask.any():  # keep the cartoon's shading, replace its surface by a photograph
                shade = np.clip(lum[mask] / max(float(lum[mask].mean()), 1.0), 0.6, 1.4)
                img[mask] = tile_texture(rng, self.src, name, S)[mask] * shade[:, None]
        placed = []
        for bottom in sorted(rng.uniform(0.5 * S, 1.05 * S, int(rng.integers(1, 3)))):
            side = S * rng.uniform(0.25, 0.5) * (0.6 + 0.6 * (bottom / S - 0.5))
            p = self._place(rng, S, self._pick_cutout(rng), bottom, side)
            self._paste(img, layers, p)
            placed.append(p)
        return self._finish(rng, img), layers, scene, placed
