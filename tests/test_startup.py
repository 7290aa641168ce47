"""Start-up stays lean: ``unitscope dissect`` imports nothing heavy that it does not use (no torch
compiler stack, torchvision, timm, fastapi, sklearn or matplotlib), checked in a fresh process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = [
    "torch._dynamo",
    "torch._inductor",
    "torchvision",
    "timm",
    "fastapi",
    "uvicorn",
    "sklearn",
    "matplotlib",
    "scipy",
    "sympy",
    "triton",
    "pandas",
    "torch.onnx",
    "unitscope.organisms",
]  # registered on first need (unitscope.plugins): not for a built-in or file model
PROBE = """
import json, sys
HEAVY = {heavy!r}
def loaded():
    return sorted(m for m in HEAVY if m in sys.modules)
import unitscope.cli, unitscope.dissect, unitscope.data, unitscope.commands.dissect, unitscope.report
unitscope.cli.build_parser()
out = {{"imports": loaded(), "torch": "torch" in sys.modules}}
if {run!r}:
    code = unitscope.cli.main(["dissect", "--model", {model!r}, "--data", {world!r}, "--out", {out!r},
                               "--limit", "4", "--batch-size", "2", "--no-progress", "--null-draws", "0"])
    out.update(code=code, run=loaded(), report=__import__("os").path.exists({out!r} + "/index.html"))
print(json.dumps(out))
"""


TINY = f"{Path(__file__).parent / 'helpers' / 'tiny_conv.py'}:tiny_conv"


def _probe(tmp_path: Path, run: bool, world: str = "", heavy: list[str] = HEAVY, model: str = TINY) -> dict:
    code = PROBE.format(heavy=heavy, run=run, model=model, world=world, out=str(tmp_path / "run"))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_cli_and_the_dissect_modules_import_nothing_heavy(tmp_path):
    # a module the CLI does import stands in for a heavy one: the check can see an import
    out = _probe(tmp_path, run=False, heavy=HEAVY + ["unitscope.dissect.options"])
    assert out["imports"] == ["unitscope.dissect.options"]
    assert out["torch"]


@pytest.mark.slow
@pytest.mark.parametrize("model", [TINY, "efficientnet_lite0"], ids=["tiny", "lite0"])
def test_a_whole_dissection_with_its_report_imports_nothing_heavy(tmp_path, model):
    """Also of the default model: EfficientNet-Lite0 is built without timm (unitscope.efficientnet)."""
    from unitscope.world import make_world

    world = make_world(tmp_path / "w", n=4, size=64, seed=1, workers=1, progress=False)
    out = _probe(tmp_path, run=True, world=str(world), model=model)
    assert out["code"] == 0 and out["report"]
    assert out["run"] == []
