"""Probe-world throughput: render + write N images, then read them back through BrodenDataset.

    python benchmarks/bench_world.py --n 10000 --size 224            # the issue's target: <= 180 s on 2 cores
    python benchmarks/bench_world.py --n 500 --workers 1 --read 200  # quick look

Prints images/s for writing (parallel over ``--workers`` processes) and for reading (DataLoader
with 2 workers), and the seconds the write would take for 10,000 images at this rate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=None, help="default: all cores")
    ap.add_argument("--read", type=int, default=1000, help="images to read back (0: skip)")
    ap.add_argument("--out", default=None, help="folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args()

    import torch

    from unitscope.data import BrodenDataset
    from unitscope.world import make_world

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_world_")) / "world"
    try:
        load = os.getloadavg()[0]
        t = time.perf_counter()
        make_world(out, n=args.n, size=args.size, seed=0, workers=args.workers, progress=False)
        dt = time.perf_counter() - t
        files = sum(1 for _ in out.rglob("*"))
        mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
        print(
            f"write: {args.n} images {args.size}px in {dt:.1f} s = {args.n / dt:.1f} img/s "
            f"({files} files, {mb:.0f} MiB, {os.cpu_count()} cores, load before {load:.2f}); "
            f"10,000 images: {10_000 * dt / args.n:.0f} s (target 180 s)"
        )
        if args.read:
            t = time.perf_counter()
            ds = BrodenDataset(out)
            t_open = time.perf_counter() - t
            sub = torch.utils.data.Subset(ds, range(min(args.read, len(ds))))
            loader = torch.utils.data.DataLoader(sub, batch_size=32, num_workers=2)
            t = time.perf_counter()
            k = sum(b["image"].shape[0] for b in loader)
            dt = time.perf_counter() - t
            print(
                f"read: open+validate {t_open:.2f} s; {k} items in {dt:.1f} s = {k / dt:.1f} img/s "
                f"(DataLoader, 2 workers, {ds.num_planes} planes)"
            )
    finally:
        if not args.out:
            shutil.rmtree(out.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
