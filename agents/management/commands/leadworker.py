from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from agents.jobs import integration, lead, leadpool
from workspace.models import Repository


class Command(BaseCommand):
    help = "Run one lead worker serving every repository (`manage.py lead` keeps a pool of them)."
    # The system checks import every URL and view: a worker serves none, and
    # `manage.py check` (and every web process) runs them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "slug", nargs="?", help="queue again the work in flight of this repository only"
        )
        parser.add_argument("--burst", action="store_true", help="stop when the queue is empty")

    def handle(self, *args: Any, slug: str | None, burst: bool, **opts: Any) -> None:
        repos = Repository.objects.filter(active=True)
        if slug is not None:
            repos = Repository.objects.filter(slug=slug)
            if not repos.exists():
                raise CommandError(f"no repository {slug!r}")
        for repo in repos:
            if requeued := lead.requeue_waiting(repo):
                self.stdout.write(
                    f"{requeued} submission(s) in flight for {repo.slug}: queued again"
                )
            if resumed := integration.resume_in_flight(repo.pk):
                self.stdout.write(f"{resumed} change set(s) in flight from {repo.slug}: finished")
        connections.close_all()
        leadpool.work("lead", burst=burst)
