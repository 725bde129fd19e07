import argparse
import os
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from workspace.gitops import GitError
from workspace.models import Repository, Workspace


class Command(BaseCommand):
    help = "Register a repository: clone it into Corral's canonical bare copy."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "source", help="a local path, or an https://, ssh://, git:// or user@host:path URL"
        )
        parser.add_argument("--name", help="display name (default: the folder's name)")
        parser.add_argument("--branch", help="branch to land on (default: the source's HEAD)")
        parser.add_argument("--check-command", default="", help='e.g. "pytest -q"')
        parser.add_argument("--review", choices=["auto", "human"], default="auto")
        parser.add_argument("--prefix", default="", help="bead ID prefix (default: from the name)")
        parser.add_argument("--max-agents", type=int, default=3)
        parser.add_argument("--workspace", default="default", help="workspace slug")
        parser.add_argument("--land-via", choices=["direct", "pr"], default="direct")
        parser.add_argument("--forge", choices=["github", "gitlab", "gitea"], default="")
        parser.add_argument("--forge-url", default="", help="the forge's API root")
        parser.add_argument("--forge-repo", default="", help="owner/name on the forge")
        parser.add_argument(
            "--forge-token-env",
            default="CORRAL_FORGE_TOKEN",
            help="the environment variable holding the forge token (never an argument: "
            "a command line is visible to every user of the machine)",
        )
        parser.add_argument("--forge-checks-gate", action="store_true")
        parser.add_argument(
            "--push",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="follow the upstream and push each landing to it (default: on; "
            "--no-push keeps Corral's branch its own)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        workspace = Workspace.objects.filter(slug=opts["workspace"]).first()
        if workspace is None and opts["workspace"] != "default":
            raise CommandError(f"no workspace {opts['workspace']!r}")
        try:
            repo = Repository.register(
                opts["source"],
                workspace or Workspace.default(),
                name=opts["name"],
                branch=opts["branch"],
                check_command=opts["check_command"],
                review_mode=opts["review"],
                bead_prefix=opts["prefix"],
                max_agents=opts["max_agents"],
                land_via=opts["land_via"],
                forge=opts["forge"],
                forge_url=opts["forge_url"],
                forge_repo=opts["forge_repo"],
                forge_token=os.environ.get(opts["forge_token_env"], ""),
                forge_checks_gate=opts["forge_checks_gate"],
                push=opts["push"],
            )
        except GitError as e:
            raise CommandError(str(e)) from None
        except OSError as e:  # git itself missing or not runnable
            raise CommandError(f"cannot run git: {e.strerror or e}") from None
        except ValidationError as e:
            raise CommandError("; ".join(e.messages)) from None
        self.stdout.write(
            f"Registered {repo.name} ({repo.slug}) on {repo.branch}, "
            f"beads {repo.bead_prefix}-…, canonical copy {repo.canonical_path}"
        )
        if repo.push:
            self.stdout.write(
                f"Push on: each landing goes to {repo.upstream}. Its push webhook: POST "
                f"<Corral's URL>{reverse('upstream-hook', args=[repo.slug])} "
                "(set a secret on the repository's page)"
            )
