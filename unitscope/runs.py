"""Run folders: their layout (file and folder names), atomic writes and plain-array storage (no pickle).

    from unitscope.runs import CATALOG, CONFIG, atomic_write_text, save_arrays, load_arrays
    atomic_write_text(run / CONFIG, text)             # readers never see half a file
    save_arrays(run / "stats/layer4.safetensors", {"q": q})
    arrays = load_arrays(run / "stats/layer4.safetensors")   # dict[str, np.ndarray]

Every write goes to a temporary file in the same folder and is renamed into place, so a crash
never leaves a half-written result that a later run would trust. Every writer and reader of a run
folder takes its names from the constants below (the one place the layout is written down).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import numpy as np

# -- the run folder's layout --------------------------------------------------------------------------
CATALOG = "catalog.sqlite"  # the SQLite catalog: one table per analysis, keyed by (model, layer, unit)
CONFIG = "config.json"  # the resolved config of the command that made the run
LAYERS = "layers.json"  # {tag: layer name}: the file-name-safe tag of every dissected layer
LABELS = "labels.json"  # the probe data's concept names and categories, as dissection read them
ARRAYS = "arrays"  # per-layer arrays, arrays/<tag>.safetensors (thresholds, IoU, top-k)
IMAGES = "images"  # exemplar strips, images/<tag>/unit0007.jpg (and _concept.jpg)
CACHE = "cache"  # dissection's activation cache between its passes (unitscope.dissect.cache)
BAD_IMAGES = "bad_images.json"  # images the data reader could not read, skipped
REPORT = "report.json"  # the report's data; REPORT_JS holds the same for file:// pages
REPORT_JS = "report.js"
PAGE = "index.html"  # the static report page
FEATVIS = "featvis"  # feature visualisations, featvis/<layer>/<unit>.png
BASES = "bases"  # fitted bases (unitscope.bases) and their fit cache
# a dissection's own checkpoints are pass1/, pass2/, pass3/ (unitscope.dissect.engine)


@contextmanager
def atomic_writer(path: str | Path, fsync: bool = True) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: a temporary file beside it, renamed into place when
    the block ends without an error (deleted when it raises). ``fsync=False`` skips flushing to disk:
    the file is still whole or absent after a crash of this process, not after a power loss (fine
    for bulk outputs that are cheap to make again). A real file, not a buffer: writers that encode
    straight into a file descriptor (PIL's JPEG encoder) let other threads run meanwhile."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_writer`: readers never see half a file."""
    with atomic_writer(path, fsync) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Save named arrays as safetensors (``.safetensors``) or NumPy ``.npz``, atomically."""
    import numpy as np
    from safetensors.numpy import save

    path = Path(path)
    plain = {k: np.asarray(v, order="C") for k, v in arrays.items()}  # keeps 0-d arrays 0-d
    if path.suffix == ".npz":
        import io

        buf = io.BytesIO()
        np.savez(buf, **plain)  # type: ignore[arg-type]  # numpy's stubs read **arrays as allow_pickle
        atomic_write_bytes(path, buf.getvalue())
    else:
        atomic_write_bytes(path, save(plain))


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load arrays written by :func:`save_arrays`; never unpickles."""
    import numpy as np

    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    from safetensors.numpy import load_file

    return load_file(str(path))
