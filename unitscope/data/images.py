"""The one image loader of the project: every unreadable image names its file and where it is listed.

    from unitscope.data.images import ImageReadError, load_image
    image = load_image("photos/cat.jpg")                              # PIL RGB image
    image = load_image(path, where="worlds/w/index.csv line 12")      # error says so too

A missing file raises :class:`FileNotFoundError`; a corrupt or truncated one
:class:`ImageReadError` (a ``ValueError``) carrying ``path`` and ``where``.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from unitscope.errors import UnitscopeError


class ImageReadError(UnitscopeError, ValueError):
    """An image file that could not be decoded; ``path`` and ``where`` (e.g. an index row) say which."""

    def __init__(self, path: str | Path, reason: str, where: str | None = None):
        self.path, self.where, self.reason = Path(path), where, reason
        listed = f" ({where})" if where else ""
        super().__init__(f"image {self.path}{listed} could not be read: {reason}")


def load_image(path: str | Path, where: str | None = None) -> Image.Image:
    """Open and fully decode ``path`` as RGB (a truncated file fails here, not later)."""
    from PIL import UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        listed = f" ({where})" if where else ""
        raise FileNotFoundError(f"image {path}{listed} does not exist")
    try:
        with Image.open(path) as image:
            image.load()  # decoded, its file closed: leaving the block closes nothing else
            return image if image.mode == "RGB" else image.convert("RGB")  # no copy of an RGB file's pixels
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(path, str(exc) or type(exc).__name__, where) from exc
