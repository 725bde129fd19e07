"""Spawning and stopping process groups, the one way Corral runs its children.

Every child Corral starts (an agent, a check command, a worker, the web
server) leads a process group of its own, so that one signal reaches all it
started, grandchildren included, and nothing it started outlives a stop.

The bottom layer: the standard library only, so that anything (the runner, the
gates, `manage.py up`, the benchmarks, the tests) may use it.
"""

import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike, killpg
from typing import IO, Any

Redirect = int | IO[Any] | None  # what Popen takes for stdin, stdout and stderr
Cwd = str | PathLike[str] | None

WAIT_STEP_S = 0.1
PR_SET_PDEATHSIG = 1
# Loaded here, not in the forked child, where only async-signal-safe work belongs.
LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


# One process group


def spawn(
    argv: Sequence[str],
    *,
    cwd: Cwd = None,
    env: dict[str, str] | None = None,
    stdin: Redirect = None,
    stdout: Redirect = None,
    stderr: Redirect = None,
    text: bool = False,
    die_with_parent: bool = False,
    preexec: Callable[[], object] | None = None,
) -> subprocess.Popen:
    """Start argv as the leader of a new process group (and session).

    Its own group, so that signal_group() and kill_group() reach everything it
    starts; its own session, so that a Ctrl-C at our terminal reaches only us
    and we decide how our children stop. argv is never a shell string: what an
    agent or a repository names is one argument each, never shell syntax.
    die_with_parent asks Linux to SIGTERM the child if we die unable to stop it.
    preexec runs in the child after that, before exec (the sandbox's limits).
    """
    if isinstance(argv, str | bytes):
        raise TypeError("argv is a list of arguments, not a shell string")
    steps = [step for step in (_die_with_parent if die_with_parent else None, preexec) if step]
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        text=text,
        start_new_session=True,
        preexec_fn=(lambda: [step() for step in steps]) if steps else None,
    )


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux only).

    A guard for when the parent is killed with SIGKILL and cannot stop its children.
    """
    if LIBC is not None:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def die_with_parent() -> None:
    """In a forked child that does not exec: get SIGTERM when the parent dies."""
    _die_with_parent()


def signal_group(pgid: int, sig: int) -> bool:
    """Send sig to every process in the group; False if none was left to get it.

    A group that is gone already is what a stop wants, not an error.
    """
    try:
        killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_group(pgid: int) -> bool:
    """SIGKILL the whole group: the leader if it outlived its grace, and any stray it left."""
    return signal_group(pgid, signal.SIGKILL)


def stop(
    proc: subprocess.Popen,
    grace_s: float,
    *,
    on_wait: Callable[[float], object] | None = None,
) -> int:
    """SIGTERM the group, wait up to grace_s for the leader, SIGKILL the group, reap.

    on_wait(timeout) is called in the wait loop instead of sleeping, so that a
    caller reading the child's output (the runner pumping its log) keeps doing
    so while it waits. Returns the leader's exit code (negative: a signal).
    """
    signal_group(proc.pid, signal.SIGTERM)
    wait_within(proc, grace_s, on_wait=on_wait)
    kill_group(proc.pid)  # the SIGKILL also takes strays whose leader exited in time
    return proc.wait()


def wait_within(
    proc: subprocess.Popen,
    timeout_s: float,
    *,
    on_wait: Callable[[float], object] | None = None,
) -> int | None:
    """The exit code once proc exits within timeout_s, else None (it is left running)."""
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None and (left := deadline - time.monotonic()) > 0:
        if on_wait is None:
            try:
                proc.wait(left)
            except subprocess.TimeoutExpired:
                pass
        else:
            on_wait(min(WAIT_STEP_S, left))
    return proc.returncode


# Stop requests


class Interrupted(Exception):
    """Raised by StopRequest.check(): a stop was asked for while starting up."""


class StopRequest:
    """Turns stop signals into a count that loops poll.

    A count, not an Event: Event.set() takes a lock that the interrupted main
    thread may hold, so it is not safe in a signal handler. Counting lets a
    second Ctrl-C mean "hurry".
    """

    def __init__(
        self, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    ) -> None:
        self.signals = tuple(signals)
        self.count = 0

    def install(self) -> "StopRequest":
        for sig in self.signals:
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1

    @property
    def requested(self) -> bool:
        return self.count > 0

    def check(self) -> None:
        if self.requested:
            raise Interrupted

    def wait(self, timeout_s: float) -> bool:
        """Sleep up to timeout_s, waking within WAIT_STEP_S of a request; True if one came.

        In steps because time.sleep() resumes after a signal handler returns.
        """
        deadline = time.monotonic() + timeout_s
        while not self.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(WAIT_STEP_S, left))
        return self.requested

    def asked_again(self) -> Callable[[], bool]:
        """A test that turns true once another stop is asked for after this call."""
        seen = self.count
        return lambda: self.count > seen


# Supervising named children


@dataclass
class Child:
    """One supervised process: a name, what to run and where; leader of its own group."""

    name: str
    argv: list[str]
    cwd: Cwd = None
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def poll(self) -> int | None:
        """The exit code, or None while it runs (or was never started)."""
        return None if self.process is None else self.process.poll()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def started(self) -> subprocess.Popen:
        assert self.process is not None, f"{self.name} was never started"
        return self.process


Report = Callable[[Child], object]


def _ignore(child: Child) -> None:
    pass


class Supervisor:
    """Named children, each in its own group: started, reaped, restarted, stopped together.

    The stop is one policy for all: SIGTERM, optionally again halfway through
    the grace, then SIGKILL to every group whose leader has not exited.
    term_whole_group=False sends the SIGTERMs to the leaders only, for a leader
    that shuts down warm by finishing its work, which its own helpers (a git
    command) must be left alive to do. term_again_halfway turns an RQ worker's
    warm shutdown, which waits for the job at hand, into a cold one.
    on_start, on_exit and on_stop report: after a start, when a child is found
    exited on its own (before its group is killed), after a stopped one is reaped.
    stdout and stderr: where every child's output goes (a PIPE: on_start reads it).
    """

    def __init__(
        self,
        grace_s: float,
        *,
        stdin: Redirect = None,
        stdout: Redirect = None,
        stderr: Redirect = None,
        die_with_parent: bool = False,
        term_whole_group: bool = True,
        term_again_halfway: bool = False,
        poll_s: float = 0.2,
        on_start: Report = _ignore,
        on_exit: Report = _ignore,
        on_stop: Report = _ignore,
    ) -> None:
        self.grace_s = grace_s
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.die_with_parent = die_with_parent
        self.term_whole_group = term_whole_group
        self.term_again_halfway = term_again_halfway
        self.poll_s = poll_s
        self.on_start, self.on_exit, self.on_stop = on_start, on_exit, on_stop
        self.children: dict[str, Child] = {}

    def start(self, child: Child) -> Child:
        # Registered before it is spawned: a stop after a failed start still covers it.
        self.children[child.name] = child
        child.process = spawn(
            child.argv,
            cwd=child.cwd,
            env=child.env,
            stdin=self.stdin,
            stdout=self.stdout,
            stderr=self.stderr,
            die_with_parent=self.die_with_parent,
        )
        self.on_start(child)
        return child

    def first_exited(self) -> Child | None:
        return next((c for c in self.children.values() if c.poll() is not None), None)

    def wait_for_exit(self, stopping: StopRequest, timeout_s: float | None = None) -> Child | None:
        """Wait until a child exits (return it), or a stop is requested or
        timeout_s passes (return None)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not stopping.requested:
            if (child := self.first_exited()) is not None:
                return child
            if deadline is not None and time.monotonic() >= deadline:
                break
            stopping.wait(self.poll_s)
        return None

    def reap_exited(self) -> list[Child]:
        """Forget the children that exited on their own, killing what they left behind."""
        exited = [child for child in self.children.values() if child.poll() is not None]
        for child in exited:
            self.on_exit(child)
            kill_group(child.pid)  # e.g. a command it started and could not stop
            del self.children[child.name]
        return exited

    def keep(self, wanted: Sequence[Child]) -> None:
        """Make the children exactly `wanted`, by name: reap the exited, stop the
        unwanted, start the missing. Called in a loop, it restarts a child that
        died at the next call: the loop's interval is the backoff."""
        self.reap_exited()
        names = {child.name for child in wanted}
        self.stop(sorted(set(self.children) - names))
        for child in wanted:
            if child.name not in self.children:
                self.start(child)

    def stop(
        self, names: Iterable[str] | None = None, *, hurry: Callable[[], bool] | None = None
    ) -> None:
        """Stop the named children (default: all) together and forget them.

        A name not (or no longer) supervised is skipped. hurry() true (another
        Ctrl-C) skips the rest of the grace.
        """
        names = list(self.children) if names is None else list(names)
        children = [self.children.pop(name) for name in names if name in self.children]
        started = [child for child in children if child.process is not None]
        self._terminate(started)
        start = time.monotonic()
        resent = not self.term_again_halfway
        while any(child.running for child in started):
            elapsed = time.monotonic() - start
            if elapsed >= self.grace_s or (hurry is not None and hurry()):
                break
            if not resent and elapsed >= self.grace_s / 2:
                self._terminate([child for child in started if child.running])
                resent = True
            time.sleep(self.poll_s / 2)
        # Whatever is left in the groups, leaders or strays, goes now.
        for child in started:
            kill_group(child.pid)
        for child in started:
            child.started.wait()
            self.on_stop(child)

    def _terminate(self, children: Iterable[Child]) -> None:
        for child in children:
            if self.term_whole_group:
                signal_group(child.pid, signal.SIGTERM)
            else:
                child.started.send_signal(signal.SIGTERM)
