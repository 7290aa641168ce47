"""Photographic sources of the photo world: cut-outs with an alpha mask, and material tiles.

    src = find_sources()                        # the curated Debian packages; MissingSources if absent
    src = find_sources("my_photos", system=False)  # only a folder of the user's own
    src.classes, src.parents, src.materials     # label names, sorted
    rgba = src.cutout(k)                        # uint8 [h, w, 4] of src.cutouts[k]
    rgb = src.tile(k)                           # uint8 [h, w, 3] of src.tiles[k]

Two Debian packages supply real photographs, read where they install and never copied into the
project: ``tuxpaint-stamps-default`` (stamps cut out with an alpha channel, an exact mask) and
``nexuiz-textures`` (photographic texture tiles in a zip). Which stamps are photographs, their
class and coarse parent, and which tiles show which material are curated in the text files of
``photo_sources/``. A user's folder adds ``objects/<class>/*.png`` (RGBA; or
``objects/<parent>/<class>/*.png``) and ``materials/<material>/*.{jpg,png}``.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from unitscope.errors import UnitscopeError

ALLOW_LISTS = Path(__file__).parent / "photo_sources"
STAMPS_PACKAGE, STAMPS_DIR = "tuxpaint-stamps-default", Path("/usr/share/tuxpaint/stamps")
TEXTURES_PACKAGE, TEXTURES_ZIP = "nexuiz-textures", Path("/usr/share/games/nexuiz/data/textures.pk3")
MAX_CUTOUT = 320  # cut-outs are kept at most this many pixels on their longer side
MAX_TILE = 512  # tiles likewise
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tga", ".bmp", ".webp")


class MissingSources(UnitscopeError, FileNotFoundError):
    """The photographs the photo world needs are not installed (the message says how to install them)."""


@dataclass(frozen=True)
class Cutout:
    source: str  # "stamps" (the Debian stamps folder) or a user folder
    path: str
    label: str
    parent: str | None


@dataclass(frozen=True)
class Tile:
    source: str  # "textures" (the Debian zip) or a user folder
    path: str
    material: str


@dataclass
class Sources:
    """Lists of cut-outs and tiles; pixels are decoded on first use and cached per process."""

    cutouts: list[Cutout]
    tiles: list[Tile]
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def classes(self) -> list[str]:
        return sorted({c.label for c in self.cutouts})

    @property
    def parents(self) -> list[str]:
        return sorted({c.parent for c in self.cutouts if c.parent})

    @property
    def materials(self) -> list[str]:
        return sorted({t.material for t in self.tiles})

    def fingerprint(self) -> str:
        """A digest of what was found (paths, labels, file sizes): part of a world's identity."""
        h = hashlib.sha256()
        for c in self.cutouts:
            h.update(f"{_kind(c.source)}|{c.path}|{c.label}|{c.parent}|{self._size(c.source, c.path)}\n".encode())
        for t in self.tiles:
            h.update(f"{_kind(t.source)}|{t.path}|{t.material}|{self._size(t.source, t.path)}\n".encode())
        return h.hexdigest()[:16]

    def _size(self, source: str, path: str) -> int:
        if source == "textures":
            return self._zip().getinfo(path).file_size
        return (self._root(source) / path).stat().st_size

    def _root(self, source: str) -> Path:
        return STAMPS_DIR if source == "stamps" else Path(source)

    def _zip(self) -> zipfile.ZipFile:
        if self._cache.get("zip_pid") != os.getpid():  # a forked worker must not share the parent's file
            self._cache["zip"], self._cache["zip_pid"] = zipfile.ZipFile(TEXTURES_ZIP), os.getpid()
        return self._cache["zip"]

    def _open(self, source: str, path: str) -> Image.Image:
        if source == "textures":
            with self._zip().open(path) as f:
                im = Image.open(f)
                im.load()
            return im
        return Image.open(self._root(source) / path)

    def cutout(self, k: int) -> np.ndarray:
        """uint8 [h, w, 4] RGBA of cut-out ``k`` (at most MAX_CUTOUT pixels on its longer side)."""
        key = ("c", k)
        if key not in self._cache:
            c = self.cutouts[k]
            im = self._open(c.source, c.path).convert("RGBA")
            im.thumbnail((MAX_CUTOUT, MAX_CUTOUT), Image.LANCZOS)
            self._cache[key] = np.asarray(im)
        return self._cache[key]

    def tile(self, k: int) -> np.ndarray:
        """uint8 [h, w, 3] RGB of tile ``k`` (at most MAX_TILE pixels on its longer side)."""
        key = ("t", k)
        if key not in self._cache:
            t = self.tiles[k]
            im = self._open(t.source, t.path).convert("RGB")
            im.thumbnail((MAX_TILE, MAX_TILE), Image.LANCZOS)
            self._cache[key] = np.asarray(im)
        return self._cache[key]

    def __getstate__(self) -> dict:  # worker processes reopen files themselves
        return {"cutouts": self.cutouts, "tiles": self.tiles, "_cache": {}}


