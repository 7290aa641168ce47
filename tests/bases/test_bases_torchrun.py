"""``dissect --basis`` under torchrun (2 CPU processes on gloo): rank 0 fits the bases, the other rank
loads them, both dissect their shards; the catalog (every direction's label, IoU, threshold,
p-value, exemplars; the bases' metrics but their fit times) equals the single-process run's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.dissect.test_dissect_torchrun import MODEL, _env, _tables

pytestmark = pytest.mark.slow  # two runs of a tiny model, one under torchrun: ~30 s of CPU

ARGS = ["--batch-size", "5", "--basis", "units,pca,ica:passes=10", "--no-progress", "--no-report"]


def _dissect(world, out, procs: int = 0) -> list[str]:
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


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from unitscope.world import make_world

    return make_world(tmp_path_factory.mktemp("world") / "w64", n=24, size=64, seed=3, workers=1, progress=False)


def test_basis_under_torchrun_equals_one_process(world, tmp_path):
    runs = {}
    for procs in (0, 2):
        out = tmp_path / f"run{procs}"
        done = subprocess.run(_dissect(world, out, procs), env=_env(), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[procs] = _tables(out)
    one, two = runs[0], runs[2]
    assert list(two) == list(one)
    layers = {r[1] for r in one["dissection"]}
    assert {"relu1", "relu1#pca", "relu1#ica"} <= layers
    for name in one:
        if name == "basis_metrics":  # fit times differ from run to run
            continue
        assert two[name] == one[name], name
    # model, layer, basis_layer, basis, spec, directions, FVU, mean L0, dead fraction, stability; not the times
    assert [r[:10] for r in two["basis_metrics"]] == [r[:10] for r in one["basis_metrics"]]
    assert len(one["basis_metrics"]) == 6  # units, pca, ica of relu1 and relu2
