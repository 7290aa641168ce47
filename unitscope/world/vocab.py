"""The probe world's label vocabulary and colour naming.

    from unitscope.world.vocab import VOCAB, O, P, M, T, color_labels
    VOCAB["color"][0]        # ("red", 1): (name, global label number)
    O["house"], P["roof"]    # global label numbers used in the mask PNGs
    color_labels(rgb_uint8)  # [h, w] uint16 colour label of every pixel

Label numbers are global and fixed (the same for every world): colour, object, part, material,
scene, texture in Broden's order. Names are plain and unique across categories (``red``,
``street``); the real Broden spells colours and scenes ``red-c``, ``street-s``.
"""

from __future__ import annotations

import numpy as np

CATEGORIES = ("color", "object", "part", "material", "scene", "texture")
PIXEL_CATEGORIES = ("color", "object", "part", "material", "texture")

# Broden's 11 colour names with sRGB prototypes (several shades each) used to name rendered pixels.
COLOR_PROTOTYPES: dict[str, list[tuple[int, int, int]]] = {
    "red": [(200, 35, 35), (150, 25, 30), (235, 70, 60)],
    "orange": [(235, 130, 30), (250, 165, 70), (200, 105, 30)],
    "yellow": [(235, 210, 50), (250, 235, 120), (200, 180, 40)],
    "green": [(60, 150, 60), (30, 90, 40), (130, 200, 100), (90, 130, 50)],
    "blue": [(45, 85, 195), (120, 170, 230), (25, 40, 110), (70, 130, 210), (160, 200, 240)],
    "purple": [(125, 55, 155), (80, 35, 110), (170, 120, 200)],
    "pink": [(235, 150, 185), (220, 90, 150), (250, 200, 215)],
    "brown": [(125, 80, 40), (85, 55, 30), (170, 120, 70), (215, 185, 135)],  # tan: sand, light wood
    "black": [(25, 25, 28), (45, 45, 50)],
    "white": [(240, 240, 240), (220, 225, 235)],
    "grey": [(130, 130, 130), (90, 90, 95), (180, 180, 182), (110, 125, 140)],
}
COLORS = list(COLOR_PROTOTYPES)

OBJECTS = [
    "sky",
    "sea",
    "mountain",
    "sun",
    "cloud",
    "house",
    "tree",
    "car",
    "person",
    "road",
    "fence",
    "boat",
    "lamp",
    "bed",
    "table",
    "cabinet",
    "floor",
]
PART_OF = {
    "roof": "house",
    "wall": "house",
    "door": "house",
    "window": "house",
    "trunk": "tree",
    "crown": "tree",
    "body": "car",
    "wheel": "car",
    "head": "person",
    "torso": "person",
    "arm": "person",
    "leg": "person",
    "hull": "boat",
    "sail": "boat",
    "mast": "boat",
    "shade": "lamp",
    "pole": "lamp",
    "headboard": "bed",
    "pillow": "bed",
    "blanket": "bed",
    "tabletop": "table",
}
PARTS = list(PART_OF)  # window (car), door (cabinet), leg (table) are shared by other objects too
MATERIALS = ["wood", "brick", "metal", "water", "grass", "sand", "snow", "fabric"]
SCENES = ["street", "forest", "beach", "ski_slope", "bedroom", "harbour", "field", "kitchen"]
TEXTURES = ["striped", "dotted", "checkered", "zigzagged", "grid", "wavy", "speckled", "scaly", "banded"]

_NAMES = {
    "color": COLORS,
    "object": OBJECTS,
    "part": PARTS,
    "material": MATERIALS,
    "scene": SCENES,
    "texture": TEXTURES,
}

VOCAB: dict[str, list[tuple[str, int]]] = {}
_n = 1
for _cat in CATEGORIES:
    VOCAB[_cat] = [(name, _n + i) for i, name in enumerate(_NAMES[_cat])]
    _n += len(_NAMES[_cat])
NUM_LABELS = _n  # label numbers run 1 .. NUM_LABELS - 1

C = {c: VOCAB["color"][i][1] for i, c in enumerate(COLORS)}
O = {name: num for name, num in VOCAB["object"]}
P = {name: num for name, num in VOCAB["part"]}
M = {name: num for name, num in VOCAB["material"]}
S = {s: VOCAB["scene"][i][1] for i, s in enumerate(SCENES)}
T = {name: num for name, num in VOCAB["texture"]}
PARENT = np.zeros(NUM_LABELS, np.int64)  # part number -> its primary object's number
for _p, _o in PART_OF.items():
    PARENT[P[_p]] = O[_o]
ALLOWED_PARENTS = {P[p]: {O[o]} for p, o in PART_OF.items()}
ALLOWED_PARENTS[P["window"]].add(O["car"])
ALLOWED_PARENTS[P["door"]].add(O["cabinet"])
ALLOWED_PARENTS[P["leg"]].add(O["table"])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0..255 [..., 3] -> CIE Lab (D65) [..., 3]."""
    c = rgb.astype(np.float32) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]], np.float32)
    xyz /= np.array([0.9505, 1.0, 1.089], np.float32)
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


PROTO_RGB = np.array([p for c in COLORS for p in COLOR_PROTOTYPES[c]], np.float32)
PROTO_LAB = srgb_to_lab(PROTO_RGB)
PROTO_LABEL = np.array([C[c] for c in COLORS for _ in COLOR_PROTOTYPES[c]], np.uint16)
COLOR_RGB = {c: COLOR_PROTOTYPES[c][0] for c in COLORS}  # the main shade of each name


_LUT: np.ndarray | None = None
LUT_BITS = 6  # colours are named on a 64³ grid: at most 2 levels of 255 away from the exact colour


def _lut() -> np.ndarray:
    global _LUT
    if _LUT is None:
        n = 1 << LUT_BITS
        step = 256 // n
        levels = np.arange(n, dtype=np.float32) * step + (step - 1) / 2
        grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
        lab = srgb_to_lab(grid)
        d = (lab * lab).sum(1)[:, None] - 2 * lab @ PROTO_LAB.T + (PROTO_LAB * PROTO_LAB).sum(1)[None]
        _LUT = PROTO_LABEL[d.argmin(1)].reshape(n, n, n)
    return _LUT


def color_labels(rgb: np.ndarray) -> np.ndarray:
    """Name every pixel of ``rgb`` (uint8 [h, w, 3]) by its nearest colour prototype in CIE Lab."""
    q = np.asarray(rgb, np.uint8) >> (8 - LUT_BITS)
    return _lut()[q[..., 0], q[..., 1], q[..., 2]]
