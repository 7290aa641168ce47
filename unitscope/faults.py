"""Fault points: stop a run at a named place, deterministically, to test kill and resume.

    UNITSCOPE_FAULT="pass2.checkpoint.after=2:kill" unitscope dissect ...  # SIGKILL right after pass 2's 2nd checkpoint
    UNITSCOPE_FAULT="pass1.batch=3:raise@1" torchrun ... -m unitscope dissect ...  # only rank 1 raises, at its 3rd batch

    from unitscope.faults import fault
    fault("pass1.batch")          # the code names the place; nothing happens unless a rule arms it

``UNITSCOPE_FAULT`` holds ``;``-separated rules ``POINT=N:ACTION[@RANK]``: when this process reaches
``POINT`` for the ``N``-th time (N >= 1, counted from the start of the process), it carries out
``ACTION``:

- ``kill``: SIGKILL itself (nothing runs after it: no ``finally``, no flush, no atexit);
- ``term``: SIGTERM itself (what torchrun sends a rank when a peer has failed);
- ``raise``: raise :class:`FaultInjected` (an ordinary exception: ``finally`` blocks run).

``@RANK`` restricts the rule to the process whose ``RANK`` environment variable (set by
torchrun; 0 without it) is ``RANK``; without it every process counts and fires on its own. Before
it fires, the point prints one line to stderr (``unitscope fault: pass2.batch hit 2 on rank 0:
kill``), so a test can check where a run stopped.

The variable is read once, at the first :func:`fault` call or at :func:`load` (the CLI calls it at
start, so a bad rule fails before any work); an unknown point, a count below 1 or an unknown action
is a :class:`FaultSpecError` naming the close matches. :data:`POINTS` lists every point. Unset,
a point costs one global lookup and a truth test (``benchmarks/bench_faults.py``). Tests arm
points in-process with :func:`armed`.
"""

from __future__ import annotations

import difflib
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["ENV", "POINTS", "FaultInjected", "FaultSpecError", "armed", "fault", "load", "parse"]

ENV = "UNITSCOPE_FAULT"
ACTIONS = ("kill", "term", "raise")

# The tallies (unitscope.tally.tally's ``name``) and the points each one has.
TALLIES = {
    "tally": "a tally run without a name (tests, user code)",
    "pass1": "dissection pass 1 (thresholds, activation cache)",
    "pass2": "dissection pass 2 (top-k and IoU counts)",
    "pass3": "dissection pass 3 (the permutation null of candidate units)",
}
_TALLY_POINTS = {
    "batch": "the loop body has run for a batch (counted, not yet checkpointed)",
    "checkpoint.before": "a checkpoint is about to be written (side outputs flushed)",
    "checkpoint.after": "a checkpoint has just been written",
    "reduce": "every batch is done; the statistics are about to merge across ranks (torchrun)",
    "done": "the result and the done marker have been written",
}
POINTS: dict[str, str] = {
    **{f"{t}.{p}": f"{what}: {TALLIES[t]}" for t in TALLIES for p, what in _TALLY_POINTS.items()},
    "cache.write": "a batch's maps were written to the activation cache, not yet recorded as written",
    "cache.flush": "the activation cache's rows were made durable and recorded",
    "labels.write": "a batch's label planes were written to the label cache, not yet recorded as written",
    "pass1.merge": "torchrun: this rank has sketched its units over the cache, before the slices are gathered",
    "strips.write": "the exemplar strips are about to be written (in their own process where the early strips have one: "
    "a kill there ends that process, and the run fails after pass 3)",
    "catalog.commit": "a catalog transaction is about to commit (its rows not yet visible)",
    "train.step": "an organism's optimiser step is done, not yet checkpointed",
    "train.checkpoint.after": "an organism's training checkpoint has just been written",
    "gan.step": "a GAN step (D and G) is done, not yet checkpointed",
    "gan.checkpoint.after": "a GAN training checkpoint has just been written",
    "sae.step": "a sparse autoencoder's optimiser step is done, not yet checkpointed",
    "sae.checkpoint.after": "a sparse autoencoder's training checkpoint has just been written",
}


