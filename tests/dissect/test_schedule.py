"""The dissection's passes side by side (layers in threads, pass 1's statistics behind the next
forward pass) give the serial run's results bit for bit, and a fault in the background work
resumes to them."""

import os
import select
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.dissect.test_dissect import catalog_dump, dataset, planted, world  # noqa: F401  (world is a fixture)
from tests.dissect.test_forked import reaped
from unitscope import faults
from unitscope.dissect import ActivationSource, Options, dissect_sources, schedule
from unitscope.dissect.schedule import Behind, LayerThreads, OneTorchThread
from unitscope.dissect.sources import BrodenLabels, ModelActivations
from unitscope.runs import load_arrays


class ThreeLayers(ActivationSource):
    """The planted colour units (``feat``) and two maps made from them, so that the passes have
    layers of two sizes to run side by side."""

    model_name = "planted-three"
    layers = ["feat", "mixed", "coarse"]

    def __init__(self, inner: ModelActivations) -> None:
        self.inner = inner

    def __len__(self):
        return len(self.inner)

    def shapes(self):
        c, h, w = self.inner.shapes()["feat"]
        return {"feat": (c, h, w), "mixed": (2, h, w), "coarse": (c, h // 2, w // 2)}

    def load(self, pos):
        return self.inner.load(pos)

    def activations(self, batch):
        a = self.inner.activations(batch)["feat"]  # [N, 3, h, w]
        mixed = torch.stack([a[:, 0] + 0.5 * a[:, 1], a[:, 2] - 0.25 * a[:, 0]], 1)
        return {"feat": a, "mixed": mixed, "coarse": F.avg_pool2d(a, 2)}

    def key(self):
        return {**self.inner.key(), "layers": self.layers}

    def index(self, pos):
        return self.inner.index(pos)

    def picture(self, pos):
        return self.inner.picture(pos)


def run(world, out, monkeypatch, cores: int, rotations: int = 1, **kw):
    """A dissection of the three layers with ``spare_cores()`` set to ``cores`` (1: all inline)."""
    monkeypatch.setattr(schedule, "spare_cores", lambda torch_threads=None: cores)
    model = planted(world)
    ds = dataset(world, model)
    opts = Options(
        quantile=0.05, topk=3, batch_size=4, checkpoint_every=1, progress=False, null_draws=8, rotations=rotations
    )
    return dissect_sources(ThreeLayers(ModelActivations(model, ds, ["feat"])), BrodenLabels(ds), out, opts, **kw)


def arrays(out):
    return {p.name: load_arrays(p) for p in sorted((out / "arrays").glob("*.safetensors"))}


def test_threaded_passes_equal_the_serial_run(world, tmp_path, monkeypatch):
    serial = run(world, tmp_path / "serial", monkeypatch, cores=1)
    threaded = run(world, tmp_path / "threaded", monkeypatch, cores=4)
    assert serial.layers["feat"].detectors.sum() == 3  # the planted units are found
    want, got = arrays(tmp_path / "serial"), arrays(tmp_path / "threaded")
    assert list(got) == ["l0.safetensors", "l1.safetensors", "l2.safetensors"] == list(want)
    for name in want:
        assert want[name].keys() == got[name].keys()
        for k in want[name]:
            assert np.array_equal(want[name][k], got[name][k], equal_nan=True), (name, k)
    for layer in ThreeLayers.layers:
        assert np.array_equal(serial.layers[layer].p_value, threaded.layers[layer].p_value, equal_nan=True)
        assert serial.rotations[layer] == threaded.rotations[layer]
    assert catalog_dump(tmp_path / "threaded" / "catalog.sqlite") == catalog_dump(
        tmp_path / "serial" / "catalog.sqlite"
    )
    assert strips(tmp_path / "threaded") == strips(tmp_path / "serial") != {}  # written beside pass 3


def strips(run):
    """Every strip of a run folder, path -> bytes."""
    return {p.relative_to(run).as_posix(): p.read_bytes() for p in sorted((run / "images").rglob("*.jpg"))}


def test_a_fault_in_the_background_cache_write_resumes_to_the_serial_result(world, tmp_path, monkeypatch):
    run(world, tmp_path / "serial", monkeypatch, cores=1)
    # the 5th cache write is batch 2's second layer, in the thread behind batch 3's forward pass:
    # its error reaches the loop at batch 2's checkpoint, which is never written
    with faults.armed("cache.write=5:raise"), pytest.raises(faults.FaultInjected) as raised:
        run(world, tmp_path / "run", monkeypatch, cores=4)
    assert any(entry.frame.code.name == "wait" and "schedule" in str(entry.path) for entry in raised.traceback)
    saved = load_arrays(tmp_path / "run" / "pass1" / "tally.checkpoint.rank0.safetensors")
    assert int(saved["tally.batches"].reshape(-1)[0]) == 1
    run(world, tmp_path / "run", monkeypatch, cores=4)
    assert catalog_dump(tmp_path / "run" / "catalog.sqlite") == catalog_dump(tmp_path / "serial" / "catalog.sqlite")
    want, got = arrays(tmp_path / "serial"), arrays(tmp_path / "run")
    for name in want:
        for k in want[name]:
            assert np.array_equal(want[name][k], got[name][k], equal_nan=True), (name, k)


def test_layer_threads_run_every_layer_before_raising_the_first_error():
    ran: list[str] = []

    def fn(layer: str) -> str:
        ran.append(layer)
        if layer != "c":
            raise ValueError(layer)
        return layer

    with LayerThreads(["a", "b", "c"], threads=3) as each, pytest.raises(ValueError, match="^a$"):
        each(fn)
    assert sorted(ran) == ["a", "b", "c"]
    with LayerThreads(["a", "b"], threads=2) as each:
        assert each(str.upper) == {"a": "A", "b": "B"}


def test_behind_runs_calls_in_order_and_raises_their_error():
    seen: list[int] = []
    behind = Behind(enabled=True)
    for i in range(5):
        behind.submit(seen.append, i)
    behind.wait()
    assert seen == [0, 1, 2, 3, 4]
    behind.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        behind.submit(seen.append, 5)  # the previous call's error, before this one runs
    behind.close()
    assert seen == [0, 1, 2, 3, 4]


def test_a_fault_in_the_background_strips_lets_pass_3_finish_and_resumes_to_the_serial_run(
    world, tmp_path, monkeypatch
):
    run(world, tmp_path / "serial", monkeypatch, cores=1)
    with faults.armed("strips.write=1:raise"), pytest.raises(faults.FaultInjected) as raised:
        run(world, tmp_path / "run", monkeypatch, cores=4)
    assert any(entry.frame.code.name == "wait" and "schedule" in str(entry.path) for entry in raised.traceback)
    assert (tmp_path / "run" / "pass3" / "tally.done.json").exists()  # pass 3 ran beside the strips
    assert not (tmp_path / "run" / "catalog.sqlite").exists()
    run(world, tmp_path / "run", monkeypatch, cores=4)
    assert catalog_dump(tmp_path / "run" / "catalog.sqlite") == catalog_dump(tmp_path / "serial" / "catalog.sqlite")
    assert strips(tmp_path / "run") == strips(tmp_path / "serial")


def test_spare_cores_counts_torch_threads_and_local_ranks(monkeypatch):
    monkeypatch.setattr(schedule.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(schedule.torch, "get_num_threads", lambda: 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert schedule.spare_cores() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert schedule.spare_cores() == 1  # torchrun's ranks hold the cores: everything inline
    monkeypatch.setattr(schedule.torch, "get_num_threads", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert schedule.spare_cores() == 1


def test_one_torch_thread_while_the_layers_take_the_cores():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with LayerThreads(["a", "b", "c"], one_torch_thread=True) as each:
            assert torch.get_num_threads() == 1
            assert each(lambda layer: torch.get_num_threads()) == {"a": 1, "b": 1, "c": 1}
        assert torch.get_num_threads() == 2
        with LayerThreads(["a"], one_torch_thread=True):  # one layer too: a Side thread takes the other core
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with OneTorchThread(enabled=False):
            assert torch.get_num_threads() == 2
        with pytest.raises(KeyError), OneTorchThread():  # restored on an error too
            assert torch.get_num_threads() == 1
            raise KeyError("x")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


@pytest.mark.parametrize("enabled", [True, False])
def test_side_runs_calls_in_order_and_hands_back_results_and_errors(enabled):
    """Pass 2's side thread (its labels beside the masks, its mask records behind the next batch):
    calls in submitted order, each result through its future, the first error again at close;
    inline (no spare core) the same."""
    from unitscope.dissect.schedule import Side

    seen: list[int] = []
    side = Side(enabled=enabled)
    futures = [side.submit(lambda i=i: seen.append(i) or i * i) for i in range(5)]
    assert [f.result() for f in futures] == [0, 1, 4, 9, 16]
    failed = side.submit(lambda: 1 / 0)
    after = side.submit(seen.append, 5)  # later calls still run
    with pytest.raises(ZeroDivisionError):
        failed.result()
    assert after.result() is None
    with pytest.raises(ZeroDivisionError):
        side.close()
    assert seen == [0, 1, 2, 3, 4, 5]
    quiet = Side(enabled=enabled)
    quiet.submit(lambda: 1 / 0)
    quiet.close(raise_errors=False)  # the caller's own error wins


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("kind", ["behind", "side"])
def test_with_closes_raising_the_threads_error_unless_the_block_raises_its_own(kind, enabled):
    """The engine's passes run their loops in ``with Behind()`` / ``with Side()``: leaving normally
    waits for every call and raises the first error; leaving with an error keeps that error."""
    from unitscope.dissect.schedule import Side

    make = Behind if kind == "behind" else Side
    seen: list[int] = []
    with make(enabled=enabled) as thread:
        for i in range(3):
            thread.submit(seen.append, i)
    assert seen == [0, 1, 2]  # every call ran before the block was left
    with pytest.raises(ZeroDivisionError), make(enabled=enabled) as thread:
        thread.submit(lambda: 1 / 0)
    if kind == "behind" and not enabled:
        return  # inline, Behind.submit raises the call's error at once, inside the block
    with pytest.raises(KeyError), make(enabled=enabled) as thread:  # the block's error wins
        thread.submit(lambda: 1 / 0)
        raise KeyError("the batch's own error")


def test_parts_cut_each_layer_into_one_slice_per_thread_in_unit_order():
    each = LayerThreads(["a", "b", "c"], threads=2)
    try:
        assert each.threads == 2
        assert each.parts({"a": 5, "b": 1, "c": 4}) == [
            ("a", 0, 2),
            ("a", 2, 5),
            ("b", 0, 1),  # one unit: one part
            ("c", 0, 2),
            ("c", 2, 4),
        ]
        assert each.map(lambda part: part[2] - part[1], each.parts({"a": 5, "b": 1, "c": 4})) == [2, 3, 1, 2, 2]
    finally:
        each.__exit__()
    serial = LayerThreads(["a"], threads=1)
    assert serial.parts({"a": 320}) == [("a", 0, 320)]  # no threads: the whole layer at once


def test_strip_groups_are_a_multiple_of_the_threads(monkeypatch):
    from unitscope.dissect import exemplars

    monkeypatch.setattr(exemplars.os, "cpu_count", lambda: 2)
    assert [len(g) for g in exemplars._groups(320)] == [53, 53, 54, 53, 53, 54]  # not 5 of 64: none alone
    assert [len(g) for g in exemplars._groups(128)] == [64, 64]
    assert [len(g) for g in exemplars._groups(3)] == [1, 2]
    assert exemplars._groups(0) == []
    assert [u for g in exemplars._groups(1281) for u in g] == list(range(1281))


def test_a_gate_holds_the_second_holder_until_widened():
    """The exemplar strips beside passes 2 and 3: one group at a time until the passes end."""
    import threading

    from unitscope.dissect.schedule import Gate

    gate, order = Gate(1), []
    first_in, let_first_out = threading.Event(), threading.Event()

    def first():
        with gate:
            order.append("first in")
            first_in.set()
            let_first_out.wait()
            order.append("first out")

    def second():
        first_in.wait()
        with gate:
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    first_in.wait()
    let_first_out.set()
    for t in threads:
        t.join()
    assert order == ["first in", "first out", "second in"]  # never two inside a gate of one

    gate.widen()  # no limit: two holders at once
    both_in, inside = threading.Barrier(2, timeout=10), []

    def holder():
        with gate:
            inside.append(1)
            both_in.wait()  # raises BrokenBarrierError if the gate let only one in

    threads = [threading.Thread(target=holder) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert inside == [1, 1] and not both_in.broken

    from unitscope.dissect.schedule import GateClosed

    gate = Gate(1)
    with gate:
        waiting = threading.Thread(target=lambda: order.append(_enter(gate)))
        waiting.start()
        gate.close()  # the holder waiting for its turn is turned away, not let in
        waiting.join()
    assert order[-1] == "closed"
    with pytest.raises(GateClosed):
        gate.__enter__()


def _enter(gate) -> str:
    from unitscope.dissect.schedule import GateClosed

    try:
        with gate:
            return "in"
    except GateClosed:
        return "closed"


def early_calls(monkeypatch, layers: int = 3) -> list[str]:
    """Which exemplar strips ran: "early" (begun at pass 1's end) and "late" (after pass 2); early
    strips allowed for runs of up to ``layers`` layers (the three layers here: the default is one)."""
    from unitscope.dissect import engine

    monkeypatch.setattr(engine, "EARLY_STRIPS_LAYERS", layers)
    calls: list[str] = []
    for name, what in (("_write_early_strips", "early"), ("_write_strips", "late")):
        inner = getattr(engine._Run, name)

        def spy(self, *args, inner=inner, what=what):
            calls.append(what)
            return inner(self, *args)

        monkeypatch.setattr(engine._Run, name, spy)
    return calls


def forks(monkeypatch, process: bool = True) -> list:
    """The processes forked for the early strips (:mod:`unitscope.dissect.forked`), as they are made;
    ``process=False``: none, the early strips drawn in their thread."""
    from unitscope.dissect import engine
    from unitscope.dissect.forked import ForkedCall

    made: list = []

    class Recorded(ForkedCall):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            made.append(self)

    monkeypatch.setattr(engine, "STRIPS_PROCESS", process)
    monkeypatch.setattr(engine, "ForkedCall", Recorded)
    return made


@pytest.mark.parametrize("process", [True, False], ids=["process", "thread"])
def test_exemplar_strips_begun_at_pass_1s_end_are_the_serial_runs(world, tmp_path, monkeypatch, process):
    """Without rotations, where a core is spare, the exemplar strips start from pass 1's top-k
    beside passes 2 and 3, in a process forked before pass 1 or in a thread: the same files,
    catalog and arrays as the serial run. By default only for a run of one layer."""
    children = forks(monkeypatch, process)
    calls = early_calls(monkeypatch, layers=1)
    run(world, tmp_path / "three", monkeypatch, cores=4, rotations=0)
    assert calls == ["late"] and children == []  # three layers: after pass 2, beside pass 3
    calls = early_calls(monkeypatch)
    serial = run(world, tmp_path / "serial", monkeypatch, cores=1, rotations=0)
    assert calls == ["late"] and children == []  # inline: no spare core, the strips after pass 2 as before
    calls.clear()
    early = run(world, tmp_path / "early", monkeypatch, cores=4, rotations=0)
    assert calls == ["early"]
    assert [c.returncode for c in children] == ([0] if process else [])  # the child sent its strips back
    assert strips(tmp_path / "three") == strips(tmp_path / "serial")
    assert serial.layers["feat"].detectors.sum() == 3
    assert strips(tmp_path / "early") == strips(tmp_path / "serial") != {}
    assert catalog_dump(tmp_path / "early" / "catalog.sqlite") == catalog_dump(tmp_path / "serial" / "catalog.sqlite")
    want, got = arrays(tmp_path / "serial"), arrays(tmp_path / "early")
    for name in want:
        for k in want[name]:
            assert np.array_equal(want[name][k], got[name][k], equal_nan=True), (name, k)
    for layer in ThreeLayers.layers:
        assert np.array_equal(serial.layers[layer].p_value, early.layers[layer].p_value, equal_nan=True)


def test_where_no_process_can_be_forked_the_thread_draws_the_early_strips(world, tmp_path, monkeypatch):
    """``fork`` fails (a strict memory overcommit, a process limit): a warning, and the early
    strips drawn in their thread, the serial run's files."""
    from unitscope.dissect import forked

    run(world, tmp_path / "serial", monkeypatch, cores=1, rotations=0)
    children = forks(monkeypatch)
    calls = early_calls(monkeypatch)

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(forked.os, "fork", no_fork)
    with pytest.warns(UserWarning, match=r"the exemplar strips draw in a thread: no process for them \(\[Errno 11\]"):
        run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert calls == ["early"] and children == []
    assert strips(tmp_path / "run") == strips(tmp_path / "serial") != {}
    assert catalog_dump(tmp_path / "run" / "catalog.sqlite") == catalog_dump(tmp_path / "serial" / "catalog.sqlite")


def test_early_strips_drawn_from_other_images_than_pass_2s_are_drawn_again(world, tmp_path, monkeypatch):
    """Pass 1's top-k is pass 2's (TopK's order does not depend on the batches); were it not, the
    units whose images differ get their strips again from pass 2's: a planted mix-up is repaired."""
    from unitscope.dissect import engine

    run(world, tmp_path / "serial", monkeypatch, cores=1, rotations=0)
    inner = engine._Run.start_exemplar_strips

    def mixed_up(self, thresholds):
        top = self.pass1_top
        for t in top.values():  # every unit's exemplars shifted to the next unit's
            t.image = t.image.roll(1, 0)
        return inner(self, thresholds)

    monkeypatch.setattr(engine._Run, "start_exemplar_strips", mixed_up)
    calls = early_calls(monkeypatch)
    run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert calls == ["early"]
    assert strips(tmp_path / "run") == strips(tmp_path / "serial")
    assert catalog_dump(tmp_path / "run" / "catalog.sqlite") == catalog_dump(tmp_path / "serial" / "catalog.sqlite")


def test_a_pass_1_resumed_from_a_checkpoint_draws_the_strips_after_pass_2(world, tmp_path, monkeypatch):
    """Pass 1's top-k saw only the batches after the checkpoint: the strips wait for pass 2's. The
    process forked for them is ended, in the failed run and in the resumed one."""
    run(world, tmp_path / "serial", monkeypatch, cores=1, rotations=0)
    children = forks(monkeypatch)
    calls = early_calls(monkeypatch)
    with faults.armed("cache.write=5:raise"), pytest.raises(faults.FaultInjected):
        run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert calls == [] and [c.returncode for c in children] == [-signal.SIGKILL] and reaped(children)
    run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert calls == ["late"]
    assert [c.returncode for c in children] == [-signal.SIGKILL] * 2 and reaped(children)
    assert strips(tmp_path / "run") == strips(tmp_path / "serial")
    assert catalog_dump(tmp_path / "run" / "catalog.sqlite") == catalog_dump(tmp_path / "serial" / "catalog.sqlite")


@pytest.mark.parametrize("fault", ["strips.write=1:raise", "pass2.done=1:raise"])
@pytest.mark.parametrize("process", [True, False], ids=["process", "thread"])
def test_a_fault_beside_the_early_strips_resumes_to_the_serial_run(world, tmp_path, monkeypatch, fault, process):
    """A fault in the early strips (in their process, or their thread) reaches the caller when it
    waits for them (pass 3 done first); a fault in pass 2 ends them (no concept strips) and is the
    error raised. A rerun resumes."""
    run(world, tmp_path / "serial", monkeypatch, cores=1, rotations=0)
    children = forks(monkeypatch, process)
    calls = early_calls(monkeypatch)
    with faults.armed(fault), pytest.raises(faults.FaultInjected):
        run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert calls == ["early"] and len(children) == (1 if process else 0) and reaped(children)
    assert (tmp_path / "run" / "pass3" / "tally.done.json").exists() == fault.startswith("strips")
    assert not (tmp_path / "run" / "catalog.sqlite").exists()
    run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert len(children) == (2 if process else 0)
    assert catalog_dump(tmp_path / "run" / "catalog.sqlite") == catalog_dump(tmp_path / "serial" / "catalog.sqlite")
    assert strips(tmp_path / "run") == strips(tmp_path / "serial")


def test_a_strips_process_that_is_killed_fails_the_run_after_pass_3_and_a_rerun_resumes(world, tmp_path, monkeypatch):
    """The strips' process dies (a kill fault in it, as the OOM killer would): the run raises once
    pass 3 is done, saying so, and a rerun resumes to the serial run."""
    run(world, tmp_path / "serial", monkeypatch, cores=1, rotations=0)
    children = forks(monkeypatch)
    calls = early_calls(monkeypatch)  # three layers: the early strips allowed (else the fault kills this process)
    with faults.armed("strips.write=1:kill"), pytest.raises(ChildProcessError, match="killed by signal 9"):
        run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert calls == ["early"] and [c.returncode for c in children] == [-signal.SIGKILL] and reaped(children)
    assert (tmp_path / "run" / "pass3" / "tally.done.json").exists()
    run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert catalog_dump(tmp_path / "run" / "catalog.sqlite") == catalog_dump(tmp_path / "serial" / "catalog.sqlite")
    assert strips(tmp_path / "run") == strips(tmp_path / "serial")


def test_concept_strips_that_fail_beside_the_strips_process_end_it(world, tmp_path, monkeypatch):
    """The concept strips (drawn in the early strips' thread while the process draws the exemplar
    strips) fail: their error is the run's, and the process is ended and reaped, not left behind."""
    from unitscope.dissect import engine

    children = forks(monkeypatch)
    calls = early_calls(monkeypatch)

    def failing(*args, **kw):
        raise RuntimeError("concept strips failed")

    monkeypatch.setattr(engine, "write_unit_strips", failing)
    with pytest.raises(RuntimeError, match="concept strips failed"):
        run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert calls == ["early"] and len(children) == 1 and children[0].returncode is not None and reaped(children)
    assert list((tmp_path / "run" / "images").rglob(".*.tmp")) == []


def test_early_strips_that_fail_to_start_end_the_strips_process(world, tmp_path, monkeypatch):
    """Starting the early strips fails after pass 1 (here their tiles' cache): the error is the
    run's, and the process forked for them is killed and reaped."""
    from unitscope.dissect import engine

    children = forks(monkeypatch)
    early_calls(monkeypatch)

    def failing(*args, **kw):
        raise MemoryError("no tiles")

    monkeypatch.setattr(engine, "Thumbnails", failing)
    with pytest.raises(MemoryError, match="no tiles"):
        run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert [c.returncode for c in children] == [-signal.SIGKILL] and reaped(children)


def test_a_pass_3_that_fails_turns_the_early_strips_away(world, tmp_path, monkeypatch):
    """Pass 3 fails before the early strips' thread draws anything (it waits for it here, on an
    event): the error is raised without drawing them one group at a time first (the gate is
    closed), and a rerun resumes to the serial run."""
    import threading

    from unitscope.dissect import engine

    run(world, tmp_path / "serial", monkeypatch, cores=1, rotations=0)
    forks(monkeypatch, process=False)
    failed = threading.Event()
    pass3, early_strips = engine._Run.pass3, engine._Run._write_early_strips

    def failing_pass3(self, thresholds):
        try:
            return pass3(self, thresholds)
        except BaseException:
            failed.set()
            raise

    def after_the_failure(self, *args):
        assert failed.wait(timeout=120), "pass 3 did not fail"  # a guard against a hang, not a timing
        return early_strips(self, *args)

    monkeypatch.setattr(engine._Run, "pass3", failing_pass3)
    monkeypatch.setattr(engine._Run, "_write_early_strips", after_the_failure)
    calls = early_calls(monkeypatch)
    with faults.armed("pass3.done=1:raise"), pytest.raises(faults.FaultInjected):
        run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert calls == ["early"] and failed.is_set()
    assert strips(tmp_path / "run") == {}  # every group turned away (the old wait drew them all)
    monkeypatch.setattr(engine._Run, "_write_early_strips", early_strips)
    run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert catalog_dump(tmp_path / "run" / "catalog.sqlite") == catalog_dump(tmp_path / "serial" / "catalog.sqlite")
    assert strips(tmp_path / "run") == strips(tmp_path / "serial") != {}


def test_a_pass_3_that_fails_kills_the_strips_process_mid_strip(world, tmp_path, monkeypatch):
    """Pass 3 fails while the strips' process is writing a strip (it waits to be killed here): the
    process is killed, not waited for, its half-written file is removed, and a rerun resumes to
    the serial run."""
    from unitscope.dissect import engine
    from unitscope.runs import atomic_writer

    run(world, tmp_path / "serial", monkeypatch, cores=1, rotations=0)
    children = forks(monkeypatch)
    early_calls(monkeypatch)
    drawing_r, drawing_w = os.pipe()

    def mid_strip(self, job, *args):  # in the child
        with atomic_writer(self.run_dir / "images" / "l0" / "unit0000.jpg", fsync=False) as f:
            f.write(b"half a strip")
            os.write(drawing_w, b"x")
            select.select([], [], [], 120)  # until killed (a guard against a hang, not a timing)
        return {}

    def failing_pass3(self, thresholds):  # fails once the child is writing
        assert os.read(drawing_r, 1) == b"x"
        raise faults.FaultInjected("pass 3 failed")

    monkeypatch.setattr(engine._Run, "_draw_exemplar_strips", mid_strip)
    monkeypatch.setattr(engine._Run, "pass3", failing_pass3)
    with pytest.raises(faults.FaultInjected, match="pass 3 failed"):
        run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    os.close(drawing_r)
    os.close(drawing_w)
    assert [c.returncode for c in children] == [-signal.SIGKILL] and reaped(children)
    images = tmp_path / "run" / "images"
    assert list(images.rglob(".*.tmp")) == [] and not (images / "l0" / "unit0000.jpg").exists()  # no half strip
    monkeypatch.undo()
    run(world, tmp_path / "run", monkeypatch, cores=4, rotations=0)
    assert catalog_dump(tmp_path / "run" / "catalog.sqlite") == catalog_dump(tmp_path / "serial" / "catalog.sqlite")
    assert strips(tmp_path / "run") == strips(tmp_path / "serial") != {}
