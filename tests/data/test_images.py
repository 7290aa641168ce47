"""load_image: the decoded picture as RGB, its file closed, other modes converted."""

from __future__ import annotations

import numpy as np
from PIL import Image

from unitscope.data.images import load_image


def test_an_rgb_file_comes_back_decoded_and_closed_and_other_modes_as_rgb(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    Image.fromarray(pixels[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([pixels, np.full((12, 10), 7, np.uint8)])).save(tmp_path / "rgba.png")

    rgb = load_image(tmp_path / "rgb.png")
    assert rgb.mode == "RGB" and rgb.size == (10, 12)
    assert getattr(rgb, "fp", None) is None  # no open file is held by the image
    (tmp_path / "rgb.png").unlink()  # nothing read later: the pixels are in memory
    assert np.array_equal(np.asarray(rgb), pixels)

    grey = load_image(tmp_path / "grey.png")
    assert grey.mode == "RGB" and np.array_equal(np.asarray(grey), np.repeat(pixels[..., :1], 3, axis=2))
    rgba = load_image(tmp_path / "rgba.png")
    assert rgba.mode == "RGB" and np.array_equal(np.asarray(rgba), pixels)
