"""Run statistics over a data set: batching, progress, checkpoints, resume, and torchrun shards.

    stat = CombinedStat(q=Quantile(), top=TopK(10))
    for index, images in tally(stat, dataset, batch_size=32, run_dir=run / "pass1",
                               key={"model": "lite0", "layer": "blocks.4"}, with_index=True):
        acts = model(images)                       # your code: [N, C, H, W]
        stat.q.add(acts)
        stat.top.add(acts, index)
    stat.q.quantiles(0.995)                        # the result, loaded from disk on a rerun

The loop body is yours; a batch counts as done once the body has run for it. Every
``checkpoint_every`` batches the statistic's state is written atomically into ``run_dir``; a run
started again with the same ``key`` resumes after the last checkpoint without loading the finished
batches, and its result is bit-identical to an uninterrupted run. A finished tally writes its
result and a marker; running it again yields nothing and leaves the loaded result in ``stat``.
Under ``torchrun`` each rank takes a contiguous run of whole batches (the batches a single
process would form, so anything a batch decides is the same), and at the end the shards are merged
so every rank holds the global result (``reduce`` replaces that merge where a statistic needs
another one).
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Subset

from unitscope.errors import UnitscopeError
from unitscope.faults import fault
from unitscope.runs import atomic_write_text, load_arrays, save_arrays
from unitscope.stats import Stat, stat_from_state_dict
from unitscope.stats.base import decode_str, encode_str

__all__ = [
    "TallyKeyError",
    "changed_key_fields",
    "check_resumable",
    "keep_freed_memory",
    "release_freed_memory",
    "rank_world",
    "reduce_across_ranks",
    "resolve_workers",
    "shard",
    "tally",
]

RESULT = "tally.result.safetensors"
DONE = "tally.done.json"
_META = "tally."  # prefix of the bookkeeping arrays stored next to the statistic's state


class TallyKeyError(UnitscopeError, ValueError):
    """``run_dir`` holds a tally made with different settings."""


def tally(
    stat: Stat,
    dataset: Dataset,
    *,
    batch_size: int = 32,
    num_workers: int | str = 0,
    pin_memory: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    run_dir: str | Path | None = None,
    key: Mapping[str, Any] | None = None,
    checkpoint_every: int = 50,
    on_checkpoint: Callable[[], None] | None = None,
    progress: bool = True,
    fresh: bool = False,
    with_index: bool = False,
    desc: str | None = None,
    reduce: Callable[[Stat], Any] | None = None,
    name: str = "tally",
) -> Iterator[Any]:
    """Yield the batches of ``dataset`` (in order) that ``stat`` has not seen yet.

    Yields ``batch``, or ``(index, batch)`` with ``with_index=True`` (``index``: the items'
    global positions in ``dataset``, LongTensor ``[B]``). ``num_workers``: DataLoader workers, or
    ``"auto"`` (:func:`resolve_workers`); ``pin_memory`` only takes effect where CUDA is. ``key``: JSON-able facts the result
    depends on (model, layer, data...); batch size, data set length and the statistic's
    configuration are added to it. ``on_checkpoint`` runs just before each checkpoint and before
    the final result is written (flush your own side outputs there). ``fresh=True`` discards what
    ``run_dir`` holds for this tally. ``reduce(stat)``: how the ranks' statistics become the global
    one on every rank (default :func:`reduce_across_ranks`); it runs once, after the last batch.
    ``name`` prefixes the tally's fault points (``{name}.batch``, ``{name}.checkpoint.before``/``.after``,
    ``{name}.reduce``, ``{name}.done``: :mod:`unitscope.faults`).
    """
    if batch_size < 1 or checkpoint_every < 1:
        raise ValueError("batch_size and checkpoint_every must be at least 1")
    keep_freed_memory()  # before the DataLoader forks its workers, which inherit it
    rank, world = rank_world()
    total_items = len(dataset)  # type: ignore[arg-type]
    lo, hi = shard(total_items, batch_size, rank, world)
    num_batches = -(-(hi - lo) // batch_size)
    full_key = _full_key(key, batch_size=batch_size, items=total_items, stat=stat)
    folder = Path(run_dir) if run_dir is not None else None
    checkpoint = folder / f"tally.checkpoint.rank{rank}.safetensors" if folder else None

    done = _resume(stat, folder, full_key, fresh) if folder is not None else 0
    if done is None:  # finished earlier: the result is loaded
        return

    start = min(hi, lo + done * batch_size)
    loader = DataLoader(
        Subset(dataset, range(start, hi)),  # finished batches are skipped, never loaded
        batch_size=batch_size,
        shuffle=False,
        num_workers=resolve_workers(num_workers),
        collate_fn=collate_fn,
        pin_memory=pin_memory and torch.cuda.is_available(),
    )
    bar = _progress_bar(num_batches, done, progress and rank == 0, desc)
    at_batch, before, after = f"{name}.batch", f"{name}.checkpoint.before", f"{name}.checkpoint.after"
    try:
        for batch in loader:
            first = lo + done * batch_size
            if with_index:
                yield torch.arange(first, min(first + batch_size, hi)), batch
            else:
                yield batch
            done += 1
            bar.update(1)
            fault(at_batch)
            if checkpoint is not None and done % checkpoint_every == 0 and done < num_batches:
                if on_checkpoint is not None:
                    on_checkpoint()
                fault(before)
                _save_checkpoint(checkpoint, stat, full_key, done, world)
                fault(after)
    finally:
        bar.close()

    if on_checkpoint is not None:
        on_checkpoint()
    fault(f"{name}.reduce")
    (reduce or reduce_across_ranks)(stat)
    if folder is not None:
        _finish(stat, folder, full_key, done)
        fault(f"{name}.done")


def _resume(stat: Stat, folder: Path, full_key: dict[str, Any], fresh: bool) -> int | None:
    """Load what ``folder`` holds into ``stat``: None for a finished tally, else the number of
    batches its checkpoint covers (0 without one)."""
    rank, world = rank_world()
    checkpoint = folder / f"tally.checkpoint.rank{rank}.safetensors"
    if fresh:
        _discard(folder, rank)
    if (folder / DONE).exists():
        _check_key(folder, _saved_key(folder, rank), full_key)
        stat.load_state_dict(_strip(load_arrays(folder / RESULT)))
        return None
    if not checkpoint.exists():
        return 0
    saved = load_arrays(checkpoint)
    _check_key(folder, _saved_key(folder, rank), full_key)
    saved_world = int(saved[_META + "world_size"].reshape(-1)[0])
    if saved_world != world:
        raise TallyKeyError(
            f"{checkpoint} was written by a run with {saved_world} processes, this one has "
            f"{world}; resume with the same number, or start over with fresh=True (--fresh)"
        )
    stat.load_state_dict(_strip(saved))
    return int(saved[_META + "batches"].reshape(-1)[0])


def _finish(stat: Stat, folder: Path, full_key: dict[str, Any], done: int) -> None:
    """Write the result and the marker (rank 0), then drop this rank's checkpoint."""
    rank, world = rank_world()
    if rank == 0:
        save_arrays(folder / RESULT, stat.state_dict())
        atomic_write_text(folder / DONE, json.dumps({"key": full_key, "batches": done}, indent=1))
    if world > 1:
        dist.barrier()
    (folder / f"tally.checkpoint.rank{rank}.safetensors").unlink(missing_ok=True)


