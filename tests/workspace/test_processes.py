"""workspace/processes.py with real processes: groups, stops, the supervisor."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.factories import PROGRAMS
from tests.procs import group_members, wait_until
from workspace import processes
from workspace.processes import Child, StopRequest, Supervisor

STUBBORN = PROGRAMS / "stubborn.py"

# Starts a grandchild that sleeps, says both pids, then sleeps too.
PARENT_OF_SLEEPER = """\
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""
SLEEPER = "import time; print('ready', flush=True); time.sleep(60)"
IGNORES_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)
# Exits on the second SIGTERM only, as an RQ worker's cold shutdown does.
EXITS_ON_SECOND_TERM = """\
import signal, sys, time
terms = []
def term(*_):
    terms.append(1)
    if len(terms) == 2:
        sys.exit(7)
signal.signal(signal.SIGTERM, term)
print('ready', flush=True)
time.sleep(60)
"""
# On SIGTERM, reports whether its own child survived it: 0 yes, 3 no.
REPORTS_ITS_CHILD = """\
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
def term(*_):
    time.sleep(0.3)
    sys.exit(0 if child.poll() is None else 3)
signal.signal(signal.SIGTERM, term)
print('ready', flush=True)
time.sleep(60)
"""


def python(code):
    return [sys.executable, "-c", code]


def start(code, **kwargs):
    """A python -c program in its own group, once it has said its first line."""
    proc = processes.spawn(python(code), stdout=subprocess.PIPE, text=True, **kwargs)
    first = proc.stdout.readline().strip()
    return proc, first


@pytest.fixture
def cleanup():
    """Kills the groups a failed test left behind."""
    pgids = []
    yield pgids.append
    for pgid in pgids:
        processes.kill_group(pgid)


def gone(pgid):
    return lambda: not group_members(pgid)


def test_spawn_starts_a_new_process_group():
    proc, _ = start(SLEEPER)
    try:
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
        assert os.getsid(proc.pid) == proc.pid
    finally:
        processes.kill_group(proc.pid)
        proc.wait()


def test_spawn_refuses_a_shell_string():
    with pytest.raises(TypeError):
        processes.spawn("echo hello")


def test_kill_group_kills_the_child_and_its_grandchild(cleanup):
    proc, grandchild = start(PARENT_OF_SLEEPER)
    cleanup(proc.pid)
    assert set(group_members(proc.pid)) == {proc.pid, int(grandchild)}

    assert processes.kill_group(proc.pid)
    assert proc.wait(10) == -signal.SIGKILL
    wait_until(gone(proc.pid), timeout=10, what="the grandchild to go")


def test_a_group_that_is_gone_is_not_an_error():
    proc, _ = start(SLEEPER)
    assert processes.kill_group(proc.pid)
    proc.wait(10)
    assert not processes.kill_group(proc.pid)
    assert not processes.signal_group(proc.pid, signal.SIGTERM)


def test_stop_lets_a_cooperative_program_exit_on_sigterm(cleanup):
    proc, _ = start(SLEEPER)
    cleanup(proc.pid)
    started = time.monotonic()
    assert processes.stop(proc, 30) == -signal.SIGTERM
    assert time.monotonic() - started < 10


