"""A fixed number of lead workers, forked from one process, serving every repository.

The lead queue is one for all repositories and each repository's lock keeps
one writer there, so the number of workers is how many repositories may land
at once, not how many there are. The workers are forked from `manage.py lead`
once it has imported everything, so they share its memory (copy on write)
instead of each loading Django again: `up` stays the same size whether it
serves three repositories or thirty.

Each worker is an RQ SimpleWorker (jobs run in the worker: a lead's jobs are
short git plumbing) in a process group of its own, so that a stop's SIGTERM
reaches the worker alone and the git commands of the job at hand finish
(RQ's warm shutdown).
"""

import gc
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable

from django.db import connections
from rq import SimpleWorker

from agents import queues
from agents.jobs import heartbeat
from agents.models import WorkerBeat
from workspace import processes

WAIT_STEP_S = 0.1


def work(name: str, burst: bool = False) -> None:
    """Serve the lead queue in this process until stopped (or, with burst, until
    it is empty), beating under the worker's RQ name, the one its jobs carry:
    reconcile() enqueues again the jobs of a worker that stopped beating."""
    worker = SimpleWorker(
        [queues.lead_queue()],
        connection=queues.connection(),
        job_class=queues.Job,
        name=f"{name}-{socket.gethostname()}-{os.getpid()}",
    )
    with heartbeat.Heartbeat(worker.name, WorkerBeat.Kind.LEAD):
        worker.work(burst=burst, logging_level="WARNING")


class Pool:
    """`size` forked lead workers, numbered from 1; keep() restarts those that exited."""

    def __init__(self, size: int, say: Callable[[str, bool], object]) -> None:
        self.size = size
        self.say = say
        self.pids: dict[int, int] = {}  # number -> pid

    def keep(self) -> None:
        self.reap()
        for number in range(1, self.size + 1):
            if number not in self.pids:
                self.pids[number] = self.fork(number)
                self.say(f"started lead worker {number} (pid {self.pids[number]})", False)

    def reap(self) -> None:
        for number, pid in list(self.pids.items()):
            if (code := exit_code(pid)) is not None:
                del self.pids[number]
                self.say(f"lead worker {number} exited with code {code}; restarting", True)

    def fork(self, number: int) -> int:
        connections.close_all()  # a connection is never shared with a child
        gc.freeze()  # what is loaded now stays shared: the collector never writes to it
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:
            os.setpgid(0, 0)
            processes.die_with_parent()
            if os.getppid() != parent:  # it died before that took effect
                os._exit(1)
            for sig in (signal.SIGTERM, signal.SIGINT):  # RQ installs its own in work()
                signal.signal(sig, signal.SIG_DFL)
            work(f"lead-{number}")
            code = 0
        except BaseException:  # never return into the parent's loop, whatever happened
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def stop(self, grace_s: float) -> None:
        """SIGTERM each worker (the job at hand finishes), SIGKILL the groups of those
        still running after grace_s and anything a worker left behind."""
        for pid in self.pids.values():
            send(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        left = dict(self.pids)
        while left and time.monotonic() < deadline:
            left = {n: pid for n, pid in left.items() if exit_code(pid) is None}
            time.sleep(WAIT_STEP_S)
        for number, pid in self.pids.items():
            processes.kill_group(pid)
            if number in left:
                os.waitpid(pid, 0)
            self.say(f"stopped lead worker {number}", False)
        self.pids = {}


def exit_code(pid: int) -> int | None:
    """The child's exit code once it has exited (negative: a signal), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return -1
    return os.waitstatus_to_exitcode(status) if done else None


def send(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
