"""A Broden folder's label planes decoded once, for every later reader: ``<folder>/.label-store``.

    from unitscope.data import BrodenDataset, write_label_store
    write_label_store("worlds/w224")              # once (the probe world writes its own)
    ds = BrodenDataset("worlds/w224")             # ds.get(i)["labels"] now reads the store
    ds.label_store                                # "fresh", "stale" (a file changed: PNGs decoded) or "none"

Decoding a row's mask PNGs (the labels of every category, checked against label.csv) costs about
1.6 ms of CPU per image of the 224 px probe world, about 80% of it PIL's and NumPy's per-file
overhead: 1.6 s of each dissection's pass 2 at 1,000 images, in every dissection of the same data
set. The store holds the same planes as one array (``planes.npy``, ``[rows, K, sh, sw]`` in the
narrowest integer type the label numbers fit), memory-mapped: a row costs a copy. Reads give the
arrays decoding gives, bit for bit (``int64``, or the store's own type with ``get(..., narrow=True)``;
the same plane layout, any categories or split).

``store.json`` records what the planes were decoded from: the tables' bytes (hashed) and every
mask file's size and modification time. A store that no longer matches is never read (the PNGs
are decoded, and a warning says how to rebuild it). The folder is written whole and renamed into
place, so a reader sees the old store, none, or the new one. It is a cache: delete it freely.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unitscope.runs import atomic_write_text

if TYPE_CHECKING:
    from unitscope.data.broden import BrodenDataset

STORE = ".label-store"
_VERSION = 1
_TABLES = ("index.csv", "label.csv", "category.csv")


def fingerprint(root: Path, masks: dict[str, list[str]]) -> dict[str, Any]:
    """What a folder's decoded planes depend on: its tables' bytes (hashed), and per category the
    name, size and modification time of each of its mask files (``masks``: category -> paths
    relative to ``images/``, every row in index order), hashed."""
    h = hashlib.sha1()
    for name in _TABLES:
        path = root / name
        h.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    images, out = root / "images", {}
    for cat, rels in masks.items():
        m = hashlib.sha1()
        for rel in rels:
            st = os.stat(images / rel)
            m.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        out[cat] = m.hexdigest()
    return {"tables": h.hexdigest(), "masks": out}


def write_label_store(root: str | Path, progress: bool = False) -> Path:
    """Decode every mask of the Broden folder ``root`` (all its categories and rows) into
    ``root/.label-store``; returns that folder. Replaces an older store whole."""
    from unitscope.data.broden import BrodenDataset

    root = Path(root)
    ds = BrodenDataset(root, validate="none", label_store=False)
    tmp = root / f"{STORE}.tmp{os.getpid()}"  # its own: two processes may build at once
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    dtype = ds.plane_dtype
    shape = (len(ds), ds.num_planes, *ds.mask_size)
    planes = np.lib.format.open_memmap(tmp / "planes.npy", mode="w+", dtype=dtype, shape=shape)
    rows = range(len(ds))
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc="label store", unit="img")
    for i in rows:
        planes[i] = ds.get(i, image=False)["labels"].numpy()
    planes.flush()
    del planes
    with open(tmp / "planes.npy", "rb") as f:
        os.fsync(f.fileno())
    meta = {
        "version": _VERSION,
        "categories": list(ds.categories),
        "planes": {c: int((ds.plane_category == g).sum()) for g, c in enumerate(ds.categories)},
        "mask_size": list(ds.mask_size),
        "rows": len(ds),
        "fingerprint": fingerprint(root, ds.mask_files()),  # every category's, every row's
    }
    atomic_write_text(tmp / "store.json", json.dumps(meta, indent=1) + "\n")
    final = root / STORE
    shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(tmp, final)
    except OSError:  # another process put its store there first (the same planes): keep that one
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / "store.json").is_file():
            raise
    return final


class LabelStore:
    """The store of ``ds``'s folder as ``ds`` reads it (its categories, all rows): ``state`` is
    ``"fresh"``, ``"stale"`` or ``"none"``; :meth:`planes` row ``r`` of index.csv, ``[K, sh, sw]``
    in ``ds``'s plane layout, as ``dtype`` (``int64`` unless asked; no copy beyond the read where it
    is the store's own). The array is mapped on first use in each process
    (a pickled data set, e.g. for spawned DataLoader workers, maps it again)."""

    def __init__(self, ds: BrodenDataset):
        self.folder = ds.root / STORE
        self.state, self._take, self._array = "none", np.zeros(0, np.int64), None
        meta_path = self.folder / "store.json"
        if not meta_path.is_file():
            return
        try:
            meta = json.loads(meta_path.read_text())
            now = fingerprint(ds.root, ds.mask_files())
            ok = (
                meta.get("version") == _VERSION
                and meta["mask_size"] == list(ds.mask_size)
                and meta["fingerprint"]["tables"] == now["tables"]
                and all(meta["fingerprint"]["masks"].get(c) == now["masks"][c] for c in ds.categories)
            )
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            self.state = "stale"
            warnings.warn(
                f"{self.folder} no longer matches the files of {ds.root} (a mask or table changed): its "
                "label planes are decoded from the PNGs instead; rebuild it with "
                f"`python -c \"from unitscope.data import write_label_store; write_label_store('{ds.root}')\"`",
                stacklevel=3,
            )
            return
        start, starts = 0, {}
        for c in meta["categories"]:
            starts[c] = start
            start += meta["planes"][c]
        take = [starts[c] + k for c in ds.categories for k in range(meta["planes"][c])]
        if len(take) != ds.num_planes:  # the layouts disagree: never read
            self.state = "stale"
            return
        self._take = np.asarray(take, np.int64)
        self.state = "fresh"

    def planes(self, row: int, dtype: Any = np.int64) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.folder / "planes.npy", mmap_mode="r")
        # take copies (the map stays read-only); no second copy where the store's type is the one asked for
        return self._array[row].take(self._take, axis=0).astype(dtype, copy=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_array": None}  # the mapping, not its bytes
