"""Issue 27's speed targets: a 4x TopK SAE on EfficientNet-Lite0 ``blocks.6`` (320 channels at 7x7),
and dissecting its 1,280 latents against dissecting 1,280 units.

    python benchmarks/bench_bases.py --world runs/photo-world-n300 --images 300      # what fits on a busy CPU
    python benchmarks/bench_bases.py --world runs/photo-world-n5000 --images 5000    # the issue's size
    python benchmarks/bench_bases.py --world runs/photo-world-n5000 --images 5000 --dissect-images 1000

Target (issue 27): the SAE fitted over 5,000 photo-world images (245,000 positions x 320 channels) in at
most 10 minutes on this CPU; its 1,280 latents dissected at no more cost than 1,280 units. With fewer
images the SAE's time per position-epoch is measured and scaled to 245,000 positions (printed as
"extrapolated"); the fit is linear in positions (same epochs, minibatch steps in proportion).
The 1,280 units are Lite0's ``conv_head`` (1,280 channels, also 7x7), dissected over the same images
with the same settings; the latents are ``blocks.6#sae`` (``unitscope.bases.source``), without
``blocks.6``'s own units. Wall time, process CPU time and the load average are printed for each step.
``--dissect-images N`` dissects both over the first N images only (the fit still uses ``--images``): the
cost ratio is per image, so a busy CPU can measure the fit at full size and the ratio on fewer images.
``--sae FOLDER`` dissects a saved SAE (``--out``'s ``sae``, or a run's ``bases/l0/sae``) instead of fitting
one; ``--repeat N`` dissects latents and units N times, interleaved (latents, units, latents, ...), and
prints each pair's CPU ratio and their median: on a shared machine compare CPU time, not wall time.

    python benchmarks/bench_bases.py --world W --images 300 --sae runs/bench/sae --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch


def timed(label: str, fn, *args, **kw):
    wall, cpu, load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
    out = fn(*args, **kw)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{label:<44} wall {wall:7.1f} s   cpu {cpu:7.1f} s   load {load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True
    )
    return out, wall, cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", required=True, help="a photo world (unitscope world make --style photo)")
    p.add_argument("--images", type=int, default=300)
    p.add_argument(
        "--dissect-images",
        type=int,
        default=0,
        help="dissect latents and units over the first N images (default: --images)",
    )
    p.add_argument("--expansion", type=float, default=4)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=1024, help="SAE minibatch (positions)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="keep the run folders here (default: a temporary folder)")
    p.add_argument("--no-dissect", action="store_true", help="only the SAE fit")
    p.add_argument("--sae", default=None, help="dissect this saved SAE (a folder with basis.json) instead of fitting")
    p.add_argument("--repeat", type=int, default=1, help="latents and units dissected this many times, interleaved")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from unitscope.bases.source import FitCache
    from unitscope.data import BrodenDataset
    from unitscope.dissect import ModelActivations
    from unitscope.models import create_model, get_info

    out = Path(args.out or tempfile.mkdtemp(prefix="bench_bases_"))
    model = create_model("efficientnet_lite0").eval()
    data = BrodenDataset(args.world, transform=get_info(model).transform())
    n = min(args.images, len(data))
    print(
        f"EfficientNet-Lite0 blocks.6 over {n} images of {args.world}; threads {args.threads}; "
        f"SAE {args.expansion:g}x, k={args.k}, {args.epochs} epochs, minibatch {args.batch_size}"
    )
    acts = ModelActivations(model, data, ["blocks.6"], n=n)
    if args.sae:
        from unitscope.bases import load_basis

        dissect_both(args, model, data, acts, load_basis(args.sae), n, out)
        return
    cache = FitCache(out / "fitcache", acts.shapes(), n, acts.key())
    timed("forward pass into the fit cache", cache.fill, acts, 32)
    c, h, w = acts.shapes()["blocks.6"]
    positions = n * h * w
    from unitscope.bases import fit_sae

    b, wall, cpu = timed(
        f"SAE fit ({positions:,} positions x {c})",
        fit_sae,
        cache.batches("blocks.6"),
        out / "sae",
        expansion=args.expansion,
        k=args.k,
        epochs=args.epochs,
        batch_size=args.batch_size,
        fresh=True,
    )
    scale = 245_000 / positions
    print(
        f"  FVU {b.metrics['fvu']:.3f}, mean L0 {b.metrics['mean_l0']:.1f}, dead {b.metrics['dead_fraction']:.3f}, "
        f"{b.config['steps']} steps"
    )
    print(
        f"  extrapolated to 245,000 positions (5,000 images): wall {wall * scale / 60:.1f} min, "
        f"cpu {cpu * scale / 60:.1f} min (x{scale:.1f}; target <= 10 min)"
    )
    if args.no_dissect:
        return
    dissect_both(args, model, data, acts, b, n, out)


def dissect_both(args, model, data, acts, b, n: int, out: Path) -> None:
    """The SAE ``b``'s latents and ``conv_head``'s units dissected over the same images, ``--repeat`` times."""
    import statistics

    from unitscope.bases.source import BasisActivations, BasisSpec
    from unitscope.dissect import BrodenLabels, ModelActivations, Options, dissect_sources

    nd = min(args.dissect_images or n, n)
    if nd < n:
        print(f"dissections over the first {nd} images")
        acts = ModelActivations(model, data, ["blocks.6"], n=nd)
    opts = Options(batch_size=32, progress=False, exemplar_images=True, fresh=True)
    spec = BasisSpec("sae", {"expansion": args.expansion, "k": args.k}, "sae")
    src = BasisActivations(acts, {"blocks.6#sae": ("blocks.6", spec, b)}, units=False)  # the SAE fitted or loaded
    units = ModelActivations(model, data, ["conv_head"], n=nd)
    ratios = []
    for _ in range(args.repeat):
        _, lw, lc = timed(
            f"dissect {src.shapes()['blocks.6#sae'][0]} SAE latents (blocks.6#sae)",
            dissect_sources,
            src,
            BrodenLabels(data),
            out / "latents",
            opts,
        )
        _, uw, uc = timed(
            f"dissect {units.shapes()['conv_head'][0]} units (conv_head)",
            dissect_sources,
            units,
            BrodenLabels(data),
            out / "units",
            opts,
        )
        ratios.append(lc / uc)
        print(f"latents / units: wall {lw / uw:.2f}x, cpu {lc / uc:.2f}x (target <= 1)", flush=True)
    if args.repeat > 1:
        print(f"median cpu ratio over {args.repeat} interleaved pairs: {statistics.median(ratios):.3f}x")
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