def _kind(source: str) -> str:
    return source if source in ("stamps", "textures") else "user"  # not the folder's location


def _allow_list(name: str) -> list[list[str]]:
    rows = []
    for line in (ALLOW_LISTS / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            rows.append(line.split())
    return rows


def _system_sources() -> tuple[list[Cutout], list[Tile]]:
    missing = [
        pkg for pkg, path in ((STAMPS_PACKAGE, STAMPS_DIR), (TEXTURES_PACKAGE, TEXTURES_ZIP)) if not path.exists()
    ]
    if missing:
        raise MissingSources(
            f"the photo world needs the Debian package(s) {' and '.join(missing)}: run "
            f"`apt-get install -y {' '.join(missing)}` (or pass --sources DIR with your own photographs)"
        )
    cutouts = [
        Cutout("stamps", p, label, parent)
        for p, label, parent in _allow_list("tuxpaint_stamps.txt")
        if (STAMPS_DIR / p).is_file()
    ]
    names = set(zipfile.ZipFile(TEXTURES_ZIP).namelist())
    tiles = [Tile("textures", p, mat) for mat, p in _allow_list("nexuiz_textures.txt") if p in names]
    return cutouts, tiles


def _user_sources(root: Path) -> tuple[list[Cutout], list[Tile]]:
    if not root.is_dir():
        raise MissingSources(
            f"--sources {root}: no such folder (it needs objects/<class>/*.png and/or materials/<material>/*.jpg)"
        )
    cutouts, tiles = [], []
    for png in sorted((root / "objects").rglob("*.png")):
        rel = png.relative_to(root / "objects").parts
        if len(rel) not in (2, 3):
            raise ValueError(f"{png}: cut-outs go in objects/<class>/ or objects/<parent>/<class>/")
        parent = rel[0] if len(rel) == 3 else None
        cutouts.append(Cutout(str(root), str(png.relative_to(root)), rel[-2], parent))
    for img in sorted((root / "materials").rglob("*")):
        if img.suffix.lower() in _IMAGE_EXT:
            rel = img.relative_to(root / "materials").parts
            if len(rel) != 2:
                raise ValueError(f"{img}: tiles go in materials/<material>/")
            tiles.append(Tile(str(root), str(img.relative_to(root)), rel[0]))
    return cutouts, tiles


def find_sources(extra: str | Path | None = None, system: bool = True) -> Sources:
    """The Debian sources (if ``system``) plus the user's folder ``extra``; MissingSources when
    the Debian packages are absent and no folder is given, or nothing usable is found."""
    cutouts: list[Cutout] = []
    tiles: list[Tile] = []
    if system:
        try:
            cutouts, tiles = _system_sources()
        except MissingSources:
            if extra is None:
                raise
    if extra is not None:
        more_c, more_t = _user_sources(Path(extra).resolve())
        cutouts += more_c
        tiles += more_t
    if not cutouts or not tiles:
        what = "cut-outs (objects/<class>/*.png)" if not cutouts else "material tiles (materials/<material>/*)"
        raise MissingSources(f"the photo world found no {what} in {extra or 'the Debian packages'}")
    return Sources(cutouts, tiles)
