import getpass
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from knowledge import agentops
from knowledge.models import Learning
from workspace import audit
from workspace.models import Repository, Workspace


class Command(BaseCommand):
    help = "Import and export agentops .agents/learnings/*.md files."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        load = sub.add_parser("import", help="import a learnings file or folder (all or nothing)")
        load.add_argument("path")
        load.add_argument("--repo", help="the repository they belong to (default: workspace-wide)")
        load.add_argument(
            "--approve",
            action="store_true",
            help="approve them (an admin's decision, audited); default: candidates",
        )
        dump = sub.add_parser("export", help="write learnings as agentops files")
        dump.add_argument("--repo", help="only this repository's (default: every one)")
        dump.add_argument("--output", required=True, help="the folder to write into")

    def handle(self, *args: Any, action: str, **opts: Any) -> None:
        getattr(self, f"do_{action}")(**opts)

    def do_import(self, path: str, repo: str | None, approve: bool, **_: Any) -> None:
        source = Path(path)
        if not source.exists() and not source.is_symlink():
            raise CommandError(f"{path}: no such file or folder")
        repository = repository_named(repo)
        try:
            parts, broken, skipped = agentops.read_all(source)
        except agentops.Refused as e:
            raise CommandError(str(e)) from None
        for line in skipped:
            self.stderr.write(line)
        if broken:
            raise CommandError(
                f"{len(broken)} broken file(s), nothing imported: " + "; ".join(broken)
            )
        workspace = repository.workspace if repository else Workspace.default()
        created, updated, ids = agentops.import_parts(parts, workspace, repository, approve)
        if approve:
            audit.record(
                audit.Action.LEARNINGS_IMPORT,
                f"{len(ids)} learning(s) from {path}",
                repository=repository,
                detail="approved on import (--approve): " + ", ".join(f"#{pk}" for pk in ids),
                actor_name=f"{shell_user()} (manage.py)",
            )
        self.stdout.write(
            f"Imported {created} new and {updated} updated learning(s)"
            + (", approved." if approve else " as candidates: an operator approves them.")
        )

    def do_export(self, repo: str | None, output: str, **_: Any) -> None:
        repository = repository_named(repo)
        learnings = Learning.objects.exclude(status=Learning.Status.RETIRED)
        if repository is not None:
            learnings = learnings.filter(repository=repository)
        files = agentops.export_files(learnings.order_by("pk"))
        target = Path(output)
        if target.exists() and not target.is_dir():
            raise CommandError(f"{output}: not a folder")
        try:
            agentops.write(files, target)
        except (agentops.BrokenFile, OSError) as e:
            raise CommandError(str(e)) from None
        self.stdout.write(f"Wrote {len(files)} file(s) to {output}.")


def repository_named(slug: str | None) -> Repository | None:
    if slug is None:
        return None
    repository = Repository.objects.filter(slug=slug).first()
    if repository is None:
        raise CommandError(f"no repository {slug!r}")
    return repository


def shell_user() -> str:
    """Who runs the command, for the audit: a shell on Corral's machine is an admin's."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a container's uid)
        return f"uid {os.getuid()}"
