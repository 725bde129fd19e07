"""A Corral process under test: started with an argv, its output read line by line."""

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from workspace import processes

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate, timeout=90, what="condition"):
    """Poll until predicate() is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def group_members(pgid):
    """Live (non-zombie) processes in a process group, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _ppid, pgrp = text.rpartition(")")[2].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def stat_fields(pid):
    """(state, ppid, pgrp) of a process from /proc, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid, pgrp = text.rpartition(")")[2].split()[:3]
    return state, int(ppid), int(pgrp)


def alive(pid):
    """The process runs (it exists and is not a zombie)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def descendants(pid):
    """The live processes below pid (children, theirs, ...), whatever their group."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = stat_fields(stat.parent.name)
        if fields is not None and fields[0] != "Z":
            parents[int(stat.parent.name)] = fields[1]
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


class Running:
    """`python <argv>` in its own process group, stdout and stderr collected."""

    def __init__(self, argv, env, start_timeout=60):
        self.start_timeout = start_timeout
        self.lines = []
        self.changed = threading.Condition()
        self.proc = processes.spawn(
            [sys.executable, *argv],
            cwd=ROOT,
            env=dict(env, PYTHONUNBUFFERED="1"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()

    @property
    def output(self):
        with self.changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern, timeout=None, start=0):
        """The first match of pattern in a line of output (from line `start`);
        fails on timeout or exit."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + (timeout or self.start_timeout)
        with self.changed:
            seen = start
            while True:
                for line in self.lines[seen:]:
                    if m := regex.search(line):
                        return m
                seen = max(seen, len(self.lines))
                if self.proc.poll() is not None and not self.changed.wait(0.5):
                    pytest.fail(
                        f"exited ({self.proc.returncode}) before {pattern!r}:\n{self.output}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(f"no {pattern!r} in time:\n{self.output}")
                self.changed.wait(0.2)

    def wait(self, timeout=60):
        """The exit code, once it has exited and all its output is read."""
        code = self.proc.wait(timeout)
        self.reader.join(timeout)
        return code

    def kill_group(self):
        if self.proc.poll() is None or group_members(self.proc.pid):
            processes.kill_group(self.proc.pid)
            self.proc.wait()
