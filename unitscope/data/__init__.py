"""Probe data: the procedural probe world and a reader for Broden-format folders.

    from unitscope.data import make_world, BrodenDataset
    path = make_world("worlds/w224", n=2000, size=224, seed=0)
    photo = make_world("worlds/p224", n=5000, style="photo")   # real photographs (Debian packages)
    ds = BrodenDataset(path, split="train")
    ds[0]["labels"].shape        # [K, 112, 112]: colour, object, part, material, texture planes
"""

from unitscope.data.broden import BrodenDataset, decode_mask
from unitscope.data.images import ImageReadError, load_image
from unitscope.data.world import GENERATOR_VERSION, STYLES, WorldImage, make_world, render_image, world_style

__all__ = ["BrodenDataset", "GENERATOR_VERSION", "ImageReadError", "STYLES", "WorldImage", "decode_mask", "load_image",
           "make_world", "render_image", "world_style"]
