"""`manage.py beads import PATH|- --repo SLUG` and `manage.py beads export --repo
SLUG --output PATH|-`: a repository's beads from and to bd's JSONL."""

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from beads import jsonl
from beads.models import Bead
from workspace.models import Repository


class Command(BaseCommand):
    help = "Import or export a repository's beads as bd's JSONL (.beads/issues.jsonl)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        into = actions.add_parser("import", help="create or update beads from a JSONL file")
        into.add_argument("path", help="the JSONL file, or - for standard input")
        into.add_argument("--repo", required=True, help="the repository's slug")
        out = actions.add_parser("export", help="write a repository's beads as JSONL")
        out.add_argument("--repo", required=True, help="the repository's slug")
        out.add_argument("--output", default="-", help="the file to write, or - (the default)")

    def handle(self, *args: Any, **opts: Any) -> None:
        repo = Repository.objects.filter(slug=opts["repo"]).first()
        if repo is None:
            raise CommandError(f"no repository {opts['repo']!r}")
        if opts["action"] == "import":
            self.import_file(repo, opts["path"])
        else:
            self.export_file(repo, opts["output"])

    def import_file(self, repo: Repository, path: str) -> None:
        try:
            records = jsonl.read_numbered(sys.stdin if path == "-" else path)
            result = jsonl.import_records(records, repo)
        except OSError as e:
            raise CommandError(f"cannot read {path}: {e.strerror or e}") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise CommandError(f"nothing imported: {e}") from None
        self.stderr.write(f"Imported into {repo.slug}: {result.summary()}.")

    def export_file(self, repo: Repository, path: str) -> None:
        beads = Bead.objects.filter(repository=repo).order_by("id")
        records = jsonl.export_records(beads.prefetch_related("dependencies", "comments__person"))
        if path == "-":
            jsonl.write(records, self.stdout)
            return
        try:
            with open(path, "w", encoding="utf-8") as stream:
                jsonl.write(records, stream)
        except OSError as e:
            raise CommandError(f"cannot write {path}: {e.strerror or e}") from None
