"""Dissection under ``torchrun``: shards, the exact pass-1 merge, and who writes what.

    torchrun --standalone --nproc_per_node 2 -m unitscope dissect --model M --data D --out runs/x

From Python, join a process group first (``torch.distributed.init_process_group("gloo")``, or
:func:`start_process_group`) and call :func:`~unitscope.dissect.dissect` on every rank.

Every rank runs the same engine (:func:`~unitscope.dissect.engine.dissect_sources`). The tally
driver gives each rank a contiguous run of whole batches (the batches one process would form) and
merges the statistics in rank order after each pass. Top-k, IoU counts, null and rotation counts
merge exactly. A quantile sketch of two halves of the data is not the sketch of the whole, so
pass 1 does not sketch per rank: each rank writes its images' maps into the shared activation
cache, and then every rank sketches a slice of each layer's units over *all* cached maps, in the
single-process batch order (:class:`~unitscope.stats.QuantileSlice`); the slices join into
exactly the single-process thresholds. Without the cache (``cache_gb`` too small) pass 1 falls
back to merging per-rank sketches, which agree with one process only within the sketch's rank
error (a warning says so). Only rank 0 writes shared files (config, arrays, strips, catalog,
``layers.json``, the report); each rank keeps its own tally checkpoints, cache row record and
bad-image list, so nothing clashes and a rerun with the same number of processes resumes.
"""

from __future__ import annotations

import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from unitscope.faults import fault
from unitscope.stats import CombinedStat, QuantileSlice
from unitscope.tally import rank_world, reduce_across_ranks

if TYPE_CHECKING:
    from unitscope.dissect.engine import _Run

__all__ = [
    "ExactPass1",
    "barrier",
    "end_process_group",
    "gather_objects",
    "is_main",
    "pass1_reduce",
    "peers_checked",
    "rank_world",
    "start_process_group",
]


def barrier() -> None:
    """Wait for every rank (nothing without torch.distributed)."""
    if rank_world()[1] > 1:
        torch.distributed.barrier()