def test_stop_escalates_to_sigkill_for_the_whole_group(tmp_path, cleanup):
    (tmp_path / ".agents").mkdir()
    proc = processes.spawn(
        [sys.executable, str(STUBBORN)], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    cleanup(proc.pid)
    assert "ignoring SIGTERM" in proc.stdout.readline()
    grandchild = int((tmp_path / ".agents" / "pids").read_text())
    assert set(group_members(proc.pid)) == {proc.pid, grandchild}
    waits = []  # as the runner pumps its log while it waits
    started = time.monotonic()

    code = processes.stop(
        proc, 1.0, on_wait=lambda timeout: waits.append(timeout) or time.sleep(timeout)
    )

    assert code == -signal.SIGKILL
    assert time.monotonic() - started >= 1.0
    assert waits and max(waits) <= processes.WAIT_STEP_S
    wait_until(gone(proc.pid), timeout=10, what="the stubborn grandchild to go")


def sleeper(name):
    return Child(name, python(SLEEPER))


class Reports:
    def __init__(self):
        self.lines = []

    def __call__(self, what):
        return lambda child: self.lines.append((what, child.name, child.poll()))


def test_the_supervisor_restarts_a_child_that_died_and_stops_all(cleanup):
    report = Reports()
    workers = Supervisor(
        5, on_start=report("start"), on_exit=report("exit"), on_stop=report("stop")
    )
    workers.keep([sleeper("a"), sleeper("b")])
    first = {name: child.pid for name, child in workers.children.items()}
    for pid in first.values():
        cleanup(pid)

    os.kill(first["a"], signal.SIGKILL)
    wait_until(lambda: workers.first_exited() is not None, timeout=10, what="a to exit")
    workers.keep([sleeper("a"), sleeper("b")])
    again = {name: child.pid for name, child in workers.children.items()}
    cleanup(again["a"])
    assert again["a"] != first["a"] and again["b"] == first["b"]
    assert ("exit", "a", -signal.SIGKILL) in report.lines

    workers.keep([sleeper("a")])  # b is no longer wanted
    assert set(workers.children) == {"a"}
    assert ("stop", "b", -signal.SIGTERM) in report.lines

    workers.stop()
    assert workers.children == {}
    assert report.lines[-1] == ("stop", "a", -signal.SIGTERM)
    for pid in [*first.values(), again["a"]]:
        wait_until(gone(pid), timeout=5, what=f"group {pid} to be gone")


def test_the_supervisor_stop_sigkills_what_ignores_sigterm(cleanup):
    workers = Supervisor(1.0)
    child = workers.start(Child("stubborn", python(IGNORES_TERM)))
    cleanup(child.pid)
    time.sleep(0.5)  # its handler is set by then
    started = time.monotonic()
    workers.stop()
    assert child.process.returncode == -signal.SIGKILL
    assert time.monotonic() - started >= 1.0


def test_the_supervisor_stop_is_cut_short_by_hurry(cleanup):
    workers = Supervisor(30)
    child = workers.start(Child("stubborn", python(IGNORES_TERM)))
    cleanup(child.pid)
    time.sleep(0.5)
    started = time.monotonic()
    workers.stop(hurry=lambda: True)
    assert child.process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("again, code", [(True, 7), (False, -signal.SIGKILL)])
@pytest.mark.slow
def test_the_supervisor_sends_sigterm_again_halfway_if_asked(again, code, cleanup):
    workers = Supervisor(2.0, term_again_halfway=again)
    child = workers.start(Child("rq", python(EXITS_ON_SECOND_TERM)))
    cleanup(child.pid)
    time.sleep(0.5)
    workers.stop()
    assert child.process.returncode == code


@pytest.mark.parametrize("whole_group, code", [(True, 3), (False, 0)])
def test_the_supervisor_can_send_sigterm_to_the_leader_alone(whole_group, code, cleanup):
    workers = Supervisor(10, term_whole_group=whole_group)
    child = workers.start(Child("lead", python(REPORTS_ITS_CHILD)))
    cleanup(child.pid)
    time.sleep(0.5)
    workers.stop()
    assert child.process.returncode == code
    # Its child too, at the end (a SIGKILL lands a moment after killpg returns).
    wait_until(gone(child.pid), timeout=5, what="the leader's child to be killed")


def test_wait_for_exit_returns_the_child_that_exited_or_none_on_a_stop(cleanup):
    workers = Supervisor(5)
    quick = workers.start(Child("quick", python("import sys; sys.exit(4)")))
    slow = workers.start(sleeper("slow"))
    cleanup(slow.pid)
    stopping = StopRequest()
    assert workers.wait_for_exit(stopping) is quick
    assert quick.poll() == 4
    stopping.count += 1  # as its signal handler does
    assert workers.wait_for_exit(stopping) is None
    hurry = stopping.asked_again()
    assert not hurry()
    stopping.count += 1
    assert hurry()
    workers.stop()
