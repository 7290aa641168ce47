"""The tally driver: batching, checkpoints, resume (also after a real SIGKILL), keys, torchrun."""

from __future__ import annotations

import os
import platform
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from unitscope import faults
from unitscope.runs import load_arrays
from unitscope.stats import CombinedStat, Moments, Quantile, TopK, load_stat
from unitscope.tally import TallyKeyError, keep_freed_memory, reduce_across_ranks, tally

JOB = Path(__file__).parent / "helpers" / "tally_job.py"
ROOT = Path(__file__).parents[1]


class Counting(Dataset):
    """Item i: a [2, 3, 3] tensor seeded with i; records which items were loaded."""

    def __init__(self, n: int) -> None:
        self.n, self.loaded = n, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        self.loaded.append(i)
        return torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(i))


def new_stat() -> CombinedStat:
    return CombinedStat(q=Quantile(resolution=16), top=TopK(3), m=Moments())


def consume(stat: CombinedStat, data: Dataset, run_dir: Path | None, stop_after: int | None = None, **kw) -> int:
    """Run the loop body over tally's batches; return how many batches it ran for. ``stop_after``:
    a fault point raises :class:`FaultInjected` once the body has run for that many batches."""
    ran = 0
    with faults.armed(f"tally.batch={stop_after}:raise" if stop_after else ""):
        for index, x in tally(
            stat,
            data,
            batch_size=4,
            run_dir=run_dir,
            key={"job": "t"},
            checkpoint_every=2,
            with_index=True,
            progress=False,
            **kw,
        ):
            stat.q.add(x)
            stat.top.add(x, index)
            stat.m.add(x)
            ran += 1
    return ran


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:  # runs.save_arrays stores 0-d arrays as shape (1,): compare values
        assert np.array_equal(a[k].reshape(-1), b[k].reshape(-1)), k


def test_tally_yields_every_item_in_order_with_indices() -> None:
    data = Counting(10)
    seen = [index for index, _ in tally(new_stat(), data, batch_size=4, with_index=True, progress=False)]
    assert [t.tolist() for t in seen] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    plain = list(tally(new_stat(), Counting(3), batch_size=2, progress=False))
    assert [b.shape[0] for b in plain] == [2, 1]
    assert torch.equal(plain[0][1], Counting(3)[1])


def test_interrupted_tally_resumes_bit_identically_without_reloading(tmp_path: Path) -> None:
    whole = new_stat()
    assert consume(whole, Counting(22), tmp_path / "whole") == 6
    data, stat = Counting(22), new_stat()
    with pytest.raises(faults.FaultInjected):
        consume(stat, data, tmp_path / "cut", stop_after=5)  # checkpoint after batch 4
    data.loaded.clear()
    resumed = new_stat()
    assert consume(resumed, data, tmp_path / "cut") == 2  # batches 5 and 6
    assert min(data.loaded) == 16  # items of finished batches were never loaded
    assert_same(resumed.state_dict(), whole.state_dict())
    assert_same(load_arrays(tmp_path / "cut" / "tally.result.safetensors"), whole.state_dict())
    assert not list((tmp_path / "cut").glob("tally.checkpoint*"))


def test_finished_tally_loads_its_result_and_yields_nothing(tmp_path: Path) -> None:
    first = new_stat()
    consume(first, Counting(9), tmp_path)
    again = new_stat()
    assert consume(again, Counting(9), tmp_path) == 0
    assert_same(again.state_dict(), first.state_dict())
    assert again.top.result()[0].shape == (2, 3)


def test_changed_key_is_refused_with_the_fields_that_differ(tmp_path: Path) -> None:
    consume(new_stat(), Counting(9), tmp_path)
    with pytest.raises(TallyKeyError, match=r"(?s)items: saved 9, now 10.*fresh=True"):
        consume(new_stat(), Counting(10), tmp_path)
    with pytest.raises(TallyKeyError, match=r"stat: saved"):
        list(
            tally(
                CombinedStat(q=Quantile(32)),
                Counting(9),
                batch_size=4,
                run_dir=tmp_path,
                key={"job": "t"},
                progress=False,
            )
        )
    assert consume(new_stat(), Counting(10), tmp_path, fresh=True) == 3


