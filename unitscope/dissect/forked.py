"""One call in a process forked early, while the parent's heap is small, and run later.

    child = ForkedCall(draw_strips)     # forked now: the child waits for its argument
    ...                                 # the parent goes on (pass 1 grows its heap meanwhile)
    child.send(job)                     # draw_strips(job) starts in the child
    ...                                 # the parent goes on (passes 2 and 3)
    paths = child.result()              # its return value, or its error raised here
    child.stop()                        # at any point: ended and reaped (a no-op once it has been)

The dissection's exemplar strips run this way beside passes 2 and 3 (:mod:`.engine`): drawing them
in a process of their own keeps their Python work off the passes' interpreter lock, and forking
before pass 1, not at its end, gives a child whose copy-on-write pages the parent barely touches
(a fork at pass 1's end cost the parent 64,000-77,000 page faults against 13,000).

Forking a process with threads is safe only for what the child does not share with them. The child
runs torch at one thread (an OpenMP pool does not survive a fork: its threads are not in the child),
freezes the garbage collector (the parent's objects are never collected, so no finalizer of theirs
runs in the child, and their pages are not touched), and dies with the thread that forked it (Linux).
Only on Linux (:meth:`ForkedCall.available`); elsewhere callers use a thread.
"""

from __future__ import annotations

import ctypes
import gc
import os
import pickle
import signal
import struct
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import torch

_SIZE = struct.Struct("<Q")
_PR_SET_PDEATHSIG = 1


class ChildTraceback(Exception):
    """The traceback of an error raised in the child: the ``__cause__`` of the error re-raised in the parent."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n" + self.text


class ForkedCall:
    """``fn(arg)`` in a child process forked here, run once :meth:`send` hands it ``arg``."""

    @staticmethod
    def available() -> bool:
        """Whether this platform forks safely enough for it: Linux (macOS's system libraries
        are not fork-safe once threads ran, and Windows has no fork)."""
        return sys.platform.startswith("linux") and hasattr(os, "fork")

    def __init__(self, fn: Callable[[Any], Any], name: str = "child") -> None:
        """Fork the child now; an :class:`OSError` where the system gives no process (or pipe)."""
        self.name = name
        self.returncode: int | None = None  # once reaped: the exit code, or -signal (as subprocess's)
        for stream in (sys.stdout, sys.stderr):  # else the child's first flush prints it again
            stream.flush()
        job_r, job_w = os.pipe()
        out_r, out_w = os.pipe()
        parent = os.getpid()
        try:
            with warnings.catch_warnings():  # Python 3.12+ warns on any fork beside threads: see the module
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:  # no process to be had (a memory limit, a process limit): the caller's fallback
            for fd in (job_r, job_w, out_r, out_w):
                os.close(fd)
            raise
        if pid == 0:  # pragma: no cover - the child; measured by what it sends back
            os.close(job_w)
            os.close(out_r)
            _child(fn, job_r, out_w, parent)
        os.close(job_r)
        os.close(out_w)
        os.read(out_r, 1)  # the child is set to die with this thread (nothing: it died already)
        self.pid, self._job, self._out = pid, job_w, out_r
        self._lock = threading.Lock()  # the reaping: stop() and result() may be in two threads
        self._waiting = False  # a result() is reading the child's reply (and reaps it)

    def send(self, arg: Any) -> None:
        """Start ``fn(arg)`` in the child (``arg`` pickled). A child that already ended is reported by :meth:`result`."""
        data = pickle.dumps(arg, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            _write_all(self._job, _SIZE.pack(len(data)) + data)
        except BrokenPipeError:
            pass

    def result(self) -> Any:
        """Wait for the child (in any one thread, once): ``fn``'s return value, or its error raised
        here (its traceback the cause); a child that ended without a result (killed, or stopped by
        :meth:`stop`) raises :class:`ChildProcessError`."""
        with self._lock:
            self._waiting = self.returncode is None
        data = _read_message(self._out) if self._waiting else None
        self._reap()
        if data is None:
            raise ChildProcessError(f"the {self.name} process (pid {self.pid}) ended without a result: {self._ended()}")
        ok, value, text = pickle.loads(data)
        if ok:
            return value
        raise value from ChildTraceback(text)

    def stop(self) -> None:
        """End the child at once (SIGKILL), in any state; it is reaped here, or by the
        :meth:`result` another thread is waiting in. Nothing once it has been reaped."""
        with self._lock:
            if self.returncode is not None:
                return
            os.kill(self.pid, signal.SIGKILL)  # a zombie until reaped: the pid is still its own
            if not self._waiting:
                self._reap_locked()

    def _reap(self) -> None:
        with self._lock:
            self._reap_locked()

    def _reap_locked(self) -> None:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
            os.close(self._job)
            os.close(self._out)

    def _ended(self) -> str:
        code = self.returncode
        assert code is not None
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _child(fn: Callable[[Any], Any], job: int, out: int, parent: int) -> None:  # pragma: no cover - in the child
    """The child's whole life: wait for the argument, call, send back ``(ok, value or error, traceback)``, exit."""
    code = 1
    try:
        gc.freeze()  # the parent's objects: never collected here, their pages left alone
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent's handlers are not the child's
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _die_with(parent)
        torch.set_num_threads(1)
        os.write(out, b"+")  # ready: the parent may let the thread that forked it end
        data = _read_message(job)
        os.close(job)
        if data is not None:
            try:
                reply: tuple = (True, fn(pickle.loads(data)), "")
            except BaseException as e:  # noqa: BLE001 - sent to the parent, which raises it
                reply = (False, e, traceback.format_exc())
            try:
                message = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - an error (or value) that does not pickle: its text
                message = pickle.dumps((False, RuntimeError(f"{reply[1]!r}"), reply[2] or traceback.format_exc()))
            _write_all(out, _SIZE.pack(len(message)) + message)
        code = 0
    finally:
        os._exit(code)  # never back into the parent's code (its atexit, its test runner)


def _die_with(parent: int) -> None:  # pragma: no cover - in the child
    """SIGKILL this process when the thread that forked it ends (Linux's ``PR_SET_PDEATHSIG``, which
    a thread that ended before it was set never fires: the parent waits for the child's "ready"):
    a parent killed mid-run leaves no child drawing into its run folder."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exactly(fd: int, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read_message(fd: int) -> bytes | None:
    """One length-prefixed message, or None where the other end closed first."""
    head = _read_exactly(fd, _SIZE.size)
    return None if head is None else _read_exactly(fd, _SIZE.unpack(head)[0])