class FaultInjected(RuntimeError):
    """Raised by a fault point armed with ``raise``."""


class FaultSpecError(ValueError):
    """``UNITSCOPE_FAULT`` (or :func:`armed`'s rules) cannot be read."""


@dataclass(frozen=True)
class Rule:
    point: str
    hit: int
    action: str
    rank: int | None = None


def parse(spec: str) -> list[Rule]:
    """The rules of ``spec`` (the variable's text); raises :class:`FaultSpecError`."""
    rules = []
    for text in (part.strip() for part in spec.split(";")):
        if not text:
            continue
        point, eq, rest = text.partition("=")
        count, colon, action = rest.partition(":")
        action, at, rank = action.partition("@")
        point, count, action, rank = point.strip(), count.strip(), action.strip(), rank.strip()
        if not (eq and colon):
            raise FaultSpecError(
                f"{ENV} rule {text!r} is not POINT=N:ACTION[@RANK] (e.g. 'pass2.checkpoint.after=2:kill')"
            )
        if point not in POINTS:
            close = difflib.get_close_matches(point, POINTS, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise FaultSpecError(
                f"{ENV}: unknown fault point {point!r}{hint} (all points: {', '.join(sorted(POINTS))})"
            )
        if not count.isdigit() or int(count) < 1:
            raise FaultSpecError(f"{ENV} rule {text!r}: the hit N must be a whole number from 1, got {count!r}")
        if action not in ACTIONS:
            raise FaultSpecError(f"{ENV} rule {text!r}: unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        if at and not rank.isdigit():
            raise FaultSpecError(f"{ENV} rule {text!r}: @RANK must be a process rank (0, 1, ...), got {rank!r}")
        rules.append(Rule(point, int(count), action, int(rank) if at else None))
    return rules


_armed: dict[str, list[Rule]] | None = None  # None: not read yet; {}: nothing armed
_hits: dict[str, int] = {}


def load(spec: str | None = None) -> dict[str, list[Rule]]:
    """Read the rules (``spec``, default ``$UNITSCOPE_FAULT``) that apply to this process's rank,
    reset the hit counts, and return them by point."""
    global _armed
    rank = int(os.environ.get("RANK", "0") or 0)
    rules = parse(os.environ.get(ENV, "") if spec is None else spec)
    by_point: dict[str, list[Rule]] = {}
    for rule in rules:
        if rule.rank is None or rule.rank == rank:
            by_point.setdefault(rule.point, []).append(rule)
    _armed = by_point
    _hits.clear()
    return by_point


def fault(point: str) -> None:
    """A fault point: count a hit of ``point`` and fire any rule armed for this hit."""
    rules = _armed if _armed is not None else load()
    if rules and point in rules:
        _hit(point, rules[point])


def _hit(point: str, rules: list[Rule]) -> None:
    n = _hits[point] = _hits.get(point, 0) + 1
    for rule in rules:
        if rule.hit != n:
            continue
        rank = os.environ.get("RANK", "0")
        sys.stdout.flush()
        print(f"unitscope fault: {point} hit {n} on rank {rank}: {rule.action}", file=sys.stderr, flush=True)
        if rule.action == "raise":
            raise FaultInjected(f"fault point {point!r} fired at hit {n} ({ENV})")
        os.kill(os.getpid(), signal.SIGKILL if rule.action == "kill" else signal.SIGTERM)


@contextmanager
def armed(spec: str) -> Iterator[dict[str, list[Rule]]]:
    """Arm ``spec`` in this process for the block (hit counts start at 0), then restore what was armed."""
    global _armed
    saved, saved_hits = _armed, dict(_hits)
    try:
        yield load(spec)
    finally:
        _armed = saved
        _hits.clear()
        _hits.update(saved_hits)


def hits(point: str) -> int:
    """How often ``point`` was reached since the rules were loaded (only armed points are counted)."""
    return _hits.get(point, 0)
