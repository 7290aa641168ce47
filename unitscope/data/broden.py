"""A reader for Broden-format folders: the probe world, the real Broden1_224 / broden1_227 alike.

    ds = BrodenDataset("worlds/w224", categories=["object", "part"], transform=info.transform(), split="val")
    item = ds[0]            # image [3, H, W], labels [K, sh, sw], image_labels [M], category_present [G], scene
    ds.label_names[item["labels"][0, 0, 0]]      # "sky"
    loader = DataLoader(ds, batch_size=32, num_workers=2)   # default collate works: shapes are fixed

A folder holds ``index.csv`` (one row per image: ``image,split,ih,iw,sh,sw`` and one column per
category; cells list ``;``-separated PNG masks, relative to ``images/``, or image-level label
numbers), ``label.csv`` (``number,name,category,...`` with categories written ``cat(count)``),
``category.csv`` and ``c_<cat>.csv``. Mask pixels carry label = R + 256·G, 0 = unlabelled.

The folder is checked up front (``validate="files"``: tables, every referenced file, every mask's
size, image-level label numbers; ``"full"`` also decodes every mask to check its label numbers;
``"none"`` only parses the tables). Errors name the file and the row. Masks read later are
checked again as they are decoded.
"""

from __future__ import annotations

import csv
import re
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unitscope.data.images import load_image

META = ("image", "split", "ih", "iw", "sh", "sw")
_CAT_RE = re.compile(r"^\s*([^()]+?)\s*(?:\((\d*)\))?\s*$")


