"""A call forked early and run later (:mod:`unitscope.dissect.forked`): its value and its errors come
back, and it ends (killed and reaped) in every state: idle, running, waited for in another thread,
and when the thread that forked it ends."""

import os
import select
import signal
import threading

import pytest

from unitscope.dissect.forked import ChildTraceback, ForkedCall

pytestmark = pytest.mark.skipif(not ForkedCall.available(), reason="ForkedCall forks on Linux only")


def reaped(children) -> bool:
    """Whether every one of ``children`` (:class:`ForkedCall`) was reaped: none is a child of this
    process any more (other tests' children may still run)."""
    for child in children:
        try:
            os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:
            continue
        return False
    return True


def test_the_child_runs_on_the_state_it_was_forked_with_and_sends_its_value_back():
    state = {"n": 1}
    child = ForkedCall(lambda arg: (state["n"], arg * 2, os.getpid()), "doubler")
    state["n"] = 2  # after the fork: the child's copy is its own
    child.send(21)
    n, value, pid = child.result()
    assert (n, value) == (1, 42) and pid == child.pid != os.getpid()
    assert child.returncode == 0 and reaped([child])


def test_the_childs_error_is_raised_with_its_traceback_as_the_cause():
    def fails(arg):
        raise KeyError(f"no unit {arg}")

    child = ForkedCall(fails)
    child.send(7)
    with pytest.raises(KeyError, match="no unit 7") as raised:
        child.result()
    cause = raised.value.__cause__
    assert isinstance(cause, ChildTraceback) and "in fails" in cause.text
    assert child.returncode == 0 and reaped([child])


def test_an_error_that_does_not_pickle_comes_back_as_its_text():
    class Unpicklable(Exception):
        def __init__(self, a, b):  # pickle calls it with one argument: fails
            super().__init__(f"{a}/{b}")

    def fails(arg):
        raise Unpicklable(arg, "b")

    child = ForkedCall(fails)
    child.send("a")
    with pytest.raises(RuntimeError, match="a/b") as raised:
        child.result()
    assert "Unpicklable" in raised.value.__cause__.text


def test_a_child_that_dies_without_a_result_raises_child_process_error():
    child = ForkedCall(lambda arg: os.kill(os.getpid(), signal.SIGKILL), "strips")
    child.send(None)
    with pytest.raises(
        ChildProcessError, match=r"the strips process \(pid \d+\) ended without a result: killed by signal 9"
    ):
        child.result()
    assert child.returncode == -signal.SIGKILL and reaped([child])


def test_stop_ends_an_idle_child_and_is_then_a_no_op():
    child = ForkedCall(lambda arg: arg)
    child.stop()
    assert child.returncode == -signal.SIGKILL and reaped([child])
    child.stop()
    with pytest.raises(ChildProcessError, match="killed by signal 9"):
        child.result()


def test_stop_ends_a_running_child_that_another_thread_waits_for():
    started_r, started_w = os.pipe()

    def runs(arg):
        os.write(started_w, b"x")
        select.select([], [], [], 120)  # until killed (a guard against a hang, not a timing)
        return "not killed"

    child = ForkedCall(runs)
    child.send(None)
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(_outcome(child)))
    waiter.start()
    assert os.read(started_r, 1) == b"x"  # the call is running in the child
    child.stop()  # the waiting thread reaps it
    waiter.join()
    os.close(started_r)
    os.close(started_w)
    assert outcome == ["ChildProcessError"] and child.returncode == -signal.SIGKILL and reaped([child])


def _outcome(child: ForkedCall) -> str:
    try:
        return child.result()
    except ChildProcessError:
        return "ChildProcessError"


def test_the_child_dies_with_the_thread_that_forked_it():
    made = []
    forker = threading.Thread(target=lambda: made.append(ForkedCall(lambda arg: arg)))
    forker.start()
    forker.join()  # the child, never sent anything, waits on its pipe: the thread's end kills it
    (child,) = made
    ready, _, _ = select.select([child._out], [], [], 120)  # a guard against a hang, not a timing
    assert ready, "the child outlived the thread that forked it"
    with pytest.raises(ChildProcessError, match="killed by signal 9"):
        child.result()
    assert reaped([child])


def test_a_fork_the_system_refuses_raises_and_leaves_no_pipe_open(monkeypatch):
    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(BlockingIOError):
        ForkedCall(lambda arg: arg)
    assert sorted(os.listdir("/proc/self/fd")) == before
