import os
import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from agents.jobs import forge, lead, leadpool, reconcile, upstream
from agents.moves import changesets
from workspace.models import Repository
from workspace.processes import StopRequest

PUSH_RETRY_S = 60
STOP_GRACE_S = 8  # under `up`'s own grace, so the workers stop before it kills us


class Command(BaseCommand):
    help = "Keep a fixed number of lead workers serving every repository, until SIGTERM or Ctrl-C."
    # The system checks import every URL and view: a worker serves none, and
    # `manage.py check` (and every web process) runs them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between looks")
        parser.add_argument(
            "--workers",
            type=int,
            default=settings.LEAD_WORKERS,
            help="lead workers, how many repositories land at once "
            f"(default CORRAL_LEAD_WORKERS, {settings.LEAD_WORKERS})",
        )

    def handle(self, *args: Any, interval: float, workers: int, **opts: Any) -> None:
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        stopping = StopRequest(signals=(signal.SIGTERM, signal.SIGINT)).install()
        self.requeue_waiting()
        pool = leadpool.Pool(workers, self.say)
        self.say(f"lead supervisor running (pid {os.getpid()}), {workers} lead worker(s)")
        next_push_retry = time.monotonic() + PUSH_RETRY_S
        next_forge_poll = time.monotonic()
        next_fetch = time.monotonic()
        while not stopping.requested:
            pool.keep()  # a worker that died is restarted here, one interval later at most
            if time.monotonic() >= next_fetch:
                self.follow_upstreams()
                next_fetch = time.monotonic() + settings.UPSTREAM_FETCH_SECONDS
            if time.monotonic() >= next_push_retry:
                reconcile.retry_pushes()
                connections.close_all()  # hold no connection while idle
                next_push_retry = time.monotonic() + PUSH_RETRY_S
            if time.monotonic() >= next_forge_poll:  # pull-request mode's requests
                forge.poll_due()
                connections.close_all()
                next_forge_poll = time.monotonic() + settings.FORGE_POLL_SECONDS
            stopping.wait(interval)
        pool.stop(STOP_GRACE_S)
        self.say("lead supervisor stopped")

    def follow_upstreams(self) -> None:
        """The schedule: each upstream Corral pushes to is fetched and followed."""
        try:
            upstream.enqueue_follows()
        except Exception as e:  # a database or Redis hiccup: the next round tries again
            self.say(f"could not ask to follow the upstreams: {e}", True)
        finally:
            connections.close_all()

    def requeue_waiting(self) -> None:
        """Submissions in flight when the last lead stopped get a drain again."""
        for repo in Repository.objects.filter(active=True):
            if waiting := lead.requeue_waiting(repo):
                self.say(f"{waiting} submission(s) in flight for {repo.slug}: queued again")
        # A change set's job left running by a lead that died never finishes: again.
        for changeset, _ in changesets.in_flight():
            changesets.enqueue_again(changeset)
            self.say(f"change set {changeset.pk} in flight: queued again")
        connections.close_all()

    def say(self, line: str, err: bool = False) -> None:
        stream = self.stderr if err else self.stdout
        stream.write(line)
        stream.flush()