def _read_csv(path: Path, required: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; a Broden folder needs index.csv, label.csv and category.csv")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        missing = [c for c in required if c not in fields]
        if missing:
            raise ValueError(f"{path}: header lacks column(s) {missing}; it has {fields}")
        rows = []
        for k, row in enumerate(reader):
            if None in row or any(v is None for v in row.values()):
                raise ValueError(f"{path} line {k + 2}: expected {len(fields)} cells, got a different number")
            rows.append(row)
    return fields, rows


def _int(path: Path, line: int, column: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{path} line {line}: {column} {value!r} is not an integer") from None


def png_size(path: Path) -> tuple[int, int]:
    """(height, width) from a PNG header, without decoding it."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    w, h = struct.unpack(">II", head[16:24])
    return h, w


def decode_mask(path: str | Path) -> np.ndarray:
    """Label map int64 [h, w] = R + 256·G of a mask PNG."""
    with Image.open(path) as im:
        if im.mode != "RGB":
            im = im.convert("RGB")
        a = np.asarray(im)
    return a[..., 0].astype(np.int64) | (a[..., 1].astype(np.int64) << 8)


class BrodenDataset(torch.utils.data.Dataset):
    """Images of a Broden-format folder with their label planes; see the module docstring.

    ``ds[i]`` is a dict: ``image`` float [3, H, W] (``transform(PIL image)``, else [0, 1] floats);
    ``index`` the row in index.csv; ``labels`` int64 [K, sh, sw], every mask plane of the requested
    pixel categories (``plane_category`` says whose), zero-filled where a row has fewer masks;
    ``image_labels`` int64 [M], the image-level label numbers (scene, texture in real Broden), zero-
    padded; ``category_present`` bool [G], which requested categories the row annotates; ``scene``
    the scene class index into ``scene_names`` (-1 without one).

    ``get(i, image=False)`` / ``get(i, labels=False)`` skip decoding what a caller does not need.
    ``label_category[n]`` is the index into ``categories`` of label ``n``'s primary category (the
    one where the label occurs most often), or -1 for label 0 and labels of other categories.
    """

    def __init__(
        self,
        path: str | Path,
        categories: Sequence[str] | None = None,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        split: str | None = None,
        validate: str = "files",
        label_store: bool = True,
    ):
        if validate not in ("none", "files", "full"):
            raise ValueError(f"validate must be 'none', 'files' or 'full', not {validate!r}")
        self.root = Path(path)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: no such folder")
        self.transform = transform
        self._read_labels()
        self._read_categories()
        self._read_index(categories, split)
        if validate != "none":
            self._check_files(decode=validate == "full")
        self._store = None
        if label_store:
            from unitscope.data.label_store import LabelStore

            self._store = LabelStore(self)

    @property
    def label_store(self) -> str:
        """Where ``get`` reads label planes from: ``"fresh"`` (the folder's decoded store,
        :mod:`unitscope.data.label_store`), ``"stale"`` (a store that no longer matches: PNGs) or ``"none"``."""
        return self._store.state if self._store is not None else "none"

    def mask_files(self) -> dict[str, list[str]]:
        """Each requested category's mask files over every row of index.csv (any split), in index
        order: paths relative to ``images/``."""
        out: dict[str, list[str]] = {c: [] for c in self.categories}
        for record in self._every:
            for g, rel in record[3]:
                out[self.categories[g]].append(rel)
        return out

    # ------------------------------------------------------------------ tables
    def _read_labels(self) -> None:
        path = self.root / "label.csv"
        _, rows = _read_csv(path, ("number", "name", "category"))
        entries: dict[int, tuple[str, dict[str, int]]] = {}
        for k, row in enumerate(rows):
            line = k + 2
            num = _int(path, line, "number", row["number"])
            if num < 0:
                raise ValueError(f"{path} line {line}: label number {num} is negative")
            if num in entries:
                raise ValueError(f"{path} line {line}: label number {num} appears twice")
            cats: dict[str, int] = {}
            for token in filter(None, (t.strip() for t in row["category"].split(";"))):
                m = _CAT_RE.match(token)
                if not m:
                    raise ValueError(f"{path} line {line}: category {token!r} is not written 'name(count)'")
                cats[m.group(1)] = int(m.group(2) or 0)
            if num > 0:
                entries[num] = (row["name"], cats)
        if not entries:
            raise ValueError(f"{path}: no labels")
        size = max(entries) + 1
        self.label_names = ["-"] + [""] * (size - 1)
        self._label_cats: list[dict[str, int]] = [{} for _ in range(size)]
        for num, (name, cats) in entries.items():
            self.label_names[num] = name
            self._label_cats[num] = cats
        self._known = np.zeros(size, bool)
        self._known[list(entries)] = True
        self._known_pixel = self._known.copy()
        self._known_pixel[0] = True  # 0 = unlabelled pixel

    def _read_categories(self) -> None:
        path = self.root / "category.csv"
        _, rows = _read_csv(path, ("name",))
        self.all_categories = [r["name"] for r in rows]

    def _read_index(self, categories: Sequence[str] | None, split: str | None) -> None:
        path = self.root / "index.csv"
        fields, rows = _read_csv(path, META)
        columns = [c for c in fields if c not in META]
        if categories is None:
            categories = [c for c in columns if c in self.all_categories or not self.all_categories]
        else:
            categories = list(categories)
            unknown = [c for c in categories if c not in columns]
            if unknown:
                raise ValueError(f"{path}: no column for categor(ies) {unknown}; available: {columns}")
        self.categories = categories
        self.scene_names, scene_of = self._scene_classes()

        known = self._known
        records = []
        planes = {c: 0 for c in categories}
        n_image = 1
        shape = None
        for k, row in enumerate(rows):
            line = k + 2
            if not row["image"]:
                raise ValueError(f"{path} line {line}: empty image cell")
            ih, iw, sh, sw = (_int(path, line, c, row[c]) for c in ("ih", "iw", "sh", "sw"))
            if min(ih, iw, sh, sw) <= 0:
                raise ValueError(f"{path} line {line}: sizes must be positive, got ih={ih} iw={iw} sh={sh} sw={sw}")
            if shape is None:
                shape = (ih, iw, sh, sw)
            elif (sh, sw) != shape[2:]:
                raise ValueError(
                    f"{path} line {line}: mask size {sh}x{sw} differs from the first row's "
                    f"{shape[2]}x{shape[3]}; all rows must share one mask size"
                )
            masks: list[tuple[int, str]] = []
            numbers: list[int] = []
            present = []
            # the scene class comes with every item, whether or not "scene" is a requested category
            scene_cell = [t.strip() for t in (row.get("scene") or "").split(";") if t.strip().isdigit()]
            scene = scene_of.get(int(scene_cell[0]), -1) if scene_cell else -1
            for g, cat in enumerate(categories):
                tokens = [t.strip() for t in row[cat].split(";") if t.strip()]
                present.append(bool(tokens))
                m = 0
                for t in tokens:
                    if t.isdigit():
                        num = int(t)
                        if num >= len(known) or not known[num]:
                            raise ValueError(f"{path} line {line}: {cat} label {num} is not in label.csv")
                        numbers.append(num)
                    elif "." in t or "/" in t:
                        masks.append((g, t))
                        m += 1
                    else:
                        raise ValueError(
                            f"{path} line {line}: {cat} cell token {t!r} is neither a label number nor a mask path"
                        )
                planes[cat] = max(planes[cat], m)
            n_image = max(n_image, len(numbers))
            records.append((row["image"], row["split"], line, masks, numbers, present, scene))
        if not records:
            raise ValueError(f"{path}: no image rows")
        self.image_size = shape[:2]
        self.mask_size = shape[2:]
        # fixed plane layout over the whole folder (not only the split), so every split stacks alike
        self._plane_start, start = {}, 0
        for g, cat in enumerate(categories):
            self._plane_start[g] = start
            start += planes[cat]
        self.num_planes = start
        self.plane_category = torch.tensor(
            [g for g, c in enumerate(categories) for _ in range(planes[c])], dtype=torch.long
        )
        self.num_image_labels = n_image
        self._every = records  # every row, any split (the label store's rows)
        self._records = [r for r in records if split is None or r[1] == split]
        if split is not None and not self._records:
            splits = sorted({r[1] for r in records})
            raise ValueError(f"{path}: no rows in split {split!r}; splits present: {splits}")
        self._rows = [k for k, r in enumerate(records) if split is None or r[1] == split]
        self.label_category = self._primary_categories()

    def _scene_classes(self) -> tuple[list[str], dict[int, int]]:
        """Scene class order: c_scene.csv's codes if present, else label numbers."""
        numbers = [n for n, cats in enumerate(self._label_cats) if "scene" in cats]
        cpath = self.root / "c_scene.csv"
        if cpath.is_file():
            _, rows = _read_csv(cpath, ("code", "number"))
            coded = sorted(
                (_int(cpath, k + 2, "code", r["code"]), _int(cpath, k + 2, "number", r["number"]))
                for k, r in enumerate(rows)
            )
            numbers = [n for c, n in coded if c > 0 and n > 0]
        names = [re.sub(r"-s$", "", self.label_names[n]) for n in numbers]
        return names, {n: i for i, n in enumerate(numbers)}

    def _primary_categories(self) -> torch.Tensor:
        out = torch.full((len(self.label_names),), -1, dtype=torch.long)
        for n, cats in enumerate(self._label_cats):
            best = max(((cats[c], -g) for g, c in enumerate(self.categories) if c in cats), default=None)
            if best is not None:
                out[n] = -best[1]
        return out

    # ------------------------------------------------------------------ checks
    def _mask_error(self, line: int, rel: str, message: str) -> ValueError:
        return ValueError(f"{self.root / 'index.csv'} line {line}: mask {rel}: {message}")

    def _check_files(self, decode: bool) -> None:
        images = self.root / "images"
        sh, sw = self.mask_size
        for rel_image, _, line, masks, _, _, _ in self._records:
            if not (images / rel_image).is_file():
                raise FileNotFoundError(
                    f"{self.root / 'index.csv'} line {line}: image file {images / rel_image} is missing"
                )
            for _, rel in masks:
                p = images / rel
                if not p.is_file():
                    raise FileNotFoundError(f"{self.root / 'index.csv'} line {line}: mask file {p} is missing")
                if decode:
                    self._load_mask(line, rel)
                elif png_size(p) != (sh, sw):
                    h, w = png_size(p)
                    raise self._mask_error(line, rel, f"is {h}x{w}, expected sh x sw = {sh}x{sw}")

    def _load_mask(self, line: int, rel: str) -> np.ndarray:
        try:
            lab = decode_mask(self.root / "images" / rel)
        except OSError as exc:
            raise self._mask_error(line, rel, f"cannot be read ({exc})") from None
        if lab.shape != tuple(self.mask_size):
            raise self._mask_error(
                line,
                rel,
                f"is {lab.shape[0]}x{lab.shape[1]}, expected sh x sw = {self.mask_size[0]}x{self.mask_size[1]}",
            )
        top = int(lab.max())
        if top >= len(self._known_pixel) or not self._known_pixel[lab].all():
            bad = sorted(set(np.unique(lab).tolist()) - set(np.flatnonzero(self._known_pixel).tolist()))
            raise self._mask_error(line, rel, f"label number(s) {bad[:5]} are not in label.csv")
        return lab

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._records)

    def split_of(self, i: int) -> str:
        """The split (``train``/``val``/...) of item ``i`` of this dataset."""
        return self._records[i][1]

    def image_path(self, i: int) -> Path:
        return self.root / "images" / self._records[i][0]

    def label_index(self, name: str) -> int:
        """The label number of ``name`` (KeyError naming close matches if absent)."""
        try:
            return self.label_names.index(name)
        except ValueError:
            import difflib

            close = difflib.get_close_matches(name, self.label_names, n=5)
            raise KeyError(f"no label {name!r} in {self.root / 'label.csv'}; close: {close}") from None

    def category_labels(self, category: str) -> list[int]:
        """Label numbers listed under ``category`` in label.csv."""
        return [n for n, cats in enumerate(self._label_cats) if category in cats]

    def load_image(self, i: int) -> Image.Image:
        """Image ``i`` as RGB; an unreadable file raises :class:`ImageReadError` naming it and its
        index.csv line."""
        return load_image(self.image_path(i), where=f"{self.root / 'index.csv'} line {self._records[i][2]}")

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.get(i)

    @property
    def plane_dtype(self) -> np.dtype:
        """The narrowest integer type that holds every label number (int8 up to 127 labels, then int16,
        int32): the label store's, and the planes' of ``get(..., narrow=True)``."""
        top = len(self.label_names) - 1
        return np.dtype(np.int8 if top <= 127 else np.int16 if top <= 32767 else np.int32)

    def get(self, i: int, image: bool = True, labels: bool = True, narrow: bool = False) -> dict[str, Any]:
        """``ds[i]``, leaving out the image (no JPEG decode) or the label planes (no PNG decode) when
        a caller does not need them: ``index``, ``scene`` and ``category_present`` always come.
        Label planes are int64, or with ``narrow`` of :attr:`plane_dtype` (read from the label store
        without widening them: a dissection's pass 2 reads 8x fewer bytes)."""
        rel_image, _, line, masks, numbers, present, scene = self._records[i]
        out: dict[str, Any] = {
            "index": self._rows[i],
            "scene": scene,
            "category_present": torch.tensor(present, dtype=torch.bool),
        }
        if image:
            img = self.load_image(i)
            if self.transform is not None:
                out["image"] = self.transform(img)
            else:
                out["image"] = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div_(255)
        if labels:
            dtype = self.plane_dtype if narrow else np.dtype(np.int64)
            if self._store is not None and self._store.state == "fresh":
                planes = self._store.planes(self._rows[i], dtype)  # decoded once, as below
            else:
                planes = np.zeros((self.num_planes,) + tuple(self.mask_size), dtype)
                used = dict.fromkeys(range(len(self.categories)), 0)
                for g, rel in masks:
                    planes[self._plane_start[g] + used[g]] = self._load_mask(line, rel)
                    used[g] += 1
            image_labels = torch.zeros(self.num_image_labels, dtype=torch.long)
            image_labels[: len(numbers)] = torch.tensor(numbers, dtype=torch.long)
            out["labels"] = torch.from_numpy(planes)
            out["image_labels"] = image_labels
        return out

    def __repr__(self) -> str:
        return (
            f"BrodenDataset({str(self.root)!r}, {len(self)} images, categories={self.categories}, "
            f"labels={len(self.label_names) - 1}, planes={self.num_planes}, mask={self.mask_size})"
        )
