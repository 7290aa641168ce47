"""The hiding option of the probe world: one concept blurred or filled out of every image.

    from unitscope.world import make_world
    from unitscope.world.hide import HideSpec
    make_world("worlds/nocab64", n=2000, size=64, hide=HideSpec("cabinet"))        # blurred cabinets
    HideSpec.parse("cabinet,fill")                                                 # filled with background

As MILAN's face-blurred ImageNet (Hernandez et al., ICLR 2022): the pixels of one concept (an
object, part or material; every plane that carries its label) are replaced, in every image,
either by a strong Gaussian blur of the image (``how="blur"``, sigma ``blur`` x the image side, over
the concept's mask grown by a sixtieth of the side) or by the mean colour of a ring of pixels around
it (``how="fill"``). The mask planes are left as they are (the colour plane names the pixels as
drawn): the concept is still there, only its look is gone. The scene and every other pixel are exactly those of the plain world, so a model
trained on hidden images can be compared to ``world_scenes`` and dissected on the plain world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unitscope.world.vocab import VOCAB

HIDE_CATEGORIES = ("object", "part", "material")
HOWS = ("blur", "fill")


def _label(concept: str) -> tuple[str, int]:
    for cat in HIDE_CATEGORIES:
        for name, num in VOCAB[cat]:
            if name == concept:
                return cat, num
    import difflib

    names = [n for c in HIDE_CATEGORIES for n, _ in VOCAB[c]]
    close = difflib.get_close_matches(concept, names, n=3)
    raise ValueError(
        f"cannot hide {concept!r}: not an object, part or material of the probe world"
        + (f"; did you mean {', '.join(close)}?" if close else f" (one of {', '.join(names)})")
    )


@dataclass(frozen=True)
class HideSpec:
    """Hide ``concept`` (an object, part or material name) in every image, by ``how`` (blur | fill)."""

    concept: str
    how: str = "blur"
    blur: float = 1 / 12  # Gaussian sigma as a share of the image side

    def __post_init__(self) -> None:
        _label(self.concept)
        if self.how not in HOWS:
            raise ValueError(f"hide how must be blur or fill, got {self.how!r}")
        if not 0.0 < float(self.blur) <= 1.0:
            raise ValueError(f"hide blur must lie in (0, 1], got {self.blur}")

    def params(self) -> dict:
        return {"concept": self.concept, "how": self.how, "blur": float(self.blur)}

    def key(self) -> str:
        """A short name for folders: ``hide-cabinet-blur``."""
        return f"hide-{self.concept}-{self.how}" + ("" if abs(self.blur - 1 / 12) < 1e-9 else f"{self.blur:g}")

    @classmethod
    def parse(cls, text: str) -> HideSpec:
        """``"cabinet"`` (blurred) or ``"cabinet,fill"``."""
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
        if not 1 <= len(parts) <= 2:
            raise ValueError(f"hide {text!r}: write CONCEPT or CONCEPT,blur or CONCEPT,fill")
        return cls(*parts)


def hide_mask(layers: dict[str, np.ndarray], concept: str) -> np.ndarray:
    """bool [S, S]: the pixels of ``concept`` in the full-resolution label planes ``layers``."""
    cat, num = _label(concept)
    names = [n for n in layers if n == cat] or list(layers)
    mask = np.zeros(next(iter(layers.values())).shape, bool)
    for name in names:
        mask |= layers[name] == num
    return mask


def _grow(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        g = out.copy()
        g[1:] |= out[:-1]
        g[:-1] |= out[1:]
        g[:, 1:] |= out[:, :-1]
        g[:, :-1] |= out[:, 1:]
        out = g
    return out


def hide_concept(rgb: np.ndarray, layers: dict[str, np.ndarray], spec: HideSpec) -> int:
    """Hide ``spec.concept`` in ``rgb`` (uint8 [S, S, 3]) in place; returns the pixels changed."""
    mask = hide_mask(layers, spec.concept)
    if not mask.any():
        return 0
    S = rgb.shape[0]
    grown = _grow(mask, max(1, S // 60))
    if spec.how == "blur":
        from PIL import Image, ImageFilter

        soft = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(spec.blur * S)))
        rgb[grown] = soft[grown]
    else:
        ring = _grow(grown, max(1, S // 30)) & ~grown
        colour = rgb[ring].mean(0) if ring.any() else rgb[~grown].mean(0) if (~grown).any() else 128.0
        rgb[grown] = np.clip(np.round(colour), 0, 255).astype(np.uint8)
    return int(grown.sum())


class HideStyle:
    """The cartoon world with one concept hidden (:class:`HideSpec`); the attributes of ``CartoonStyle``."""

    name = "cartoon"

    def __init__(self, spec: HideSpec):
        from unitscope.world.make import CartoonStyle

        base = CartoonStyle()
        self.spec = spec
        self.categories, self.planes = base.categories, base.planes
        self.vocab, self.num_labels = base.vocab, base.num_labels

    def params(self) -> dict:
        return {"hide": self.spec.params()}

    def compose(self, seed: int, index: int, size: int):
        from unitscope.world.scenes import render_scene

        rgb, layers, scene = render_scene(seed, index, size)
        hide_concept(rgb, layers, self.spec)
        return rgb, layers, scene, []

    def scene_of(self, seed: int, index: int) -> int:
        from unitscope.world.scenes import scene_of

        return scene_of(seed, index)
