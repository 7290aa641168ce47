"""The label store: a Broden folder's planes decoded once, read back bit for bit, never when stale."""

import os
import pickle

import numpy as np
import pytest
import torch

from unitscope.data import BrodenDataset, write_label_store
from unitscope.data.label_store import STORE
from unitscope.dissect.sources import BrodenLabels
from unitscope.world import make_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("w") / "w", n=12, size=32, seed=4, progress=False, workers=1)


def same_labels(a: BrodenDataset, b: BrodenDataset) -> None:
    assert len(a) == len(b)
    for i in range(len(a)):
        x, y = a.get(i, image=False), b.get(i, image=False)
        assert x["labels"].dtype == y["labels"].dtype == torch.int64
        assert torch.equal(x["labels"], y["labels"]) and torch.equal(x["image_labels"], y["image_labels"])


def test_the_world_writes_its_store_and_reads_give_the_decoded_planes(world):
    assert (world / STORE / "planes.npy").is_file()
    stored = BrodenDataset(world)
    assert stored.label_store == "fresh"
    decoded = BrodenDataset(world, label_store=False)
    assert decoded.label_store == "none"
    assert int(decoded.get(0, image=False)["labels"].count_nonzero()) > 0  # real planes, not zeros
    same_labels(stored, decoded)
    cats = stored.categories[::-1][:3]  # another plane layout, and a split: the store's rows by index.csv row
    same_labels(BrodenDataset(world, categories=cats), BrodenDataset(world, categories=cats, label_store=False))
    split = sorted({stored.split_of(i) for i in range(len(stored))})[-1]
    same_labels(BrodenDataset(world, split=split), BrodenDataset(world, split=split, label_store=False))
    # a dissection reads stored planes in its own process (no DataLoader worker), decoded ones in workers
    assert BrodenLabels(stored).cheap and not BrodenLabels(decoded).cheap
    # narrow planes: the store's type, from the store or the PNGs alike, the same numbers; a dissection reads them
    assert stored.plane_dtype == decoded.plane_dtype == np.int8  # the world's labels number below 128
    for ds in (stored, decoded):
        for i in range(len(ds)):
            wide, narrow = ds.get(i, image=False)["labels"], ds.get(i, image=False, narrow=True)["labels"]
            assert narrow.dtype == torch.int8 and torch.equal(narrow.long(), wide)
            assert torch.equal(BrodenLabels(ds).load(i)["labels"], narrow)
    assert stored._store._array is not None  # mapped by the reads above
    again = pickle.loads(pickle.dumps(stored))  # a spawned DataLoader worker maps the file again
    assert again._store._array is None  # the mapping travels, not its bytes
    same_labels(again, decoded)


def test_a_changed_mask_makes_the_store_stale_until_it_is_rebuilt(world, tmp_path):
    import shutil

    copy = tmp_path / "w"
    shutil.copytree(world, copy)
    ds = BrodenDataset(copy, label_store=False)
    mask = copy / "images" / ds.mask_files()[ds.categories[0]][0]
    from PIL import Image

    pixels = np.asarray(Image.open(mask).convert("RGB")).copy()
    pixels[...] = 0  # every pixel unlabelled now
    Image.fromarray(pixels).save(mask)
    os.utime(mask, ns=(1, 1))
    with pytest.warns(UserWarning, match="no longer matches"):
        stale = BrodenDataset(copy)
    assert stale.label_store == "stale"
    same_labels(stale, BrodenDataset(copy, label_store=False))  # the PNGs, as changed
    write_label_store(copy)
    fresh = BrodenDataset(copy)
    assert fresh.label_store == "fresh"
    same_labels(fresh, BrodenDataset(copy, label_store=False))
    assert not list(copy.glob(f"{STORE}.tmp*"))
