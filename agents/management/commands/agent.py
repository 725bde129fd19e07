import shlex
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.models import Agent
from agents.presets import PRESETS


class Command(BaseCommand):
    help = "Create, list and rotate the tokens of agents."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create an agent and print its token once")
        create.add_argument("name")
        create.add_argument("--preset", required=True, choices=sorted(PRESETS))
        create.add_argument("--command", help="argv template, split like a shell would")
        create.add_argument("--minutes", type=int, help="session time limit")
        create.add_argument(
            "--external", action="store_true", help="the agent drives the API itself"
        )
        sub.add_parser("list", help="list agents")
        rotate = sub.add_parser("rotate", help="replace an agent's token and print the new one")
        rotate.add_argument("name")

    def handle(self, *args: Any, action: str, **opts: Any) -> None:
        getattr(self, action)(**opts)

    def create(
        self,
        name: str,
        preset: str,
        command: str | None,
        minutes: int | None,
        external: bool,
        **_: Any,
    ) -> None:
        if Agent.objects.filter(name=name).exists():
            raise CommandError(f"an agent named {name!r} already exists")
        try:
            argv = shlex.split(command) if command else []
        except ValueError as e:
            raise CommandError(f"cannot parse --command: {e}") from None
        agent = Agent(
            name=name, preset=preset, command=argv, session_minutes=minutes, internal=not external
        )
        try:
            agent.full_clean(exclude=["token_hash"])
        except ValidationError as e:
            raise CommandError("; ".join(e.messages)) from None
        agent.save()
        self.stdout.write(f"Created agent {agent.name} ({agent.get_preset_display()}).")
        self.stdout.write(f"Token (shown once): {agent.plain_token}")

    def list(self, **_: Any) -> None:
        for agent in Agent.objects.all():
            kind = "internal" if agent.internal else "external"
            state = "active" if agent.active else "inactive"
            argv = shlex.join(agent.command)
            self.stdout.write(
                f"{agent.name}\t{agent.preset}\t{kind}\t{state}\t{agent.token_hint}…\t{argv}"
            )

    def rotate(self, name: str, **_: Any) -> None:
        agent = Agent.objects.filter(name=name).first()
        if agent is None:
            raise CommandError(f"no agent named {name!r}")
        token = agent.rotate_token()
        self.stdout.write(f"New token for {agent.name} (shown once; the old one no longer works):")
        self.stdout.write(token)
