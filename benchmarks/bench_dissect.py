"""Dissection cost against a bare forward pass, and peak memory against the number of images.

    python benchmarks/bench_dissect.py                  # time: 1,000 images, blocks.6 of EfficientNet-Lite0
    python benchmarks/bench_dissect.py --cache-gb 0     # the same without the activation cache
    # the demo's three layers on the photo world, one thread: CPU time of each step (pass 3's share)
    python benchmarks/bench_dissect.py --images 300 --style photo --layer default --threads 1
    python benchmarks/bench_dissect.py --memory 1000,10000   # peak RSS of a dissection at each size
    # do a model's labels survive mixed precision? (the trained world_scenes on the demo's world)
    python benchmarks/bench_dissect.py --model world_scenes --layer features.relu5 --images 2000 --size 64 \
        --batch-size 100 --precision float16
    # issue 13's GPU figures: ResNet-18 layer4 (random weights), 10,000 images, then mixed precision
    python benchmarks/bench_dissect.py --model torchvision:resnet18 --random-weights --layer layer4 \
        --images 10000 --device cuda --workers auto --batch-size 128 [--precision bfloat16]

Targets: the whole dissection, every default on (p-values, exemplar and mask strips), takes at most
1.2x one bare forward pass over the same images (issue 22; 1.5x in issue 4), the permutation null
(pass 3) at most 10% of it, and peak memory does not grow with the number of images. The time of
each step of the engine (pass 1 to 3, summarise, write: strips and catalog) is printed beside the
ratio (where a core is spare the strips run in a background thread from ``start_strips`` on, so
their time falls in pass 3, summarise and the wait in write; CPU time counts every thread). The
bare pass runs with the allocator settings the dissection's passes use (``keep_freed_memory``;
``UNITSCOPE_MALLOC=system`` runs both with glibc's defaults). Resident memory swings by a few
hundred MB with the forward pass's allocations, so the median over the run is printed beside the
peak, and per fifth of the run: growth would show as a higher median at 10k than at 1k, and as
medians that rise from one fifth to the next. Pass 1 (the forward passes, whose batch-sized
allocations make the swings) takes most of the run; passes 2 and 3 read the cached maps back.
With ``--precision bfloat16`` (or float16) the dissection also runs once in mixed precision, and
the labels are compared unit by unit (``label_agreement``): mixed precision is worth having only
where it leaves the labels as they are.
Both passes read the images through the same DataLoader settings; the bare pass runs the full model.
The dissection feeds a convolutional model channels_last on the CPU (``--memory-format auto``), a
layout in which its convolutions run faster: the bare pass runs the model as it is called
(contiguous input), and where the dissection's layout is channels_last, bare passes in that layout
run beside them, for the ratio of the work beyond a forward pass in the same layout (printed too).
The float32 dissection runs ``--repeats`` times (3), with ``--bare-repeats`` bare passes (1) before
the first and after each one (after one warm-up pass): B D B D B D B. A single pass is noisy (other
processes, the page cache, the CPU's speed, which drifts over minutes: the same bare pass took
13.3-15.8 s wall, and 58.4 and 33.6 s CPU on one quiet run), so each dissection is compared with
the bare passes just before and after it, and **the median of those ratios** is the headline; the
ratio of the median dissection to the median bare pass (and to the fastest, the conservative bound)
is printed beside it. Each dissection starts as in a fresh process: the checks a process makes once
and caches (the windowed masks' arithmetic) are made again. The steps are the medians of the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch

from unitscope.commands.dissect import cache_dir
from unitscope.data import BrodenDataset
from unitscope.dissect import ModelActivations, dissect, engine, label_agreement, window
from unitscope.models import create_model, get_info
from unitscope.tally import keep_freed_memory, release_freed_memory, resolve_workers
from unitscope.world import make_world


def world_for(n: int, size: int = 224, style: str = "cartoon") -> Path:
    name = "probe-world" if style == "cartoon" else f"{style}-world"  # the names `unitscope demo` uses
    return make_world(cache_dir() / f"{name}-n{n}-s{size}-seed0", n=n, size=size, seed=0, progress=False, style=style)


def bare_forward(
    model,
    data,
    batch_size: int,
    workers: int,
    device: torch.device,
    cpu: list | None = None,
    faults: list | None = None,
    channels_last: bool = False,
) -> float:
    cuda = device.type == "cuda"
    release_freed_memory()  # from a trimmed heap, as every dissection starts (unitscope.tally)
    cpu_start, faults_start = cpu_seconds(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    loader = torch.utils.data.DataLoader(_Images(data), batch_size=batch_size, num_workers=workers, pin_memory=cuda)
    start = time.perf_counter()
    with torch.no_grad():
        for images in loader:
            images = images.to(device, non_blocking=True)
            model(images.contiguous(memory_format=torch.channels_last) if channels_last else images)
    if cuda:
        torch.cuda.synchronize()
    if cpu is not None:
        cpu.append(cpu_seconds() - cpu_start)
    if faults is not None:  # minor page faults of this process: glibc's unmapped buffers faulted in again
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_start)
    return time.perf_counter() - start


class _Images(torch.utils.data.Dataset):
    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return (
            self.data.get(i, image=True, labels=False)["image"] if hasattr(self.data, "get") else self.data[i]["image"]
        )


@contextmanager
def phase_timer(cpu: dict[str, float] | None = None):
    """Seconds spent in each step of the engine (``{"pass1": s, ...}``, filled as the steps run):
    the table of where a dissection's time goes beyond the forward pass. ``cpu`` gets each step's
    CPU seconds (process and the DataLoader workers, which end with their pass)."""
    seconds: dict[str, float] = {}
    cpu = {} if cpu is None else cpu
    saved = {
        name: getattr(engine._Run, name)
        for name in ("open", "pass1", "pass2", "start_strips", "pass3", "summarise", "write")
        if hasattr(engine._Run, name)
    }

    def timed(name, fn):
        def run(*args, **kw):
            start, cpu_start = time.perf_counter(), cpu_seconds()
            try:
                return fn(*args, **kw)
            finally:
                seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
                cpu[name] = cpu.get(name, 0.0) + cpu_seconds() - cpu_start

        return run

    for name, fn in saved.items():
        setattr(engine._Run, name, timed(name, fn))
    try:
        yield seconds
    finally:
        for name, fn in saved.items():
            setattr(engine._Run, name, fn)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the DataLoader workers): on a shared
    machine a steadier measure than wall time, which counts the time other processes hold the cores."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _tree_pss_mb(pid: int | None = None) -> float:
    """Proportional set size of this process and every descendant (DataLoader workers): host memory
    the run holds, with pages the workers share with their parent after fork counted once."""
    pid = os.getpid() if pid is None else pid
    total = 0.0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            total = next(int(line.split()[1]) for line in f if line.startswith("Pss:")) / 1024
        children = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += [int(c) for c in f.read().split()]
    except (OSError, StopIteration):  # the process ended while it was read
        return total
    return total + sum(_tree_pss_mb(c) for c in children)


def one_run(
    n: int,
    layer: str,
    batch_size: int,
    workers: int,
    out: Path,
    model_name: str = "efficientnet_lite0",
    random_weights: bool = False,
    device: str = "cpu",
) -> dict:
    """One dissection; resident memory sampled every 0.5 s (peak and median, to tell growth from spikes),
    of the main process (RSS) and of the process tree with its DataLoader workers (PSS)."""
    samples: list[float] = []
    tree: list[float] = []
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            samples.append(_rss_mb())
            tree.append(_tree_pss_mb())
            time.sleep(0.5)

    model = create_model(model_name, pretrained=False if random_weights else None)
    data = BrodenDataset(world_for(n), transform=get_info(model).transform())
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    result = dissect(
        model, data, [layer], out, batch_size=batch_size, num_workers=workers, device=device, progress=False
    )
    seconds = time.perf_counter() - start
    running.clear()
    thread.join()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fifths = [statistics.median(samples[i * len(samples) // 5 : (i + 1) * len(samples) // 5]) for i in range(5)]
    return {
        "images": n,
        "seconds": seconds,
        "peak_rss_mb": peak_mb,
        "median_rss_mb": statistics.median(samples),
        "median_by_fifth_mb": fifths,
        "peak_tree_pss_mb": max(tree),
        "median_tree_pss_mb": statistics.median(tree),
        "summary": result.layers[layer].summary(),
    }


class Timed(NamedTuple):
    """One dissection: wall and CPU seconds, the same per step (:func:`phase_timer`), and its layers."""

    wall: float
    cpu: float
    steps: dict[str, float]
    steps_cpu: dict[str, float]
    layers: dict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument(
        "--layer",
        default="blocks.6",
        help="a layer, comma-separated layers, or 'default' (the model's own: the demo's for Lite0)",
    )
    ap.add_argument(
        "--style",
        default="cartoon",
        choices=["cartoon", "photo", "mixed"],
        help="probe world (photo: the demo's, needs the Debian photograph packages)",
    )
    ap.add_argument("--null-draws", type=int, default=8, help="permutation-null draws (0: no p-values)")
    ap.add_argument("--size", type=int, default=224, help="probe-world image size (the timing and --precision runs)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--workers", default="1", help="DataLoader workers: a number or auto")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--random-weights", action="store_true", help="untrained weights (timing only; no download)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="also dissect in this precision and compare its labels with float32's",
    )
    ap.add_argument(
        "--cache-gb", type=float, default=4.0, help="activation cache budget (0: pass 2 and 3 run the model)"
    )
    ap.add_argument(
        "--memory-format",
        default="auto",
        choices=["auto", "channels_last", "contiguous"],
        help="the layout the dissection feeds the model (auto: channels_last for convolutions on the CPU)",
    )
    ap.add_argument("--memory", default="", help="comma-separated image counts: peak RSS of each, in a fresh process")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: one per core)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="float32 dissections, each between bare passes (the headline: the median of their ratios)",
    )
    ap.add_argument(
        "--bare-repeats", type=int, default=1, help="bare passes before the first dissection and after each"
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)

    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print(
                json.dumps(
                    one_run(
                        args.images,
                        args.layer,
                        args.batch_size,
                        resolve_workers(args.workers),
                        Path(tmp) / "run",
                        args.model,
                        args.random_weights,
                        args.device,
                    )
                )
            )
        return

    if args.memory:
        for n in [int(x) for x in args.memory.split(",")]:
            world_for(n)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--images",
                    str(n),
                    "--layer",
                    args.layer,
                    "--batch-size",
                    str(args.batch_size),
                    "--workers",
                    str(args.workers),
                    "--model",
                    args.model,
                    "--device",
                    args.device,
                    *(["--random-weights"] if args.random_weights else []),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(
                f"{n:6d} images: peak RSS {r['peak_rss_mb']:6.0f} MB, median {r['median_rss_mb']:6.0f} MB "
                f"(by fifth of the run: {' '.join(f'{m:.0f}' for m in r['median_by_fifth_mb'])}); with the "
                f"workers (PSS) peak {r['peak_tree_pss_mb']:.0f} MB, median {r['median_tree_pss_mb']:.0f} MB; "
                f"{r['seconds']:6.1f} s  ({r['summary']})"
            )
        return

    device = torch.device(args.device)
    # the dissection's data passes keep glibc from unmapping large freed buffers (unitscope.tally):
    # the bare pass runs with the same allocator settings (UNITSCOPE_MALLOC=system: both without)
    kept = keep_freed_memory()
    model = create_model(args.model, pretrained=False if args.random_weights else None).to(device).eval()
    layers = get_info(model).default_layers if args.layer == "default" else args.layer.split(",")
    data = BrodenDataset(world_for(args.images, args.size, args.style), transform=get_info(model).transform())
    workers = resolve_workers(args.workers)
    # the layout the dissection feeds the model in: where it is channels_last, bare passes in that
    # layout run beside the plain ones (the model as it is called), for the ratio of the work
    # beyond a forward pass in the same layout
    layout = ModelActivations(model, data, layers, device=device, memory_format=args.memory_format).memory_format()
    last = layout == "channels_last"
    bare_forward(model, data, args.batch_size, workers, device)  # warm-up: page cache, thread pools, kernels
    if last:
        bare_forward(model, data, args.batch_size, workers, device, channels_last=True)
    bare_faults: list[int] = []
    gaps: list[list[float]] = []  # the bare passes' wall times before the first dissection and after each
    gap_cpu: list[list[float]] = []  # and their CPU times
    gaps_last: list[list[float]] = []  # the same in channels_last (where the dissection runs in it)

    def bare_gap() -> None:
        cpu: list[float] = []
        walls, walls_last = [], []
        for _ in range(max(1, args.bare_repeats)):
            walls.append(bare_forward(model, data, args.batch_size, workers, device, cpu, bare_faults))
            if last:
                walls_last.append(bare_forward(model, data, args.batch_size, workers, device, channels_last=True))
        gaps.append(walls)
        gap_cpu.append(cpu)
        gaps_last.append(walls_last)

    def one_dissection(precision: str) -> Timed:
        # a dissection as a fresh process runs it: the one-time checks it caches (the windowed
        # masks' arithmetic, checked against F.interpolate) are made again
        for cached in (window.exact_here, window.axis_table, window._segments):
            cached.cache_clear()
        tmp = Path(tempfile.mkdtemp())
        try:
            cpu: dict[str, float] = {}
            with phase_timer(cpu) as phases:
                start, cpu_start = time.perf_counter(), cpu_seconds()
                result = dissect(
                    model,
                    data,
                    layers,
                    tmp / "run",
                    batch_size=args.batch_size,
                    num_workers=workers,
                    device=device,
                    precision=precision,
                    memory_format=args.memory_format,
                    progress=False,
                    cache_gb=args.cache_gb,
                    null_draws=args.null_draws,
                )
                return Timed(
                    time.perf_counter() - start, cpu_seconds() - cpu_start, dict(phases), dict(cpu), result.layers
                )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # the dissections and bare passes alternate: the machine's speed drifts over minutes (the same
    # bare pass took 13.3-15.8 s wall across one quiet session), so each dissection is compared with
    # the bare passes just before and after it, and the headline is the median of those ratios
    bare_gap()
    timed = []
    for _ in range(max(1, args.repeats)):
        timed.append(one_dissection("float32"))
        bare_gap()
    mixed = one_dissection(args.precision) if args.precision != "float32" else None
    print(
        f"{args.model} {','.join(layers)}, {args.images} {args.style} images at {args.size} px, {device}, "
        f"batch {args.batch_size}, {workers} workers, {torch.get_num_threads()} threads, null draws {args.null_draws}, "
        f"freed buffers {'kept (mallopt)' if kept else 'returned to the OS (glibc defaults)'}, "
        f"the dissection's input {layout}"
    )
    print(
        "  bare forward passes (full model, data loading included), before | between | after the dissections: wall "
        + " | ".join(" ".join(f"{w:.1f}" for w in gap) for gap in gaps)
        + " s; CPU (process and DataLoader workers) "
        + " | ".join(" ".join(f"{c:.1f}" for c in gap) for gap in gap_cpu)
        + " s; minor page faults "
        + " ".join(f"{f / 1e6:.2f}M" for f in bare_faults)
    )
    bare_wall = [w for gap in gaps for w in gap]
    bare_cpu = [c for gap in gap_cpu for c in gap]
    forward_s = statistics.median(bare_wall)
    bare_cpu_s, bare_cpu_min = statistics.median(bare_cpu), min(bare_cpu)
    print(
        f"  bare pass: wall median {forward_s:.1f} s ({args.images / forward_s:.1f} img/s), min {min(bare_wall):.1f} s; "
        f"CPU median {bare_cpu_s:.1f} s, min {bare_cpu_min:.1f} s"
    )
    beside = [
        (statistics.median(gaps[i] + gaps[i + 1]), statistics.median(gap_cpu[i] + gap_cpu[i + 1]))
        for i in range(len(timed))
    ]
    mid_wall, mid_cpu = statistics.median(t.wall for t in timed), statistics.median(t.cpu for t in timed)
    wall_ratio = [t.wall / b[0] for t, b in zip(timed, beside)]
    cpu_ratio = [t.cpu / b[1] for t, b in zip(timed, beside)]
    print(
        f"  whole dissection, float32 (all passes, exemplars, catalog), {len(timed)} runs: wall "
        + " ".join(f"{t.wall:.1f}" for t in timed)
        + " s, CPU "
        + " ".join(f"{t.cpu:.1f}" for t in timed)
        + " s; ratio to the bare passes beside each: wall "
        + " ".join(f"{r:.2f}" for r in wall_ratio)
        + ", CPU "
        + " ".join(f"{r:.2f}" for r in cpu_ratio)
        + f"\n    median ratio: wall {statistics.median(wall_ratio):.2f} (target <= 1.2), CPU {statistics.median(cpu_ratio):.2f}; "
        f"the median dissection to the median bare pass: wall {mid_wall / forward_s:.2f}, "
        f"CPU {mid_cpu / bare_cpu_s:.2f}, to the min {mid_cpu / bare_cpu_min:.2f}"
    )
    if last:  # the same dissections against a forward pass in their own layout: the work beyond it
        beside_last = [statistics.median(gaps_last[i] + gaps_last[i + 1]) for i in range(len(timed))]
        last_ratio = [t.wall / b for t, b in zip(timed, beside_last)]
        print(
            "    against bare passes in channels_last (the dissection's layout; wall "
            + " | ".join(" ".join(f"{w:.1f}" for w in gap) for gap in gaps_last)
            + " s): ratio "
            + " ".join(f"{r:.2f}" for r in last_ratio)
            + f", median {statistics.median(last_ratio):.2f}; pass 1 to them "
            + " ".join(f"{t.steps.get('pass1', 0.0) / b:.2f}" for t, b in zip(timed, beside_last))
        )
    # the two parts of the ratio: pass 1 (the forward pass and its statistics) against the bare
    # passes beside it, and what comes after it (passes 2 and 3, the strips, the catalog)
    pass1 = [t.steps.get("pass1", 0.0) for t in timed]
    print(
        "    pass 1 to the bare passes beside each: "
        + " ".join(f"{p / b[0]:.2f}" for p, b in zip(pass1, beside))
        + "; after pass 1: "
        + " ".join(f"{t.wall - p:.1f}" for t, p in zip(timed, pass1))
        + " s ("
        + " ".join(f"{(t.wall - p) / b[0]:.2f}" for t, p, b in zip(timed, pass1, beside))
        + " of them; the target leaves 0.2 less what pass 1 takes over 1)"
    )
    for label, totals, per_run in (
        ("wall", [t.wall for t in timed], [t.steps for t in timed]),
        ("CPU", [t.cpu for t in timed], [t.steps_cpu for t in timed]),
    ):
        steps = {name: statistics.median(r.get(name, 0.0) for r in per_run) for name in per_run[0]}
        total = statistics.median(totals)
        print(
            f"    steps, {label} (median of the runs): "
            + ", ".join(f"{name} {s:.1f} s ({s / total:.0%})" for name, s in steps.items())
            + f", other {max(0.0, total - sum(steps.values())):.1f} s"
        )
    for name, d in timed[0].layers.items():
        print(f"    {name}: {d.summary()}")
    if mixed is not None:
        print(
            f"  whole dissection, {args.precision}: {mixed.wall:.1f} s wall, ratio to the median bare pass "
            f"{mixed.wall / forward_s:.2f}; CPU {mixed.cpu:.1f} s, {mixed.cpu / bare_cpu_s:.2f}"
        )
        for name, d in mixed.layers.items():
            print(f"    {name}: {d.summary()}")
        agree = label_agreement(timed[0].layers[layers[-1]], mixed.layers[layers[-1]])
        print(
            f"  {args.precision} against float32: same label {agree['same_label']:.1%} of {agree['units']} units, "
            f"same detector verdict and label {agree['same_detectors']:.1%}, detectors {agree['detectors_a']} / "
            f"{agree['detectors_b']}, largest IoU change {agree['max_iou_diff']:.4f}, largest threshold change "
            f"{agree['max_threshold_rel']:.2%}"
        )


if __name__ == "__main__":
    main()
