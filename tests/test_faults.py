"""Fault points (``unitscope.faults``): the rule syntax, firing exactly at the N-th hit, ranks, the
CLI's check of a bad rule, and that every point the code names is declared (and every declared one used)."""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from unitscope import faults
from unitscope.faults import FaultInjected, FaultSpecError, Rule, armed, fault, parse

ROOT = Path(__file__).resolve().parents[1]


def test_rules_parse_into_point_hit_action_and_rank() -> None:
    assert parse(" pass2.batch=2:kill ; cache.write=1:raise@1;") == [
        Rule("pass2.batch", 2, "kill", None),
        Rule("cache.write", 1, "raise", 1),
    ]
    assert parse("") == []


@pytest.mark.parametrize(
    "spec, message",
    [
        ("pass2.bach=2:kill", r"unknown fault point 'pass2.bach'; did you mean pass2.batch"),
        ("pass2.batch=0:kill", r"whole number from 1, got '0'"),
        ("pass2.batch=two:kill", r"whole number from 1, got 'two'"),
        ("pass2.batch=2:explode", r"unknown action 'explode'; use one of kill, term, raise"),
        ("pass2.batch=2:kill@first", r"@RANK must be a process rank"),
        ("pass2.batch:kill", r"is not POINT=N:ACTION\[@RANK\]"),
    ],
)
def test_bad_rules_are_clear_errors(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        parse(spec)


def test_a_point_fires_exactly_at_its_nth_hit() -> None:
    with armed("tally.batch=3:raise; cache.write=1:raise"):
        fault("tally.batch")
        fault("tally.batch")
        fault("pass1.batch")  # another point: not counted for this one
        assert faults.hits("tally.batch") == 2
        with pytest.raises(FaultInjected, match="'tally.batch' fired at hit 3"):
            fault("tally.batch")
        fault("tally.batch")  # the 4th hit: the rule was for the 3rd only
        with pytest.raises(FaultInjected, match="'cache.write' fired at hit 1"):
            fault("cache.write")
    fault("tally.batch")  # disarmed after the block
    fault("cache.write")


def test_a_rank_restricted_rule_fires_only_on_that_rank(monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    with armed("tally.batch=1:raise@0"):
        fault("tally.batch")
    with armed("tally.batch=1:raise@1"), pytest.raises(FaultInjected):
        fault("tally.batch")


def test_the_variable_is_read_once_at_load(monkeypatch) -> None:
    saved = faults._armed
    try:
        monkeypatch.setenv(faults.ENV, "tally.done=1:raise")
        faults._armed = None  # as in a fresh process: the first point reads the variable
        monkeypatch.setattr(faults, "parse", _counting(faults.parse))
        for _ in range(3):
            fault("tally.batch")
        assert faults.parse.calls == 1
        with pytest.raises(FaultInjected):
            fault("tally.done")
    finally:
        faults._armed = saved


def _counting(fn):
    def wrapper(*a, **k):
        wrapper.calls += 1
        return fn(*a, **k)

    wrapper.calls = 0
    return wrapper


def test_a_tally_stopped_at_its_second_checkpoint_resumes_to_the_same_result(tmp_path) -> None:
    from unitscope.runs import load_arrays
    from unitscope.stats import Moments
    from unitscope.tally import tally

    data = TensorDataset(torch.arange(40, dtype=torch.float64).view(20, 2))

    def run(folder: Path) -> Moments:
        stat = Moments()
        for (x,) in tally(stat, data, batch_size=2, run_dir=folder, checkpoint_every=3, progress=False):
            stat.add(x)
        return stat

    with armed("tally.checkpoint.after=2:raise"), pytest.raises(FaultInjected):
        run(tmp_path / "cut")
    saved = load_arrays(tmp_path / "cut" / "tally.checkpoint.rank0.safetensors")
    assert int(saved["tally.batches"].reshape(-1)[0]) == 6  # stopped right after the checkpoint at batch 6
    resumed, whole = run(tmp_path / "cut"), run(tmp_path / "whole")
    assert resumed.count == whole.count == 20
    assert torch.equal(resumed.mean(), whole.mean()) and torch.equal(resumed.variance(), whole.variance())


def test_kill_sigkills_the_process_at_once_and_says_where() -> None:
    code = (
        "from unitscope.faults import fault\n"
        "for i in range(5):\n"
        "    fault('tally.batch'); print('batch', i + 1, flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), UNITSCOPE_FAULT="tally.batch=3:kill", RANK="0")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split("\n")[:-1] == ["batch 1", "batch 2"]
    assert done.stderr.strip() == "unitscope fault: tally.batch hit 3 on rank 0: kill"


def test_the_cli_refuses_a_bad_rule_before_any_work(tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), UNITSCOPE_FAULT="pass9.batch=1:kill")
    done = subprocess.run(
        [sys.executable, "-m", "unitscope.cli", "world", "make", str(tmp_path / "w"), "--n", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and not (tmp_path / "w").exists()
    assert done.stderr.count("\n") == 1 and "unknown fault point 'pass9.batch'" in done.stderr


def _named_points() -> set[str]:
    """Every point the package names: literal ``fault("...")`` calls, and the tally's ``{name}.suffix``
    f-strings expanded over the declared tally names."""
    points, suffixes = set(), set()
    for path in (ROOT / "unitscope").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "fault" and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant):
                    points.add(arg.value)
        if path.name == "tally.py":
            suffixes |= set(re.findall(r'f"\{name\}\.([a-z.]+)"', path.read_text()))
    return points | {f"{t}.{s}" for t in faults.TALLIES for s in suffixes}


def test_every_point_in_the_code_is_declared_and_every_declared_point_is_in_the_code() -> None:
    named = _named_points()
    assert named == set(faults.POINTS), (named - set(faults.POINTS), set(faults.POINTS) - named)
    assert {
        "pass1.batch",
        "pass1.checkpoint.before",
        "pass1.checkpoint.after",
        "pass2.batch",
        "cache.write",
        "catalog.commit",
        "pass1.merge",
        "pass2.reduce",
    } <= named
