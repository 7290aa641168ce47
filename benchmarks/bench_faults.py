"""What an unarmed fault point costs (unitscope.faults): per call, and in a tally loop.

    .venv/bin/python benchmarks/bench_faults.py [--calls 2000000] [--batches 20000]

Prints nanoseconds per ``fault()`` call with UNITSCOPE_FAULT unset, against an empty function call,
and the time of a tally over tiny in-memory batches with the real points against the same loop with
``fault`` replaced by a no-op (each batch passes 1 point, 3 at a checkpoint). A dissection batch
costs tens of milliseconds or more (a forward pass of 32 images), so the points' share of it is
printed too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import timeit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=2_000_000)
    p.add_argument("--batches", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    os.environ.pop("UNITSCOPE_FAULT", None)
    import torch
    from torch.utils.data import TensorDataset

    import unitscope.tally as tally_mod
    from unitscope import faults
    from unitscope.stats import Moments

    faults.load()  # unset: nothing armed

    def empty(point: str) -> None:
        return None

    per = {}
    for name, fn in (("fault() unset", faults.fault), ("empty function", empty)):
        runs = timeit.repeat(lambda: fn("pass1.batch"), number=args.calls, repeat=args.repeats)
        per[name] = min(runs) / args.calls * 1e9
        print(f"{name:16s} {per[name]:6.1f} ns per call (best of {args.repeats})")
    print(f"an unarmed point costs {per['fault() unset'] - per['empty function']:+.1f} ns over an empty call")

    data = TensorDataset(torch.zeros(args.batches, 1))

    def loop() -> float:
        stat = Moments()
        t0 = time.perf_counter()
        for (x,) in tally_mod.tally(stat, data, batch_size=1, progress=False):
            pass
        return time.perf_counter() - t0

    real = tally_mod.fault
    times: dict[str, list[float]] = {"points": [], "no-op": []}
    for _ in range(args.repeats):  # interleaved, so load changes hit both alike
        tally_mod.fault = real
        times["points"].append(loop())
        tally_mod.fault = empty
        times["no-op"].append(loop())
    tally_mod.fault = real
    a, b = (statistics.median(times[k]) / args.batches * 1e6 for k in ("points", "no-op"))
    print(f"tally per batch: {a:.2f} us with the points, {b:.2f} us with a no-op ({a / b:.3f}x)")
    print(f"share of a 30 ms dissection batch: {(per['fault() unset'] * 5) / 30e6:.1e} (5 points a batch)")


if __name__ == "__main__":
    main()