def is_main() -> bool:
    """Whether this process writes the run folder's shared files (rank 0, or no torchrun)."""
    return rank_world()[0] == 0


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` without torch.distributed)."""
    world = rank_world()[1]
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


class ExactPass1:
    """The pass-1 ``reduce`` of a multi-process run with an activation cache: every rank sketches
    its slice of every layer's units over all cached maps; the slices join into the whole."""

    def __init__(self, run: _Run):
        self.run = run

    def __call__(self, stat: CombinedStat) -> None:
        run, cache = self.run, self.run.cache
        assert cache is not None
        cache.flush(durable=True)  # ranks may run on other machines: their boots differ
        barrier()
        if is_main():
            cache.mark_complete(durable=True)
        barrier()
        cache.gather_rows()
        if not cache.complete:
            raise RuntimeError(
                f"the activation cache in {cache.folder} misses rows that an earlier, interrupted run wrote "
                "without a cache; rerun with --fresh (or with the same --cache-gb as that run)"
            )
        parts = self._slices(stat)
        self._replay(parts)
        fault("pass1.merge")
        states = gather_objects({name: part.state_dict() for name, part in parts.items()})
        for name in (n for layer in run.layers for n in self._names(layer)):
            pieces = [QuantileSlice.from_state_dict(s[name]) for s in states if name in s]
            stat[name].load_state_dict(QuantileSlice.join(pieces).state_dict())

    def _names(self, layer: str) -> list[str]:
        """The layer's sketches: axis-aligned units, then each rotation."""
        t = self.run.tag[layer]
        return [f"{t}_q"] + [f"{t}_r{r}_q" for r in range(self.run.opts.rotations)]

    def _slices(self, stat: CombinedStat) -> dict[str, QuantileSlice]:
        """This rank's share of every layer's units (none where a layer has fewer units than ranks)."""
        rank, world = rank_world()
        parts = {}
        for layer in self.run.layers:
            c = self.run.shapes[layer][0]
            lo, hi = c * rank // world, c * (rank + 1) // world
            if lo == hi:
                continue
            for name in self._names(layer):
                q = stat[name]
                parts[name] = QuantileSlice(c, lo, hi, q.resolution, q.seed, self.run.opts.device)
        return parts

    def _replay(self, parts: dict[str, QuantileSlice]) -> None:
        """Feed every cached map to the slices in the batches, and the order, one process used."""
        from unitscope.dissect.engine import add_layer_samples

        run, cache, dev = self.run, self.run.cache, self.run.opts.device
        bs = run.opts.batch_size
        for start in range(0, run.n, bs):
            pos = np.arange(start, min(start + bs, run.n))
            pos = pos[cache.rows[pos] == cache.WRITTEN]
            if not len(pos):
                continue
            for layer in run.layers:
                t = run.tag[layer]
                if f"{t}_q" not in parts:
                    continue
                add_layer_samples(
                    parts, t, torch.from_numpy(cache.read(layer, pos)).to(dev), run.rots[layer], run.values[layer].post
                )


def pass1_reduce(run: _Run) -> Any:
    """The ``reduce`` of pass 1: exact over the cache under torchrun, the usual merge otherwise."""
    if rank_world()[1] == 1:
        return None
    if run.cache is not None:
        return ExactPass1(run)
    _refuse_a_sliced_checkpoint(run)
    warnings.warn(
        "the activation cache is off (--cache-gb too small), so pass-1 sketches of each rank's images "
        "are merged: thresholds agree with a single-process run only within the sketch's rank error "
        "(about 0.25/4096 at the dissection quantile)",
        stacklevel=2,
    )
    return reduce_across_ranks


def start_process_group(device: str, timeout_s: float) -> tuple[str, bool]:
    """Under torchrun (``WORLD_SIZE`` > 1 in the environment) join the process group: gloo on CPU,
    NCCL on CUDA with this rank's own GPU (``cuda`` becomes ``cuda:LOCAL_RANK``). Returns the
    device to use and whether a group was started here (the caller ends it with
    :func:`end_process_group`). A rank that waits longer than ``timeout_s`` at a collective (a
    peer died or hangs) raises instead of hanging."""
    import os
    from datetime import timedelta

    dist = torch.distributed
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device, False
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.device(device).type == "cuda"
    if cuda:
        device = f"cuda:{local}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    signal.signal(signal.SIGTERM, _stopped_by_launcher)
    return device, True


def _stopped_by_launcher(signum: int, frame: Any) -> None:
    from unitscope.errors import RunError

    rank, world = rank_world()
    raise RunError(
        f"process {rank} of {world} was stopped (SIGTERM), most likely by torchrun because another "
        "process failed: see torchrun's 'Root Cause' report. Finished batches are checkpointed: "
        "rerun the same command to resume"
    )


@contextmanager
def peers_checked() -> Iterator[None]:
    """Turn a collective that fails because a peer died or hung (gloo: "Connection closed by peer",
    or the process group's timeout) into one clear error."""
    try:
        yield
    except RuntimeError as exc:
        if not torch.distributed.is_initialized() or not _peer_failure(exc):
            raise
        from unitscope.errors import RunError

        rank, world = rank_world()
        raise RunError(
            f"process {rank} of {world} lost contact with another process at a merge ({str(exc)[:160]}); "
            "it probably died: see the other processes' errors. Finished batches are checkpointed: "
            "rerun the same command to resume"
        ) from exc


def _peer_failure(exc: BaseException) -> bool:
    dist_error = getattr(torch.distributed, "DistError", ())
    text = str(exc).lower()
    return isinstance(exc, dist_error) or any(
        w in text for w in ("closed by peer", "timed out", "timeout", "gloo", "nccl")
    )


def end_process_group() -> None:
    """Leave the process group :func:`start_process_group` joined."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _refuse_a_sliced_checkpoint(run: _Run) -> None:
    """A pass-1 checkpoint written with the cache on holds no sketches (they come from the cache at
    the end): resuming it with the cache off would lose its batches' samples."""
    from unitscope.runs import load_arrays

    path = run.run_dir / "pass1" / f"tally.checkpoint.rank{rank_world()[0]}.safetensors"
    if run.redo.get(1) or not path.exists():
        return
    saved = load_arrays(path)
    if int(saved["tally.batches"].reshape(-1)[0]) > 0 and int(saved["l0_q.count"].reshape(-1)[0]) == 0:
        from unitscope.tally import TallyKeyError

        raise TallyKeyError(
            f"{path} was written with the activation cache on, which this run has off; resume "
            "with the same --cache-gb as before, or start over with --fresh"
        )
