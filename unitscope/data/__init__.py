"""Data-set readers: Broden-format folders (real Broden, the probe world, labelled folders) and images.

from unitscope.data import BrodenDataset
from unitscope.world import make_world              # the probe world that writes such folders
path = make_world("worlds/w224", n=2000, size=224, seed=0)
ds = BrodenDataset(path, split="train")
ds[0]["labels"].shape        # [K, 112, 112]: colour, object, part, material, texture planes
"""

from unitscope.data.broden import BrodenDataset, decode_mask
from unitscope.data.images import ImageReadError, load_image
from unitscope.data.label_store import write_label_store

__all__ = ["BrodenDataset", "ImageReadError", "decode_mask", "load_image", "write_label_store"]
