import os
import signal
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from agents import reconcile
from workspace.models import Repository
from workspace.processes import Child, StopRequest, Supervisor

PUSH_RETRY_S = 60
STOP_GRACE_S = 8  # under `up`'s own grace, so the workers stop before it kills us


def lead_worker(slug: str) -> Child:
    return Child(slug, [sys.executable, "manage.py", "leadworker", slug], cwd=settings.BASE_DIR)


class Command(BaseCommand):
    help = "Keep exactly one lead worker per active repository, until SIGTERM or Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between looks")

    def handle(self, *args: Any, interval: float, **opts: Any) -> None:
        stopping = StopRequest(signals=(signal.SIGTERM, signal.SIGINT)).install()
        self.workers = Supervisor(
            STOP_GRACE_S,
            # SIGTERM to the worker alone: it finishes the job at hand (RQ's warm
            # shutdown), whose git commands must live to the end of it.
            term_whole_group=False,
            on_start=lambda child: self.say(
                f"started lead worker for {child.name} (pid {child.pid})"
            ),
            on_exit=lambda child: self.say(
                f"lead worker for {child.name} exited with code {child.poll()}; restarting",
                err=True,
            ),
            on_stop=lambda child: self.say(f"stopped lead worker for {child.name}"),
        )
        self.say(f"lead supervisor running (pid {os.getpid()})")
        next_push_retry = time.monotonic() + PUSH_RETRY_S
        while not stopping.requested:
            # A worker that died is restarted here, one interval later at most.
            self.workers.keep([lead_worker(slug) for slug in sorted(self.active_slugs())])
            if time.monotonic() >= next_push_retry:
                reconcile.retry_pushes()
                next_push_retry = time.monotonic() + PUSH_RETRY_S
            stopping.wait(interval)
        self.workers.stop()
        self.say("lead supervisor stopped")

    def active_slugs(self) -> set[str]:
        slugs = set(Repository.objects.filter(active=True).values_list("slug", flat=True))
        connections.close_all()  # hold no connection while idle
        return slugs

    def say(self, line: str, err: bool = False) -> None:
        stream = self.stderr if err else self.stdout
        stream.write(line)
        stream.flush()