def check_resumable(
    stat: Stat, items: int, *, run_dir: str | Path, key: Mapping[str, Any] | None = None, batch_size: int = 32
) -> None:
    """Raise :class:`TallyKeyError` now if ``run_dir`` holds a tally of ``stat`` over ``items``
    items made with other settings; reads only, so a caller can refuse a rerun before it writes
    anything. The arguments are those :func:`tally` would get."""
    folder = Path(run_dir)
    saved = _saved_key(folder, rank_world()[0])
    if saved is not None:
        _check_key(folder, saved, _full_key(key, batch_size=batch_size, items=items, stat=stat))


def changed_key_fields(
    stat: Stat, items: int, *, run_dir: str | Path, key: Mapping[str, Any] | None = None, batch_size: int = 32
) -> set[str] | None:
    """The key fields in which what ``run_dir`` holds differs from a tally with these arguments
    (``"stat"``: the statistic's configuration); None when it holds nothing. Reads only."""
    saved = _saved_key(Path(run_dir), rank_world()[0])
    if saved is None:
        return None
    now = _full_key(key, batch_size=batch_size, items=items, stat=stat)
    return {name for name in set(saved) | set(now) if saved.get(name) != now.get(name)}


def reduce_across_ranks(stat: Stat) -> Stat:
    """Under torch.distributed, merge every rank's ``stat`` (in rank order) so that all ranks hold
    the global result; without it, return ``stat`` unchanged. Uses ``all_gather_object``, so it
    works over gloo (CPU) as well as NCCL."""
    rank, world = rank_world()
    if world == 1:
        return stat
    states: list[Any] = [None] * world
    dist.all_gather_object(states, stat.state_dict())
    merged = stat_from_state_dict(states[0])
    for sd in states[1:]:
        merged.merge(stat_from_state_dict(sd))
    stat.load_state_dict(merged.state_dict())
    return stat


