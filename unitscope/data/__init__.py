"""Probe data: the procedural probe world and a reader for Broden-format folders.

    from unitscope.data import make_world, BrodenDataset
    path = make_world("worlds/w224", n=2000, size=224, seed=0)
    ds = BrodenDataset(path, split="train")
    ds[0]["labels"].shape        # [K, 112, 112]: colour, object, part, material, texture planes
"""

from unitscope.data.broden import BrodenDataset, decode_mask
from unitscope.data.images import ImageReadError, load_image
from unitscope.data.world import GENERATOR_VERSION, WorldImage, make_world, render_image

__all__ = ["BrodenDataset", "GENERATOR_VERSION", "ImageReadError", "WorldImage", "decode_mask", "load_image",
           "make_world", "render_image"]
