"""Start-up cost of `unitscope dissect` before any work: imports, each in a fresh process.

    python benchmarks/bench_startup.py                       # median of 3 fresh processes each
    python benchmarks/bench_startup.py --model timm:resnet18 --repeat 5
    python benchmarks/bench_startup.py --model efficientnet_lite0 torchvision:resnet18 timm:resnet18 --random-weights

Target (issue 13): nothing heavy that the command does not use is imported. Prints, per step, the
median wall seconds of a fresh interpreter and which heavy modules it loaded: bare ``import
torch`` (the floor), ``unitscope dissect --help``, everything a dissect run imports (engine, data,
report, CLI), and that plus creating ``--model`` (the model's own library comes with it: timm and
torchvision bring torch's compiler stack, as torchvision.ops imports torch._dynamo).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = [
    "torch._dynamo",
    "torch._inductor",
    "torchvision",
    "timm",
    "sympy",
    "triton",
    "fastapi",
    "sklearn",
    "matplotlib",
    "scipy",
    "pandas",
]
REPORT = f"import sys, json; print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
STEPS = {
    "import torch": "import torch",
    "unitscope dissect --help": "import unitscope.cli as c, contextlib, io\n"
    "with contextlib.redirect_stdout(io.StringIO()):\n"
    "    try: c.main(['dissect', '--help'])\n"
    "    except SystemExit: pass",
    "imports of a dissect run": "import unitscope.cli, unitscope.dissect, unitscope.data, unitscope.report, "
    "unitscope.commands.dissect; unitscope.cli.build_parser()",
}


def fresh(code: str) -> tuple[float, list[str]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code + "\n" + REPORT], env=env, capture_output=True, text=True, check=True
    ).stdout
    return time.perf_counter() - start, json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="*", default=["efficientnet_lite0"], help="also time creating these models")
    ap.add_argument("--random-weights", action="store_true", help="create them with pretrained=False")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    steps = dict(STEPS)
    extra = ", pretrained=False" if args.random_weights else ""
    for model in args.model:
        steps[f"... + create_model({model!r}{extra})"] = (
            STEPS["imports of a dissect run"]
            + f"\nfrom unitscope.models import create_model; create_model({model!r}{extra})"
        )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; median of {args.repeat} fresh processes")
    floor = None
    for name, code in steps.items():
        runs = [fresh(code) for _ in range(args.repeat)]
        median = statistics.median(t for t, _ in runs)
        floor = floor or median
        print(f"  {name:66s} {median:6.2f} s  ({median / floor:4.2f}x import torch)  heavy: {runs[0][1] or 'none'}")


if __name__ == "__main__":
    main()