_KEPT: bool | None = None  # keep_freed_memory's answer, once per process


def keep_freed_memory() -> bool:
    """Let glibc keep the forward pass's large buffers for the next batch instead of returning them
    to the OS; returns whether it took effect (once per process; ``UNITSCOPE_MALLOC=system`` opts out).

    glibc serves a block over ``M_MMAP_THRESHOLD`` (at most 32 MB when it adapts) with its own
    ``mmap`` and unmaps it when it is freed, so every batch of a CNN's early layers (Lite0 at batch
    50: maps of 80-240 MB) faults its pages in and zeroes them again: about 10**6 minor faults and
    half the CPU time of a batch at one thread (``benchmarks/bench_dissect.py``). With the block kept
    on the heap and the heap not trimmed, the second batch reuses the first one's pages. Resident
    memory then stays at the peak of one batch instead of dropping between batches. Other C
    libraries (macOS, musl) are left as they are.

    Threads started after the call (the passes' layer threads, the strips) allocate from that same
    heap (``M_ARENA_MAX`` 1): each thread would otherwise get an arena of its own, whose freed blocks
    go back to the OS when a heap of it empties, so every new thread faulted its buffers in again
    (``bench_dissect.py``, blocks.6 after pass 1: about 200,000 minor faults and 4.7-6.6 s CPU, against
    80,000-115,000 and 4.3-4.7 s with one heap; the kernel's zeroing of them was up to a fifth of it).
    """
    global _KEPT
    if _KEPT is None:
        _KEPT = False
        if os.environ.get("UNITSCOPE_MALLOC", "") != "system" and platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):
                return False
            m_trim_threshold, m_mmap_threshold, m_mmap_max, m_arena_max = -1, -3, -4, -8
            big = 2**30
            # a threshold above heap_max/2 is refused by glibc < 2.36: then no mmap at all
            mapped = mallopt(m_mmap_threshold, big) == 1 or mallopt(m_mmap_max, 0) == 1
            _KEPT = mapped and mallopt(m_trim_threshold, big) == 1
            if _KEPT:  # threads started from now on allocate from the main heap too (see above)
                mallopt(m_arena_max, 1)
    return _KEPT


def release_freed_memory() -> bool:
    """Give what the heap holds free back to the OS (glibc's ``malloc_trim(0)``) where
    :func:`keep_freed_memory` kept it; returns whether it ran. A dissection calls it when it starts:
    kept, the freed buffers of one run stay in the process (resident memory 2.3 GB after the demo's
    three layers, 3.9 GB after a second run), and the heap they fragment made each later run in the
    same process slower (the demo's layers at 1,000 images, three runs in a row: 41.4, 44.0 and 50.4 s;
    trimmed before the second and third 43.5, 39.4 and 38.8 s). Call it after a run to free that
    memory at once (50-180 ms after a ``blocks.6`` run; 4 ms for a 2 GB block alone)."""
    if not _KEPT:
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def resolve_workers(workers: int | str, cores: int | None = None, local_world: int | None = None) -> int:
    """DataLoader workers for ``workers``: a number (or its text) as given; ``"auto"``: one core
    left to the main process, at most 8 (more rarely pays: decoding is rarely the bottleneck
    beyond that), shared among torchrun's ranks on this machine (``LOCAL_WORLD_SIZE``); 0 on one core."""
    if isinstance(workers, str) and workers.strip().lower() != "auto":
        try:
            workers = int(workers)
        except ValueError:
            raise ValueError(
                f"workers must be 'auto' or a number of processes (0 = load in the main process), got {workers!r}"
            ) from None
    if isinstance(workers, int):
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, got {workers}")
        return workers
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if local_world is None:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return min(cores - 1, 8) // max(1, local_world) if cores > 1 else 0


