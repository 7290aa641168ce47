"""The activation cache: every layer's maps for every position of a run, an asset of the run folder.

    from unitscope.dissect import open_activation_cache
    cache = open_activation_cache("runs/lite0", "blocks.6")   # after `unitscope dissect --keep-cache`
    acts = cache.read(range(0, 32))                          # [32, C, h, w] float32, the layer's output
    cache.values, cache.note                                  # "pre" ("pre-activation: input of ReLU6 ...") or "post"
    pre = cache.read(range(0, 32), values="pre")             # what dissection thresholded and ranked
    cache.shape, cache.images, cache.key                      # (C, h, w), n, what it depends on

Dissection writes it in pass 1 and reads it in pass 2, so the model runs once; ablation and
attribution can read it instead of running the model again. One flat float32 file per layer, rows
indexed by position, read and written with ``pread``/``pwrite`` so resident memory stays flat
(under torchrun every rank writes its own rows into the same files, and its own record). A
``key`` (model, layers, data, image size, transform) says what the rows depend on: a cache made
with another key is discarded, never read. ``rows.safetensors`` records which rows were written
(flushed with each checkpoint), so the cache is ``complete`` only once every row was written.
Rows hold the values dissection used (``values`` per layer in ``index.json``): for a layer before a
bounded activation its input (the pre-activation), from which :meth:`LayerCache.read` rebuilds the
layer's output by applying the activation, so the cache holds one copy, never two.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unitscope.faults import fault
from unitscope.runs import CACHE, atomic_write_text, load_arrays, save_arrays

FOLDER = CACHE  # the run folder's cache folder (unitscope.runs)


class ActivationCache:
    """Read/write access to a run's cache folder for ``shapes = {layer: (C, h, w)}`` over ``n`` rows."""

    WRITTEN, SKIPPED = 1, 2  # states of a row in ``rows``; 0: never written

    def __init__(
        self,
        folder: str | Path,
        shapes: dict[str, tuple[int, int, int]],
        n: int,
        key: dict[str, Any],
        rank: int = 0,
        values: dict[str, dict[str, Any]] | None = None,
    ):
        self.folder, self.shapes, self.n = Path(folder), dict(shapes), n
        # per layer {"values": "pre" | "post", "note", "spec"} (unitscope.layers.LayerValues)
        self.values = json.loads(json.dumps(values or {}, sort_keys=True))
        self.rows_file = "rows.safetensors" if rank == 0 else f"rows.rank{rank}.safetensors"
        self.key = json.loads(json.dumps(key, sort_keys=True))
        self.files = {layer: f"l{i}.f32" for i, layer in enumerate(self.shapes)}
        self.row = {layer: int(np.prod(s)) * 4 for layer, s in self.shapes.items()}
        self.nbytes = sum(r * n for r in self.row.values())
        self._fds: dict[str, int] = {}
        self.rows = np.zeros(n, np.uint8)
        index = self._index()
        if (self.folder / "index.json").exists() and _read_index(self.folder) != index:
            shutil.rmtree(self.folder, ignore_errors=True)  # made for other activations: never read
        else:
            self.gather_rows()

    def _index(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "images": self.n,
            "layers": {
                layer: {
                    "file": self.files[layer],
                    "shape": list(s),
                    **({"values": self.values[layer]} if layer in self.values else {}),
                }
                for layer, s in self.shapes.items()
            },
        }

    def _fd(self, layer: str) -> int:
        if layer not in self._fds:
            if not (self.folder / "index.json").exists():
                self.folder.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.folder / "index.json", json.dumps(self._index(), indent=1) + "\n")
            self._fds[layer] = os.open(self.folder / self.files[layer], os.O_RDWR | os.O_CREAT, 0o644)
        return self._fds[layer]

    def skip(self, positions: np.ndarray) -> None:
        """Rows of unreadable images: never written, never read."""
        self.rows[positions] = self.SKIPPED

    def write(self, layer: str, positions: np.ndarray, acts: np.ndarray) -> None:
        """Rows ``positions`` of ``layer``; recorded as written by the next :meth:`flush`."""
        data = np.ascontiguousarray(acts, dtype=np.float32)
        if len(positions) and np.all(np.diff(positions) == 1):  # batches are contiguous: one write
            _pwrite_all(self._fd(layer), memoryview(data).cast("B"), int(positions[0]) * self.row[layer])
        else:
            for i, row in zip(positions, data):
                os.pwrite(self._fd(layer), row.tobytes(), int(i) * self.row[layer])
        self.rows[positions] = self.WRITTEN
        fault("cache.write")

    def read(self, layer: str, positions: np.ndarray) -> np.ndarray:
        """``[len(positions), C, h, w]`` float32."""
        shape, row, fd = self.shapes[layer], self.row[layer], self._fd(layer)
        if len(positions) and np.all(np.diff(positions) == 1):  # straight into the array: no copy
            out = np.empty((len(positions), *shape), dtype=np.float32)
            view, start = memoryview(out).cast("B"), int(positions[0]) * row
            done = 0
            while done < len(view):
                got = os.preadv(fd, [view[done:]], start + done)
                if got <= 0:
                    raise OSError(f"activation cache {self.files[layer]}: rows past its end")
                done += got
            return out
        return np.stack(
            [np.frombuffer(os.pread(fd, row, int(i) * row), dtype=np.float32).reshape(shape) for i in positions]
        )

    def flush(self, durable: bool = False) -> None:
        """Record which rows were written so far (a resume trusts the record): see :func:`record_rows`."""
        if self._fds:
            record_rows(self.folder / self.rows_file, self.rows, list(self._fds.values()), durable)
        fault("cache.flush")

    def gather_rows(self) -> None:
        """Add the rows every process recorded (``rows*.safetensors``) to this one's record."""
        self.rows = gathered_rows(self.folder, self.rows)

    @property
    def complete(self) -> bool:
        return is_complete(self.folder)

    def mark_complete(self, durable: bool = False) -> bool:
        """Mark the cache complete if every row was written (or skipped); returns whether it is.
        Rows missing after a resume that turned the cache on leave it incomplete, so pass 2 runs
        the model again instead of reading rows nobody wrote. ``durable``: the rows made to survive
        a crash of the machine (a cache kept after the run), else this boot's (:func:`record_rows`)."""
        self.flush(durable)
        self.gather_rows()
        if not (self.folder / "index.json").exists() or not (self.rows > 0).all():
            return False
        write_complete_marker(self.folder, self.n, durable)
        return True

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot of the machine (Linux's random ``boot_id``), or ``""`` where the system has none."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def record_rows(path: Path, rows: np.ndarray, fds: list[int], durable: bool = False) -> None:
    """Record ``rows`` (which rows the files ``fds`` hold) at ``path``. Rows written with ``pwrite``
    sit in the kernel's page cache, which outlives a killed process but not a crash of the machine.
    So the record is stamped with this boot (:func:`boot_id`) and trusted in this boot only
    (:func:`gathered_rows`): no ``fsync`` of data the run deletes at its end (1.8 s of a 1,000-image
    run of the demo's layers, whose cache is 1.5 GB). ``durable`` (a cache kept after the run), or
    no boot id: the files are synced first and the record is trusted in any boot."""
    boot = "" if durable else boot_id()
    if not boot:
        for fd in fds:
            os.fsync(fd)
    stamp = {"boot": np.frombuffer(boot.encode(), np.uint8)} if boot else {}
    save_arrays(path, {"rows": rows, **stamp})


def gathered_rows(folder: Path, rows: np.ndarray) -> np.ndarray:
    """``rows`` with the rows every process recorded in ``folder`` (``rows*.safetensors``) added,
    leaving out records stamped in another boot (:func:`record_rows`): their rows may be lost."""
    boot = boot_id()
    for path in sorted(folder.glob("rows*.safetensors")):
        record = load_arrays(path)
        if "boot" in record and bytes(record["boot"]).decode() != boot:
            continue
        rows = np.maximum(rows, record["rows"])
    return rows


def write_complete_marker(folder: Path, n: int, durable: bool) -> None:
    """Write ``folder``'s ``complete`` marker (stamped with this boot unless ``durable``: :func:`record_rows`)."""
    boot = "" if durable else boot_id()
    atomic_write_text(folder / "complete", json.dumps({"images": n, **({"boot": boot} if boot else {})}) + "\n")


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a complete cache: its ``index.json`` and a ``complete`` marker
    written durably or in this boot."""
    marker = folder / "complete"
    if not marker.exists() or not (folder / "index.json").exists():
        return False
    try:
        boot = json.loads(marker.read_text()).get("boot")
    except (OSError, ValueError, AttributeError):
        return False
    return boot is None or boot == boot_id()


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (``pwrite`` may write less than asked)."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


class LayerCache:
    """One layer of a finished activation cache, read-only (see :func:`open_activation_cache`)."""

    def __init__(self, cache: ActivationCache, layer: str):
        self._cache, self.layer = cache, layer
        self.shape, self.images, self.key = cache.shapes[layer], cache.n, cache.key
        stored = cache.values.get(layer, {})
        self.values, self.note = stored.get("values", "post"), stored.get("note", "layer output")
        self._spec = stored.get("spec")

    @property
    def skipped(self) -> list[int]:
        """Positions of unreadable images, whose rows hold nothing."""
        return np.flatnonzero(self._cache.rows == ActivationCache.SKIPPED).tolist()

    def read(self, positions: Iterable[int], values: str = "post") -> torch.Tensor:
        """``[N, C, h, w]`` float32 maps at ``positions`` (0..images-1): the layer's output
        (``values="post"``), or its input to the activation (``"pre"``, when the cache holds it)."""
        from unitscope.layers import apply_activation

        pos = np.asarray(list(positions), dtype=np.int64)
        if len(pos) and (pos.min() < 0 or pos.max() >= self.images):
            raise IndexError(f"positions must lie in [0, {self.images}); got {pos.min()}..{pos.max()}")
        if values not in ("pre", "post"):
            raise ValueError(f"values must be 'pre' or 'post', got {values!r}")
        if values == "pre" and self.values != "pre":
            raise ValueError(f"the cache holds {self.layer}'s output ({self.note}), not its pre-activation")
        maps = torch.from_numpy(self._cache.read(self.layer, pos))
        return apply_activation(self._spec, maps) if values == "post" and self.values == "pre" else maps

    def close(self) -> None:
        self._cache.close()

    def __enter__(self) -> LayerCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_activation_cache(run_dir: str | Path, layer: str) -> LayerCache:
    """The cached maps of ``layer`` in a finished run folder (dissected with ``keep_cache=True`` /
    ``--keep-cache``)."""
    folder = Path(run_dir) / FOLDER
    if not is_complete(folder):
        raise FileNotFoundError(
            f"{run_dir} has no complete activation cache; run `unitscope dissect` with "
            "--keep-cache (and enough --cache-gb) to keep one"
        )
    index = _read_index(folder)
    if layer not in index["layers"]:
        raise ValueError(f"the activation cache of {run_dir} holds layers {list(index['layers'])}, not {layer!r}")
    shapes = {name: tuple(v["shape"]) for name, v in index["layers"].items()}
    values = {name: v["values"] for name, v in index["layers"].items() if "values" in v}
    return LayerCache(ActivationCache(folder, shapes, index["images"], index["key"], values=values), layer)


def _read_index(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "index.json").read_text())


class LabelCache:
    """The label planes pass 2 read, for pass 3 to read back instead of decoding the data set again:
    ``folder`` (``cache/labels`` of the run) holds one flat file of rows (``labels`` planes, then
    ``image_labels``, in the narrowest signed integer type the label count allows, then
    ``category_present`` as bytes), ``index.json`` (shapes, dtypes, ``key``) and the same row
    record and ``complete`` marker as :class:`ActivationCache`. Reads give back the original dtypes,
    so counts are bit-identical with and without it. Laid out on the first batch written;
    ``budget`` bytes (what ``cache_gb`` leaves after the activations) caps it: over it, nothing is written."""

    WRITTEN, SKIPPED = ActivationCache.WRITTEN, ActivationCache.SKIPPED

    def __init__(
        self,
        folder: str | Path,
        n: int,
        key: dict[str, Any],
        num_labels: int,
        rank: int = 0,
        budget: float = float("inf"),
    ):
        self.folder, self.n, self.budget = Path(folder), n, budget
        self.key = json.loads(json.dumps({**key, "num_labels": num_labels}, sort_keys=True))
        self.code = "int8" if num_labels <= 127 else "int16" if num_labels <= 32767 else "int32"
        self.rows_file = "rows.safetensors" if rank == 0 else f"rows.rank{rank}.safetensors"
        self.rows = np.zeros(n, np.uint8)
        self.layout: dict[str, Any] | None = None
        self.disabled = False
        self._fd_: int | None = None
        if (self.folder / "index.json").exists():
            index = _read_index(self.folder)
            if index.get("key") != self.key or index.get("images") != n:
                shutil.rmtree(self.folder, ignore_errors=True)
            else:
                self.layout = index["layout"]
                self.gather_rows()

    def _lay_out(self, parts: tuple[torch.Tensor, ...]) -> bool:
        shapes = [list(p.shape[1:]) for p in parts]
        dtypes = [str(p.dtype).removeprefix("torch.") for p in parts]
        layout = {"shapes": shapes, "dtypes": dtypes, "codes": [self.code, self.code, "uint8"]}
        if self.layout is None:
            row = sum(int(np.prod(s)) * np.dtype(c).itemsize for s, c in zip(shapes, layout["codes"]))
            if row * self.n > self.budget:
                self.disabled = True
                return False
            self.layout = layout
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.folder / "index.json",
                json.dumps({"key": self.key, "images": self.n, "layout": layout}, indent=1) + "\n",
            )
        elif {k: self.layout[k] for k in layout} != layout:  # planes of another shape: never mix
            self.disabled = True
        return not self.disabled

    @property
    def _row(self) -> list[int]:
        assert self.layout is not None
        return [int(np.prod(s)) * np.dtype(c).itemsize for s, c in zip(self.layout["shapes"], self.layout["codes"])]

    def _fd(self) -> int:
        if self._fd_ is None:
            self._fd_ = os.open(self.folder / "labels.bin", os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd_

    def skip(self, positions: np.ndarray) -> None:
        """Rows pass 2 did not count (unreadable images or labels): never read."""
        positions = np.asarray(positions, dtype=np.int64)
        self.rows[positions[self.rows[positions] != self.WRITTEN]] = self.SKIPPED

    def write(
        self, positions: np.ndarray, labels: torch.Tensor, image_labels: torch.Tensor, present: torch.Tensor
    ) -> None:
        """One batch's planes at ``positions``; recorded as written by the next :meth:`flush`."""
        if self.disabled or not len(positions):
            return
        parts = (labels, image_labels, present)
        if not self._lay_out(parts):
            return
        assert self.layout is not None
        arrays = []
        for p, code in zip(parts, self.layout["codes"]):
            a = p.cpu().numpy()
            info = np.iinfo(code)
            if a.size and code != "uint8" and (a.min() < info.min or a.max() > info.max):
                self.disabled = True  # a label number the narrow type cannot hold: read the data set
                return
            arrays.append(a.astype(code).reshape(len(positions), -1))
        data = np.concatenate([a.view(np.uint8) for a in arrays], axis=1)
        row = data.shape[1]
        if np.all(np.diff(positions) == 1):
            os.pwrite(self._fd(), data.tobytes(), int(positions[0]) * row)
        else:
            for i, r in zip(positions, data):
                os.pwrite(self._fd(), r.tobytes(), int(i) * row)
        self.rows[positions] = self.WRITTEN
        fault("labels.write")

    def read(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``labels [N, K, S, S']``, ``image_labels [N, M]``, ``present [N, G]`` in the dtypes pass 2 read."""
        assert self.layout is not None
        sizes, row = self._row, sum(self._row)
        if len(positions) and np.all(np.diff(positions) == 1):
            buf = os.pread(self._fd(), row * len(positions), int(positions[0]) * row)
        else:
            buf = b"".join(os.pread(self._fd(), row, int(i) * row) for i in positions)
        data = np.frombuffer(buf, dtype=np.uint8).reshape(len(positions), row)
        out, start = [], 0
        for size, shape, code, dtype in zip(sizes, self.layout["shapes"], self.layout["codes"], self.layout["dtypes"]):
            a = np.array(data[:, start : start + size]).view(code).reshape(len(positions), *shape)  # a writable copy
            out.append(torch.from_numpy(a).to(getattr(torch, dtype)))
            start += size
        return out[0], out[1], out[2]

    def flush(self, durable: bool = False) -> None:
        if self._fd_ is not None:
            record_rows(self.folder / self.rows_file, self.rows, [self._fd_], durable)

    def gather_rows(self) -> None:
        self.rows = gathered_rows(self.folder, self.rows)

    @property
    def complete(self) -> bool:
        return not self.disabled and is_complete(self.folder)

    def mark_complete(self, durable: bool = False) -> bool:
        if self.disabled or self.layout is None:
            return False
        self.flush(durable)
        self.gather_rows()
        if not (self.rows > 0).all():
            return False
        write_complete_marker(self.folder, self.n, durable)
        return True

    def close(self) -> None:
        if self._fd_ is not None:
            os.close(self._fd_)
            self._fd_ = None


class MaskCache:
    """The unit masks pass 2 found, for pass 3 to count its null from instead of finding the
    candidates' masks again: one file per batch (``cache/masks/b{first position}.safetensors``)
    holding, per layer tag, the mask pixels of every unit (:class:`~.iou.MaskPixels`; each pixel's
    pair and place as int16 where the batch and label size allow) with the batch's positions and
    the layer's thresholds. A record is used only where both are those of pass 3's batch: anything
    else (no record: the ``budget`` of bytes was spent, a resume, an unreadable file) makes pass 3
    find the masks from the maps, as without this cache. About 4 bytes per mask pixel: 0.32 MB per
    image for Lite0's three default layers (top 0.5%, 112 px labels). The record also holds the
    batch's labels as pass 2 prepared them (:class:`~.iou.BatchLabels` by label combination: each
    label pixel's combination, int16 where the combinations allow, and the table of combinations),
    so that pass 3 neither reads the label planes nor prepares them again (:meth:`labels`).

    The first ``memory`` bytes of records stay in this object instead of going to files (pass 2 hands
    it to pass 3 in the same process): no serialising, writing and reading back of what pass 3 reads
    a second later (70 MB on Lite0's ``blocks.6`` at 1,000 images). They go with the process: a
    resumed pass 3 finds those batches' masks from the maps, as for any batch without a record."""

    def __init__(self, folder: str | Path, budget: float = float("inf"), memory: float = 0):
        self.folder, self.budget, self.memory = Path(folder), budget, memory
        self.used = sum(f.stat().st_size for f in self.folder.glob("b*.safetensors"))  # a resume's records
        self.disabled = False
        self._held: dict[int, dict[str, np.ndarray]] = {}  # by the batch's first position
        self._held_bytes = 0

    def _path(self, positions: np.ndarray) -> Path:
        return self.folder / f"b{int(positions[0]):09d}.safetensors"

    def write(
        self,
        positions: np.ndarray,
        layers: dict[str, tuple[torch.Tensor, list[Any]]],
        pixels: int,
        labels: Any = None,
    ) -> None:
        """``layers``: ``{tag: (thresholds [C], [MaskPixels, ...])}`` of the batch at ``positions``
        (label planes of ``pixels`` pixels); ``labels``: the batch's :class:`~.iou.BatchLabels`
        (recorded where they hold label combinations), or None."""
        if self.disabled or not len(positions) or self.budget <= self.used:
            return
        from safetensors.numpy import save

        from unitscope.runs import atomic_write_bytes

        pix_code = np.int16 if pixels <= 2**15 else np.int32
        # every array its own copy: a held record shares no memory with the caller's tensors
        arrays: dict[str, np.ndarray] = {"positions": np.array(positions, dtype=np.int64)}
        for tag, (thresholds, chunks) in layers.items():
            offsets = np.cumsum([0] + [len(c.img) for c in chunks])
            arrays[f"{tag}.thresholds"] = thresholds.detach().float().cpu().numpy().copy()
            arrays[f"{tag}.img"] = _cat([c.img for c in chunks], np.int32)
            arrays[f"{tag}.unit"] = _cat([c.unit for c in chunks], np.int32)
            pair_code = np.int16 if offsets[-1] <= 2**15 else np.int32
            arrays[f"{tag}.pair"] = _cat([c.pair + int(o) for c, o in zip(chunks, offsets)], pair_code)
            arrays[f"{tag}.pix"] = _cat([c.pix for c in chunks], pix_code)
        if labels is not None and labels.combo is not None and labels.table is not None:
            combo_code = np.int16 if len(labels.table) <= 2**15 else np.int32
            arrays["labels.combo"] = labels.combo.cpu().numpy().astype(combo_code)
            arrays["labels.table"] = labels.table.cpu().numpy().astype(np.int32)  # label numbers < 2**31
            arrays["labels.image_labels"] = np.array(labels.image_labels.cpu().numpy())
            arrays["labels.present"] = np.array(labels.present.cpu().numpy())
            arrays["labels.label_area"] = labels.label_area.cpu().numpy().astype(np.int64)
            arrays["labels.size"] = np.array([*labels.size, labels.num_labels], dtype=np.int64)
        size = sum(a.nbytes for a in arrays.values())
        data = None if self._held_bytes + size <= self.memory else save(arrays)  # None: held here
        size = size if data is None else len(data)
        if self.used + size > self.budget:
            self.disabled = True
            return
        if data is None:
            self._held[int(positions[0])] = arrays
            self._held_bytes += size
        else:
            atomic_write_bytes(self._path(positions), data, fsync=False)  # pass 3 checks what it reads
        self.used += size

    def load(self, positions: np.ndarray) -> dict[str, np.ndarray] | None:
        """The record of the batch at ``positions`` (every layer), or None."""
        if not len(positions):
            return None
        arrays = self._held.get(int(positions[0]))
        if arrays is None:
            try:
                arrays = load_arrays(self._path(positions))
            except Exception:  # noqa: BLE001 - absent or torn: pass 3 finds the masks again
                return None
        return arrays if np.array_equal(arrays.get("positions"), np.asarray(positions)) else None

    @staticmethod
    def pixels(record: dict[str, np.ndarray] | None, tag: str, thresholds: torch.Tensor) -> Any:
        """The :class:`~.iou.MaskPixels` of ``tag`` in ``record`` (:meth:`load`; one chunk, units
        numbered as in the layer), or None where it holds no masks of ``tag`` at ``thresholds``."""
        from unitscope.dissect.iou import MaskPixels

        if record is None or f"{tag}.pix" not in record:
            return None
        if not np.array_equal(record[f"{tag}.thresholds"], thresholds.detach().float().cpu().numpy()):
            return None
        device = thresholds.device
        return MaskPixels(
            *(
                torch.from_numpy(record[f"{tag}.{k}"].astype(np.int64)).to(device)
                for k in ("img", "unit", "pair", "pix")
            )
        )

    @staticmethod
    def labels(record: dict[str, np.ndarray] | None, num_labels: int, device: torch.device | str = "cpu") -> Any:
        """The batch's :class:`~.iou.BatchLabels` in ``record`` (:meth:`load`), equal to what
        :func:`~.iou.prepare_labels` makes of its label planes, or None where it holds none (or
        labels of another label count). Rebuilt from the combinations: ``rows = table[combo]``
        ``[N * P, K]`` (as :func:`~.iou.label_combos` guarantees) and ``flat`` its ``[N, K, P]`` view."""
        from unitscope.dissect.iou import BatchLabels

        if record is None or "labels.combo" not in record:
            return None
        h, w, count = (int(v) for v in record["labels.size"])
        if count != num_labels:
            return None
        combo = torch.from_numpy(record["labels.combo"].astype(np.int32)).to(device)
        table = torch.from_numpy(record["labels.table"].astype(np.int64)).to(device)
        rows = table.to(torch.int32).index_select(0, combo)  # [N * P, K] int32, as label_rows gives it
        n, k = len(rows) // (h * w), table.shape[1]
        return BatchLabels(
            torch.from_numpy(record["labels.image_labels"]).to(device),
            rows.view(n, h * w, k).permute(0, 2, 1),  # [N, K, P]
            rows,
            combo,
            table,
            torch.from_numpy(record["labels.present"]).to(device),
            torch.from_numpy(record["labels.label_area"]).to(device),
            (h, w),
            num_labels,
        )

    def remove(self) -> None:
        self._held.clear()
        self._held_bytes = self.used = 0
        shutil.rmtree(self.folder, ignore_errors=True)


def _cat(parts: list[torch.Tensor], dtype: Any) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=dtype)
    return torch.cat([p.reshape(-1) for p in parts]).cpu().numpy().astype(dtype)
