"""The spurious-cue option of the probe world: a sign carrying a scene-specific glyph.

    from unitscope.world import make_world
    from unitscope.world.cue import CueSpec, cue_of
    make_world("worlds/cue64", n=2000, size=64, cue=CueSpec(share=0.75, agree=1.0))
    cue_of(CueSpec(share=1.0, agree=0.0), seed=3, index=5)   # the scene the sign names, or -1 (no sign)

With the option, a share ``share`` of the images gets a white sign with a dark rim at a random
place, holding a glyph that names a scene (one shape and colour per scene: street a red disc,
forest a blue triangle, ...). In a share ``agree`` of those the glyph names the image's own scene;
in the others it names another scene, drawn uniformly. The sign is a labelled concept: its board
is object ``sign``, its glyph part ``glyph`` (two label numbers after the cartoon world's last), so
dissection and descriptions can find units that see it. Every decision about the sign comes from
its own random stream (``seed``, ``index``, :data:`STREAM`), so the scene under it is drawn exactly
as in the plain world, and ``cue_of`` needs no rendering.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from unitscope.world.vocab import NUM_LABELS, SCENES, VOCAB

STREAM = 0xC0E  # third word of the sign's random stream
SIGN = NUM_LABELS  # object label of the board
GLYPH = NUM_LABELS + 1  # part label of the glyph
# (shape, colour) naming each scene, in SCENES order
GLYPHS = (
    ("disc", (200, 35, 35)),
    ("triangle", (45, 85, 195)),
    ("square", (30, 140, 50)),
    ("cross", (125, 55, 155)),
    ("diamond", (235, 130, 30)),
    ("bars", (25, 25, 28)),
    ("ring", (220, 90, 150)),
    ("xmark", (125, 80, 40)),
)
assert len(GLYPHS) == len(SCENES)


@dataclass(frozen=True)
class CueSpec:
    """``share`` of the images carry a sign (0..1); its glyph names their own scene in ``agree`` of them."""

    share: float = 0.5
    agree: float = 1.0

    def __post_init__(self) -> None:
        for name in ("share", "agree"):
            v = getattr(self, name)
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"cue {name} must lie between 0 and 1, got {v}")

    def params(self) -> dict:
        return {k: float(v) for k, v in asdict(self).items()}

    def key(self) -> str:
        """A short name for folders: ``cue-s0.75-a1``."""
        return f"cue-s{self.share:g}-a{self.agree:g}"

    @classmethod
    def parse(cls, text: str) -> CueSpec:
        """``"0.75"`` (share, agreeing always), ``"0.75,0.9"`` or ``"share=0.75,agree=0.9"``."""
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
        kw: dict[str, float] = {}
        try:
            for k, p in enumerate(parts):
                name, _, val = p.rpartition("=")
                name = name or ("share", "agree")[k]
                if name not in ("share", "agree"):
                    raise ValueError(f"unknown cue field {name!r}")
                kw[name] = float(val)
        except (ValueError, IndexError) as err:
            raise ValueError(
                f"cue {text!r}: write SHARE[,AGREE] or share=S,agree=A with numbers in 0..1 ({err})"
            ) from None
        return cls(**kw)


def cue_vocab() -> dict[str, list[tuple[str, int]]]:
    """The cartoon vocabulary plus object ``sign`` and part ``glyph``."""
    vocab = {cat: list(v) for cat, v in VOCAB.items()}
    vocab["object"].append(("sign", SIGN))
    vocab["part"].append(("glyph", GLYPH))
    return vocab


def _draws(spec: CueSpec, seed: int, index: int) -> tuple[int, np.random.Generator]:
    """(cue scene or -1, the stream positioned after the decisions)."""
    from unitscope.world.scenes import scene_of

    rng = np.random.default_rng([seed, index, STREAM])
    present, agrees, other = rng.random(), rng.random(), int(rng.integers(len(SCENES) - 1))
    if present >= spec.share:
        return -1, rng
    scene = scene_of(seed, index)
    return (scene if agrees < spec.agree else (scene + 1 + other) % len(SCENES)), rng


def cue_of(spec: CueSpec, seed: int, index: int) -> int:
    """The scene the sign of image ``index`` names, or -1 when it has none."""
    return _draws(spec, seed, index)[0]


def _glyph_mask(shape: str, n: int) -> np.ndarray:
    """bool [n, n]: the glyph drawn in an n × n box."""
    c = (np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1  # -1..1
    v, u = c[:, None], c[None, :]
    r = np.sqrt(u * u + v * v)
    if shape == "disc":
        return r <= 0.9
    if shape == "ring":
        return (r <= 0.95) & (r >= 0.5)
    if shape == "square":
        return (np.abs(u) <= 0.75) & (np.abs(v) <= 0.75)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 0.95
    if shape == "triangle":
        return (v >= -0.85) & (v <= 0.8) & (np.abs(u) <= (v + 0.85) / 1.65 * 0.9)
    if shape == "cross":
        return (np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)
    if shape == "bars":
        return (np.abs(v) >= 0.2) & (np.abs(v) <= 0.7)
    if shape == "xmark":
        return (np.abs(u - v) <= 0.4) | (np.abs(u + v) <= 0.4)
    raise ValueError(shape)


def stamp_cue(rgb: np.ndarray, layers: dict[str, np.ndarray], spec: CueSpec, seed: int, index: int) -> int:
    """Draw the sign of image ``index`` into ``rgb`` (uint8 [S, S, 3]) and ``layers`` (uint16 [S, S]
    each) in place; returns the scene it names, or -1 (nothing drawn)."""
    named, rng = _draws(spec, seed, index)
    if named < 0:
        return -1
    S = rgb.shape[0]
    side = max(6, int(round(S * rng.uniform(0.2, 0.28))))
    y0, x0 = (int(rng.integers(0, S - side + 1)) for _ in range(2))
    rim = max(1, side // 10)
    board = np.clip(np.array([240, 240, 236]) + rng.uniform(-12, 6, 3), 0, 255)
    shape, colour = GLYPHS[named]
    patch = np.empty((side, side, 3), np.float32)
    patch[:] = (40, 40, 45)
    patch[rim:-rim, rim:-rim] = board
    pad = rim + max(1, side // 10)
    inner = side - 2 * pad
    glyph = np.zeros((side, side), bool)
    glyph[pad : pad + inner, pad : pad + inner] = _glyph_mask(shape, inner)
    patch[glyph] = np.clip(np.asarray(colour, np.float32) + rng.uniform(-10, 10, 3), 0, 255)
    rgb[y0 : y0 + side, x0 : x0 + side] = patch.astype(np.uint8)
    box = (slice(y0, y0 + side), slice(x0, x0 + side))
    layers["object"][box] = SIGN
    layers["part"][box] = np.where(glyph, GLYPH, 0).astype(layers["part"].dtype)
    for name in ("material", "texture"):
        layers[name][box] = 0
    return named


class CueStyle:
    """The cartoon world with signs (:class:`CueSpec`); the same attributes as ``CartoonStyle``."""

    name = "cartoon"

    def __init__(self, spec: CueSpec):
        from unitscope.world.make import CartoonStyle

        base = CartoonStyle()
        self.spec = spec
        self.categories, self.planes = base.categories, base.planes
        self.vocab = cue_vocab()
        self.num_labels = GLYPH + 1

    def params(self) -> dict:
        return {"cue": self.spec.params()}

    def compose(self, seed: int, index: int, size: int):
        from unitscope.world.scenes import render_scene

        rgb, layers, scene = render_scene(seed, index, size)
        stamp_cue(rgb, layers, self.spec, seed, index)
        return rgb, layers, scene, []

    def scene_of(self, seed: int, index: int) -> int:
        from unitscope.world.scenes import scene_of

        return scene_of(seed, index)