def shard(items: int, batch_size: int, rank: int, world: int) -> tuple[int, int]:
    """Items ``[lo, hi)`` of ``rank``: a contiguous run of whole batches of ``batch_size`` (the
    last one may be short), as even as whole batches allow."""
    batches = -(-items // batch_size)
    return (min(items, batches * rank // world * batch_size), min(items, batches * (rank + 1) // world * batch_size))


# -- helpers ------------------------------------------------------------------------------------


def rank_world() -> tuple[int, int]:
    """``(rank, world size)`` under torch.distributed, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _full_key(key: Mapping[str, Any] | None, **facts: Any) -> dict[str, Any]:
    full = dict(key or {})
    facts["stat"] = repr(facts["stat"])
    for name, value in facts.items():
        if name in full and full[name] != value:
            raise ValueError(f"key[{name!r}]={full[name]!r} contradicts the tally's own {name}={value!r}")
        full[name] = value
    try:  # normalise through JSON, as it will be compared with a saved copy
        return json.loads(json.dumps(full, sort_keys=True))
    except TypeError as e:
        raise TypeError(f"tally key must be JSON-serialisable (str, int, float, lists, dicts): {e}") from e


def _saved_key(folder: Path, rank: int) -> dict[str, Any] | None:
    """The key of the finished tally in ``folder``, else of this rank's checkpoint, else None."""
    if (folder / DONE).exists():
        return json.loads((folder / DONE).read_text())["key"]
    checkpoint = folder / f"tally.checkpoint.rank{rank}.safetensors"
    if checkpoint.exists():
        from safetensors import safe_open

        with safe_open(str(checkpoint), framework="numpy") as f:
            return json.loads(decode_str(f.get_tensor(_META + "key")))
    return None


def _check_key(folder: Path, saved: dict[str, Any] | None, now: dict[str, Any]) -> None:
    if saved == now:
        return
    saved = saved or {}
    diffs = [
        f"  {name}: saved {saved.get(name, '<absent>')!r}, now {now.get(name, '<absent>')!r}"
        for name in sorted(set(saved) | set(now))
        if saved.get(name) != now.get(name)
    ]
    raise TallyKeyError(
        f"{folder} holds a tally made with different settings:\n" + "\n".join(diffs) + "\n"
        "Use another run folder, or start over with fresh=True (CLI: --fresh)."
    )


def _save_checkpoint(path: Path, stat: Stat, key: dict[str, Any], done: int, world: int) -> None:
    arrays = dict(stat.state_dict())
    arrays[_META + "key"] = encode_str(json.dumps(key, sort_keys=True))
    arrays[_META + "batches"] = np.array(done, dtype=np.int64)
    arrays[_META + "world_size"] = np.array(world, dtype=np.int64)
    save_arrays(path, arrays)  # atomic: a kill leaves the previous checkpoint intact


def _strip(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in arrays.items() if not k.startswith(_META)}


def _discard(folder: Path, rank: int) -> None:
    names = [f"tally.checkpoint.rank{rank}.safetensors"] + ([DONE, RESULT] if rank == 0 else [])
    for name in names:
        (folder / name).unlink(missing_ok=True)
    if rank_world()[1] > 1:
        dist.barrier()  # nobody reads the marker before rank 0 has removed it


def _progress_bar(total: int, initial: int, enabled: bool, desc: str | None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="batch", dynamic_ncols=True)
