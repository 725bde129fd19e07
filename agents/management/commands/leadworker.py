import os
import socket
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from rq import SimpleWorker

from agents import integration, lead, queues
from workspace.models import Repository


class Command(BaseCommand):
    help = "Run the lead worker of one repository (`manage.py lead` starts these)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the repository's slug")
        parser.add_argument("--burst", action="store_true", help="stop when the queue is empty")

    def handle(self, *args: Any, slug: str, burst: bool, **opts: Any) -> None:
        repo = Repository.objects.filter(slug=slug).first()
        if repo is None:
            raise CommandError(f"no repository {slug!r}")
        requeued = lead.requeue_waiting(repo)
        if requeued:
            self.stdout.write(f"{requeued} submission(s) in flight for {repo.slug}: queued again")
        resumed = integration.resume_in_flight(repo.pk)
        if resumed:
            self.stdout.write(f"{resumed} change set(s) in flight from {repo.slug}: finished")
        connections.close_all()
        # Jobs run in this process, not a forked one: a lead's jobs are short
        # git plumbing, and the fork would cost more than the work.
        worker = SimpleWorker(
            [queues.lead_queue(repo)],
            connection=queues.connection(),
            name=f"lead-{repo.slug}-{socket.gethostname()}-{os.getpid()}",
        )
        worker.work(burst=burst, logging_level="WARNING")
