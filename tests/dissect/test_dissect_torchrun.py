"""Dissection under torchrun (2 CPU processes on gloo): the same catalog as one process, resume
after kills, a dead rank fails the run; the exact pass-1 sketch; ``--workers auto``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
MODEL = f"{Path(__file__).parents[1] / 'helpers' / 'tiny_conv.py'}:tiny_conv"
ARGS = ["--batch-size", "5", "--rotations", "1", "--checkpoint-every", "1", "--no-progress", "--no-report"]


def test_quantile_slices_join_into_the_single_sketch_bit_for_bit() -> None:
    from unitscope.stats import Quantile, QuantileSlice, stat_from_state_dict

    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(4 + i % 3, 7, 3, 3, generator=g) * torch.arange(1, 8).view(1, 7, 1, 1) for i in range(40)]
    whole, first, second = Quantile(resolution=32), Quantile(resolution=32), Quantile(resolution=32)
    parts = [QuantileSlice(7, a, b, resolution=32) for a, b in [(0, 3), (3, 4), (4, 7)]]
    for i, x in enumerate(batches):
        whole.add(x)
        (first if i < 20 else second).add(x)
        for part in parts:
            part.add(x)
    assert len(whole._levels) > 3  # the sketch compacted many times
    joined = QuantileSlice.join([stat_from_state_dict(p.state_dict()) for p in parts])  # as ranks send them
    a, b = whole.state_dict(), joined.state_dict()
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    # what the slices avoid: sketches of two halves of the data, merged, are another sketch
    merged = first.merge(second)
    assert not torch.equal(merged.quantiles(0.995), whole.quantiles(0.995))
    with pytest.raises(ValueError, match="got a batch of 6"):
        parts[0].add(torch.zeros(2, 6))


def test_workers_auto_leaves_a_core_caps_at_8_and_shares_among_local_ranks() -> None:
    from unitscope.tally import resolve_workers

    assert [resolve_workers("auto", cores=c, local_world=1) for c in (1, 2, 4, 16, 64)] == [0, 1, 3, 8, 8]
    assert resolve_workers("auto", cores=16, local_world=2) == 4
    assert resolve_workers("auto", cores=2, local_world=2) == 0
    assert resolve_workers("3") == 3 and resolve_workers(0) == 0
    with pytest.raises(ValueError, match="'auto' or a number"):
        resolve_workers("many")
    with pytest.raises(ValueError, match="0 or more"):
        resolve_workers(-1)


# -- real torchrun runs -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from unitscope.world import make_world

    return make_world(tmp_path_factory.mktemp("world") / "w64", n=24, size=64, seed=3, workers=1, progress=False)


@pytest.fixture(scope="module")
def single(world, tmp_path_factory) -> Path:
    """The single-process run every torchrun run must equal."""
    out = tmp_path_factory.mktemp("single") / "run"
    done = subprocess.run(_dissect(world, out), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _env(fault: str = "") -> dict[str, str]:
    """``fault``: the run's UNITSCOPE_FAULT rules (unitscope.faults), none by default."""
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", UNITSCOPE_FAULT=fault)


def _dissect(world: Path, out: Path, procs: int = 0) -> list[str]:
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs else []
    return [
        sys.executable,
        *launch,
        "-m",
        "unitscope",
        "dissect",
        "--model",
        MODEL,
        "--data",
        str(world),
        "--out",
        str(out),
        *ARGS,
    ]


def _tables(run: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(run / "catalog.sqlite") as con:
        names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {n: sorted(con.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}


def assert_same_run(run: Path, reference: Path) -> None:
    """Every catalog table row by row (labels, IoUs, thresholds, p-values, exemplars), and every array."""
    from unitscope.runs import load_arrays

    mine, ref = _tables(run), _tables(reference)
    assert list(mine) == list(ref)
    assert len(ref["dissection"]) == 14 and len(ref["exemplars"]) == 140 and len(ref["rotations"]) == 4
    for name in ref:
        assert mine[name] == ref[name], name
    for path in sorted((reference / "arrays").glob("*.safetensors")):
        a, b = load_arrays(path), load_arrays(run / "arrays" / path.name)
        assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a), path.name
    # one run folder: nothing a rank kept for itself is left
    assert not [p.name for p in run.rglob("*rank*")]
    assert sorted(p.name for p in (run / "images").iterdir()) == sorted(
        p.name for p in (reference / "images").iterdir()
    )


@pytest.mark.slow
def test_torchrun_equals_one_process_through_a_dead_rank_and_a_kill_mid_pass_2(world, single, tmp_path) -> None:
    """Rank 1 dies in pass 1: the run fails at once with a clear message. A rerun resumes and is
    killed in pass 2; a third run finishes. The catalog equals the single-process one. The rank a
    fault point stops is stopped exactly there; torchrun stops the other one wherever it is."""
    run = tmp_path / "run"
    # 24 images in batches of 5: rank 0 takes batches 1-2, rank 1 batches 3-5; a checkpoint after each
    dead = subprocess.run(
        _dissect(world, run, procs=2),
        env=_env("pass1.checkpoint.after=1:kill@1"),
        capture_output=True,
        text=True,
        timeout=300,
    )  # the survivor must not hang
    err = dead.stderr
    assert dead.returncode != 0 and "unitscope fault: pass1.checkpoint.after hit 1 on rank 1: kill" in err, err[-3000:]
    assert "process 0 of 2 was stopped" in err or "process 0 of 2 lost contact" in err, err[-3000:]
    assert "Root Cause" in err and "SIGKILL" in err  # torchrun names the rank that died
    assert _batches_done(run / "pass1", rank=1) == 1 and not (run / "pass1" / "tally.done.json").exists()
    # its pass-1 checkpoints hold no sketches (they come from the cache): resuming without the cache is refused
    off = subprocess.run(
        _dissect(world, run, procs=2) + ["--cache-gb", "0"], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert off.returncode != 0 and "written with the activation cache on" in off.stderr, off.stderr[-3000:]
    killed = subprocess.run(
        _dissect(world, run, procs=2),
        env=_env("pass2.checkpoint.after=1:kill@0"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode != 0, killed.stderr[-3000:]
    assert "unitscope fault: pass2.checkpoint.after hit 1 on rank 0: kill" in killed.stderr, killed.stderr[-3000:]
    assert (run / "pass1" / "tally.done.json").exists() and not (run / "pass2" / "tally.done.json").exists()
    assert _batches_done(run / "pass2", rank=0) == 1
    done = subprocess.run(_dissect(world, run, procs=2), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("relu1: 6 of 6 units") == 1  # the summary is printed once, by rank 0
    assert_same_run(run, single)


def _batches_done(folder: Path, rank: int) -> int:
    """How many batches rank ``rank``'s checkpoint in ``folder`` covers."""
    from unitscope.runs import load_arrays

    saved = load_arrays(folder / f"tally.checkpoint.rank{rank}.safetensors")
    return int(saved["tally.batches"].reshape(-1)[0])
