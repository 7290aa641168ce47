"""The dissection's work side by side where cores would sit idle: layers in threads, and pass 1's
statistics behind the next forward pass.

    with LayerThreads(["blocks.4", "blocks.6"]) as each:
        counts = each(count_layer)        # {layer: count_layer(layer)}, in threads when cores are spare
    behind = Behind()
    behind.submit(sketch, batch_maps)     # runs while the caller goes on (the next forward pass)
    behind.wait()                         # before a checkpoint: every submitted call has run
    with Side() as side:                  # on leaving: every call has run; the first error raised
        labels = side.submit(prepare, planes)  # a Future: pass 2's labels while the layers find masks
    gate = Gate(1)                        # the strips one group at a time beside passes 2 and 3
    with gate: draw(group)                # (in each strip thread) at most gate.limit at once
    gate.widen()                          # the passes done: every strip thread at once

Each layer's statistics are touched by one thread only and every call of a layer runs in batch
order, so the results are bit-identical to a serial run; only the wall time changes. PyTorch's
kernels and NumPy's sort release the GIL, so threads use cores that a run at fewer torch threads
than cores leaves idle (``bench_dissect.py --threads 1``: the forward pass holds one core of two).
With every core busy in torch's own threads (``spare_cores() < 2``) everything runs inline.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import torch

T = TypeVar("T")
C = TypeVar("C", bound="_Closing")


def spare_cores(torch_threads: int | None = None) -> int:
    """How many torch-sized thread teams the cores this process may use hold (at least 1):
    ``cores // (torch_threads * processes)``, torch's threads now by default, the processes of this
    machine under ``torchrun`` (``LOCAL_WORLD_SIZE``) sharing its cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    threads = torch.get_num_threads() if torch_threads is None else torch_threads
    return max(1, cores // (max(1, threads) * local))


class LayerThreads:
    """``each(fn)`` -> ``{layer: fn(layer)}``, and ``each.map(fn, each.parts(units))`` over parts of
    the layers' units, in ``threads`` threads (the spare cores, at least one per layer) where
    :func:`spare_cores` is at least 2 (or ``threads`` says so), else one after the other. An
    exception in any call is raised after every call of the batch has ended.

    ``one_torch_thread``: torch at one thread until the context ends (:class:`OneTorchThread`),
    and the layers (and a :class:`Side` thread) take the cores instead."""

    def __init__(self, layers: Sequence[str], threads: int | None = None, one_torch_thread: bool = False) -> None:
        self.layers = list(layers)
        self._one = OneTorchThread(one_torch_thread)
        self._one.__enter__()
        spare = spare_cores()
        self.threads = threads if threads is not None else (min(16, max(spare, len(self.layers))) if spare >= 2 else 1)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="dissect-layer") if self.threads > 1 else None

    def __call__(self, fn: Callable[[str], T]) -> dict[str, T]:
        return dict(zip(self.layers, self.map(fn, self.layers)))

    def map(self, fn: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
        """``[fn(x) for x in items]``, in the threads where there are any; every call has ended
        before the first error is raised (no call outlives the batch)."""
        if self._pool is None:
            return [fn(x) for x in items]
        futures = [self._pool.submit(fn, x) for x in items]
        for f in futures:
            f.exception()
        return [f.result() for f in futures]

    def parts(self, units: dict[str, int]) -> list[tuple[str, int, int]]:
        """Each layer's units ``{layer: C}`` cut into contiguous ``(layer, lo, hi)`` parts, as many per
        layer as there are threads, so that one layer (or one large one) keeps every thread busy:
        a layer's masks and counts are per unit, its parts counted side by side and joined in order."""
        out = []
        for layer in self.layers:
            c = units[layer]
            k = max(1, min(self.threads, c))
            cuts = [c * i // k for i in range(k + 1)]
            out += [(layer, lo, hi) for lo, hi in zip(cuts, cuts[1:])]
        return out

    def __enter__(self) -> LayerThreads:
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        finally:
            self._one.__exit__()


class GateClosed(RuntimeError):
    """Raised on entering a :class:`Gate` that was closed: the work behind it is no longer wanted."""


class Gate:
    """At most ``limit`` holders at once (``with gate:``) until :meth:`widen` lifts the limit
    (``None``: no limit). The exemplar strips start after pass 1 one group at a time, beside
    passes 2 and 3, and take every core once those are done (:meth:`widen`); :meth:`close` turns
    away every later holder (:class:`GateClosed`), so work queued behind it ends at once."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.closed = False
        self._held = 0
        self._cond = threading.Condition()

    def __enter__(self) -> Gate:
        with self._cond:
            self._cond.wait_for(lambda: self.closed or self.limit is None or self._held < self.limit)
            if self.closed:
                raise GateClosed("the work behind this gate was stopped")
            self._held += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._cond:
            self._held -= 1
            self._cond.notify()

    def widen(self, limit: int | None = None) -> None:
        """Raise the limit to ``limit`` (``None``: none); waiting holders go in at once."""
        with self._cond:
            self.limit = limit
            self._cond.notify_all()

    def close(self) -> None:
        """Turn away every holder from now on (those inside finish)."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class OneTorchThread:
    """``with OneTorchThread():`` torch at one intra-op thread inside (``enabled=False``: as it was).
    For work of many small kernels (finding and counting masks, drawing strips), where torch's
    threads wait for each other more than they work: pass 2 of one layer (``bench_dissect.py
    --images 1000``, blocks.6, 2 threads) took 7.1 s CPU (3.8 s wall) at 2 torch threads and
    4.5 s (2.6 s wall) at one with its :class:`Side` thread, and on a loaded 2-core machine 10x
    the CPU time. Inside, :func:`spare_cores` counts the cores this frees for threads of our own."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._saved: int | None = None

    def __enter__(self) -> OneTorchThread:
        if self.enabled and torch.get_num_threads() > 1:
            self._saved = torch.get_num_threads()
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._saved is not None:
            torch.set_num_threads(self._saved)
            self._saved = None


class _Closing:
    """``with`` closes: the thread's error is raised where the block ended normally, dropped where
    the block is already raising its own (the block's error wins)."""

    def close(self, raise_errors: bool = True) -> None:
        raise NotImplementedError

    def __enter__(self: C) -> C:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: Any) -> None:
        self.close(raise_errors=exc_type is None)


class Behind(_Closing):
    """Calls that run one at a time, in order, in one background thread while the caller goes on
    (inline where :func:`spare_cores` is below 2, or ``enabled=False``). ``submit`` first waits for
    the call before it, so at most one is pending (one batch's maps held besides the current one);
    ``wait`` returns once every call has run and raises the first error any of them raised."""

    def __init__(self, enabled: bool | None = None) -> None:
        on = spare_cores() >= 2 if enabled is None else enabled
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dissect-behind") if on else None
        self._pending: Future | None = None

    @property
    def background(self) -> bool:
        """Whether the calls run in the background thread (else inline, in the caller's)."""
        return self._pool is not None

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.wait()
        if self._pool is None:
            fn(*args)
        else:
            self._pending = self._pool.submit(fn, *args)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self, raise_errors: bool = True) -> None:
        """Wait for the pending call and end the thread; its error is raised with ``raise_errors``
        (else dropped: the caller is already raising one)."""
        try:
            self.wait()
        except BaseException:
            if raise_errors:
                raise
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


class Side(_Closing):
    """A pass's side work in one background thread where a core is spare (inline otherwise, or
    with ``enabled=False``): ``submit(fn, *args)`` returns a :class:`~concurrent.futures.Future`
    at once, and calls run one at a time in the order submitted. Pass 2 prepares a batch's labels
    there while the layers find their masks (which need no labels), and writes the batch's mask
    record while the next batch is read. ``close`` waits for every call and raises the first error."""

    def __init__(self, enabled: bool | None = None) -> None:
        on = spare_cores() >= 2 if enabled is None else enabled
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dissect-side") if on else None
        self._futures: list[Future] = []

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        self._futures = [f for f in self._futures if not f.done() or f.exception() is not None]
        if self._pool is not None:
            future = self._pool.submit(fn, *args)
        else:
            future = Future()
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # noqa: BLE001 - raised by result(), as a thread's would be
                future.set_exception(e)
        self._futures.append(future)
        return future

    def close(self, raise_errors: bool = True) -> None:
        """Wait for every call and end the thread; the first error is raised with ``raise_errors``."""
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            if raise_errors:
                for f in self._futures:
                    f.result()
        finally:
            self._futures = []