def test_on_checkpoint_runs_before_each_checkpoint_and_the_result(tmp_path: Path) -> None:
    seen: list[tuple[int, bool]] = []
    stat = new_stat()

    def flush() -> None:
        ck = tmp_path / "tally.checkpoint.rank0.safetensors"
        batches = int(load_arrays(ck)["tally.batches"].reshape(-1)[0]) if ck.exists() else 0
        seen.append((batches, (tmp_path / "tally.done.json").exists()))

    consume(stat, Counting(22), tmp_path, on_checkpoint=flush)  # 6 batches, checkpoints at 2, 4
    assert seen == [(0, False), (2, False), (4, False)]


def test_shards_are_runs_of_whole_batches_covering_every_item_once() -> None:
    from unitscope.tally import shard

    assert [shard(100, 8, r, 2) for r in range(2)] == [(0, 48), (48, 100)]  # batches 0-5 and 6-12
    assert [shard(5, 2, r, 4) for r in range(4)] == [(0, 0), (0, 2), (2, 4), (4, 5)]
    for items, bs, world in [(1, 3, 2), (37, 4, 3), (64, 8, 8), (65, 8, 8)]:
        bounds = [shard(items, bs, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == items
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous, no overlap
        assert all(lo % bs == 0 for lo, _ in bounds)  # every shard starts on a batch boundary


def test_reduce_across_ranks_is_identity_without_torch_distributed() -> None:
    stat = Moments()
    stat.add(torch.ones(3, 2))
    assert reduce_across_ranks(stat) is stat and stat.count == 3


def _run_job(run_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(JOB), str(run_dir), str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


@pytest.mark.slow
def test_real_sigkill_then_rerun_is_bit_identical(tmp_path: Path) -> None:
    _run_job(tmp_path / "whole", tmp_path / "whole.safetensors")
    run_dir = tmp_path / "killed"
    env = dict(
        os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", UNITSCOPE_FAULT="tally.checkpoint.after=2:kill"
    )  # checkpoints every 3 batches: after batch 6
    killed = subprocess.run(
        [sys.executable, str(JOB), str(run_dir), str(tmp_path / "x.safetensors")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "unitscope fault: tally.checkpoint.after hit 2 on rank 0: kill" in killed.stderr
    checkpoint = load_arrays(run_dir / "tally.checkpoint.rank0.safetensors")
    assert int(checkpoint["tally.batches"].reshape(-1)[0]) == 6  # where it stopped: after batch 6 of 30
    assert not (run_dir / "tally.done.json").exists() and "batches" not in killed.stdout
    resumed = _run_job(run_dir, tmp_path / "resumed.safetensors")
    assert resumed.stdout.split()[-1] == "24"  # 240 items in batches of 8: batches 7 to 30
    whole = load_arrays(tmp_path / "whole.safetensors")
    assert_same(load_arrays(tmp_path / "resumed.safetensors"), whole)
    again = _run_job(run_dir, tmp_path / "again.safetensors")
    assert again.stdout.split()[-1] == "0"


@pytest.mark.slow
def test_torchrun_two_ranks_merge_to_the_single_process_result(tmp_path: Path) -> None:
    single = _run_job(tmp_path / "single", tmp_path / "single.safetensors", "--items", "100")
    assert single.stdout.split()[-1] == "13"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(JOB),
        str(tmp_path / "multi"),
        str(tmp_path / "multi.safetensors"),
        "--items",
        "100",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # 13 batches of 8 (the last of 4): whole batches per rank, 6 + 7. The two ranks share one stdout,
    # so their lines can interleave ("batches 7batches 6"): read the counts, not the lines.
    assert sorted(int(n) for n in re.findall(r"batches (\d+)", done.stdout)) == [6, 7]
    one, two = load_stat(tmp_path / "single.safetensors"), load_stat(tmp_path / "multi.safetensors")
    for a, b in zip(one.top.result(), two.top.result()):
        assert torch.equal(a, b)
    torch.testing.assert_close(one.m.mean(), two.m.mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(one.m.variance(), two.m.variance(), rtol=1e-12, atol=1e-12)
    assert one.q.count == two.q.count == 100 * 16
    assert all(torch.equal(a, b) for a, b in zip(one.q.minmax(), two.q.minmax()))
    data = (
        torch.stack(
            [torch.relu(torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(i))) * 2 for i in range(100)]
        )
        .permute(1, 0, 2, 3)
        .reshape(3, -1)
    )
    for q in (0.1, 0.5, 0.9):
        below = (data <= two.q.quantiles(q)[:, None]).double().mean(1)
        strictly = (data < two.q.quantiles(q)[:, None]).double().mean(1)
        assert ((strictly - 0.05 <= q) & (q <= below + 0.05)).all(), q  # resolution 64
    # the result and marker were written once, by rank 0, and the checkpoints removed
    assert (tmp_path / "multi" / "tally.done.json").exists()
    assert not list((tmp_path / "multi").glob("tally.checkpoint*"))


def test_check_resumable_refuses_a_changed_key_without_writing(tmp_path: Path) -> None:
    from unitscope.tally import check_resumable

    check_resumable(new_stat(), 9, run_dir=tmp_path / "empty", batch_size=4)  # nothing there: fine
    assert not (tmp_path / "empty").exists()
    with pytest.raises(faults.FaultInjected):
        consume(new_stat(), Counting(22), tmp_path / "cut", stop_after=5)
    consume(new_stat(), Counting(9), tmp_path / "done")
    for folder, items in (("cut", 22), ("done", 9)):
        before = {p: p.stat().st_mtime_ns for p in (tmp_path / folder).iterdir()}
        with pytest.raises(TallyKeyError, match=f"items: saved {items}, now 30"):
            check_resumable(new_stat(), 30, run_dir=tmp_path / folder, key={"job": "t"}, batch_size=4)
        assert {p: p.stat().st_mtime_ns for p in (tmp_path / folder).iterdir()} == before


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_reuses_a_large_freed_buffer_without_page_faults() -> None:
    """A 256 MB buffer freed and allocated again: glibc's default unmaps it and faults its 65,536
    pages in again; after keep_freed_memory the second allocation reuses the first one's pages."""
    assert keep_freed_memory() and keep_freed_memory()  # on, and once per process

    def faults() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(2**26)  # 256 MB written and freed at once
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    for _ in range(6):  # the heap grows to hold it (the first one to three allocations fault it in)
        faults()
    assert max(faults() for _ in range(3)) < 2**26 * 4 // 4096 // 20  # then it stays: no 65,536 faults


_THREADS = """
import resource, threading, torch
from unitscope.tally import keep_freed_memory
torch.set_num_threads(1)  # no OpenMP threads: only the threads below allocate
keep_freed_memory()
torch.ones(2**25)  # 128 MB written and freed by the main thread
faults, held = [], threading.Barrier(2)
def work():
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    block = torch.ones(2**23)  # 32 MB each, both held at once (as the passes' threads hold their buffers)
    held.wait()
    faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
    del block
threads = [threading.Thread(target=work) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(*faults)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_lets_threads_reuse_what_the_main_thread_freed() -> None:
    """Two threads at once, each writing a 32 MB block after the main thread freed 128 MB: with a
    heap per thread, each faulted its 8,192 pages in; with one heap for every thread, they reuse
    the main thread's. In a fresh process: threads the test process ran earlier hold heaps of their own."""

    def faults(env: dict[str, str]) -> list[int]:
        out = subprocess.run(
            [sys.executable, "-c", _THREADS], env={**os.environ, **env}, capture_output=True, text=True, check=True
        )
        return [int(x) for x in out.stdout.split()]

    pages = 2**23 * 4 // 4096
    assert min(faults({"UNITSCOPE_MALLOC": "system"})) > pages * 0.9  # glibc's defaults
    assert max(faults({"UNITSCOPE_MALLOC": ""})) < pages // 20


_TRIM = """
import torch
from unitscope.tally import keep_freed_memory, release_freed_memory

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024

kept = keep_freed_memory()
block = torch.ones(2**26)  # 256 MB written
del block  # freed: kept by the heap where keep_freed_memory took effect
before = rss_mb()
released = release_freed_memory()
print(kept, released, round(before - rss_mb()))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_freed_memory_gives_a_kept_buffer_back_and_does_nothing_otherwise() -> None:
    """A 256 MB block freed stays resident while the heap keeps it; release_freed_memory gives it
    back (what a dissection does when it starts). With glibc's defaults (nothing kept) it does nothing.
    In a fresh process, so that what the test process holds does not count."""

    def run(env: dict[str, str]) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", _TRIM], env={**os.environ, **env}, capture_output=True, text=True, check=True
        )
        return out.stdout.split()

    kept, released, dropped = run({"UNITSCOPE_MALLOC": ""})
    assert (kept, released) == ("True", "True") and int(dropped) > 200  # of 256 MB
    kept, released, dropped = run({"UNITSCOPE_MALLOC": "system"})
    assert (kept, released) == ("False", "False") and int(dropped) < 50  # glibc unmapped it at once
