"""`unitscope dissect` in one process against the same run under torchrun, and whether they agree.

    python benchmarks/bench_torchrun.py                       # world_scenes, 2,000 probe images at 64 px, 2 processes
    python benchmarks/bench_torchrun.py --procs 4 --device cuda --model timm:resnet18 --layers layer4 --size 224

Target (issue 13): torchrun writes the same catalog as one process (checked here, table by table)
and divides the time by about the number of processes where the hardware has them. Prints both
wall times (process start-up included), the speed-up, and whether every catalog table is equal.
On CPU each process gets cores / processes threads (and DataLoader workers), so the speed-up is
bounded by the cores, not the processes.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def dissect(args: argparse.Namespace, world: Path, out: Path, procs: int) -> float:
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)] if procs > 1 else []
    cmd = [
        sys.executable,
        *launch,
        "-m",
        "unitscope",
        "dissect",
        "--model",
        args.model,
        "--data",
        str(world),
        "--out",
        str(out),
        "--batch-size",
        str(args.batch_size),
        "--device",
        args.device,
        "--no-progress",
        "--no-report",
        *(["--layers", args.layers] if args.layers else []),
    ]
    start = time.perf_counter()
    subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def tables(run: Path) -> dict[str, list]:
    with sqlite3.connect(run / "catalog.sqlite") as con:
        names = [n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: sorted(con.execute(f"SELECT * FROM {n}").fetchall(), key=repr) for n in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="world_scenes")
    ap.add_argument("--layers", default="features.relu5")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from unitscope.commands.dissect import cache_dir
    from unitscope.world import make_world

    world = make_world(
        cache_dir() / f"probe-world-n{args.images}-s{args.size}-seed0",
        n=args.images,
        size=args.size,
        seed=0,
        progress=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        one = dissect(args, world, Path(tmp) / "one", 1)
        many = dissect(args, world, Path(tmp) / "many", args.procs)
        a, b = tables(Path(tmp) / "one"), tables(Path(tmp) / "many")
    same = [n for n in a if a[n] == b.get(n)]
    print(
        f"{args.model} {args.layers}, {args.images} images at {args.size} px, batch {args.batch_size}, {args.device}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"  one process:           {one:7.1f} s  ({args.images / one:7.1f} img/s)")
    print(
        f"  torchrun, {args.procs} processes: {many:7.1f} s  ({args.images / many:7.1f} img/s)   speed-up {one / many:.2f}x"
    )
    print(
        f"  catalog tables equal: {len(same)} of {len(a)}"
        + ("" if len(same) == len(a) else f" (differ: {sorted(set(a) - set(same))})")
    )


if __name__ == "__main__":
    main()
