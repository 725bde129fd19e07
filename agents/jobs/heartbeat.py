"""A worker's heartbeat: a thread that says, every few seconds, this process is alive.

A session runner beats while it runs a session, a lead worker for as long as
it serves the lead queue. A worker killed (SIGKILL, the OOM killer, its
machine gone) stops beating, and reconcile() finds it within
CORRAL_WORKER_DEAD_SECONDS and a tick: its session is lost and its agent
killed, its lead jobs enqueued again. A thread, not the worker's own loop: a
lead worker in a long check command, or a runner in a slow clone, is busy but
alive.
"""

import logging
import os
import socket
import threading
from types import TracebackType

from django.conf import settings
from django.db import connections

from agents.models import WorkerBeat

log = logging.getLogger(__name__)


def interval_s() -> float:
    # Four beats in a dead worker's time: one late beat (a slow database) is not death.
    return settings.WORKER_DEAD_SECONDS / 4


class Heartbeat:
    """`with Heartbeat(name, kind):` beats under `name` until the block ends; the
    first beat is made before the block starts, so the row is there before any
    row names the worker."""

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="worker-heartbeat")

    def __enter__(self) -> "Heartbeat":
        WorkerBeat.beat(self.name, self.kind, socket.gethostname(), os.getpid())
        self.thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self.thread.join()
        try:
            WorkerBeat.gone(self.name)
        except Exception:  # the database is away: reconcile() forgets the row later
            log.exception("could not remove the heartbeat of %s", self.name)

    def run(self) -> None:
        while not self.stopping.wait(interval_s()):
            try:
                WorkerBeat.beat(self.name, self.kind, socket.gethostname(), os.getpid())
            except Exception:  # a database hiccup: the next beat tries again
                log.exception("heartbeat of %s failed", self.name)
            finally:
                connections.close_all()  # this thread's own; none held between beats
