from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from corral import demo, demo_run


class Command(BaseCommand):
    help = (
        "Seed a demo workspace: three small repositories with history, about twenty beads "
        "across them and two demo agents. Does nothing if the demo is already there. "
        "With --run, then drive it to the end here: the demo agents claim and work the "
        "beads, and each repository's lead lands them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--run",
            action="store_true",
            help="after seeding (if needed), land every open demo bead in this process; "
            "needs Redis",
        )

    def handle(self, *args: Any, run: bool = False, **opts: Any) -> None:
        if run:
            try:
                demo_run.check_redis()  # before seeding: fail fast, with nothing changed
            except demo_run.RunError as e:
                raise CommandError(str(e)) from None
        try:
            seeded = demo.seed()
        except demo.DemoError as e:
            raise CommandError(str(e)) from None
        if seeded.already:
            names = ", ".join(repo.slug for repo in seeded.repositories)
            if run:
                self.stdout.write(f"The demo workspace is already there ({names}).")
            else:
                self.stdout.write(
                    f"The demo workspace is already there ({names}); nothing changed."
                )
        else:
            self.report(seeded, hint=not run)
        if run:
            self.run()

    def run(self) -> None:
        runner = demo_run.Run(self.stdout.write)
        try:
            outcome = runner.execute()
        except demo_run.RunError as e:
            raise CommandError(str(e)) from None
        except KeyboardInterrupt:
            raise CommandError("interrupted; run demo --run again to carry on") from None
        for line in runner.summary(outcome):
            self.stdout.write(line)
        if not outcome.ok:
            ids = ", ".join(bead.id for bead, _ in outcome.stuck)
            raise CommandError(f"{len(outcome.stuck)} demo bead(s) did not land: {ids} (see above)")

    def report(self, seeded: demo.Seeded, hint: bool = True) -> None:
        out = self.stdout.write
        workspace = seeded.repositories[0].workspace
        out(f"Seeded the demo in the {workspace.name} workspace:")
        per_repo = Counter(bead.repository_id for bead in seeded.beads)
        width = max(len(repo.name) for repo in seeded.repositories)
        for repo in seeded.repositories:
            ids = f"{repo.bead_prefix}-…"
            out(
                f"  {repo.name:<{width}}  {per_repo[repo.pk]:>2} beads {ids:<9} "
                f"review: {repo.review_mode:<5}  check: {repo.check_command}"
            )
        statuses = Counter(bead.get_status_display().lower() for bead in seeded.beads)
        across = sum(
            dep.issue.repository_id != dep.depends_on.repository_id for dep in seeded.dependencies
        )
        out(
            f"{len(seeded.beads)} beads ("
            + ", ".join(f"{n} {status}" for status, n in statuses.most_common())
            + f"), {len(seeded.dependencies)} dependencies, {across} across repositories."
        )
        for changeset in seeded.changesets:
            members = ", ".join(m.bead_id for m in changeset.member_list())
            out(f"Change set {changeset.pk} ({members}) lands together: {changeset.title}")
        out("Agents (preset demo, run by Corral's workers):")
        for agent, token in seeded.agents:
            shown = token or "already existed, token unchanged"
            out(f"  {agent.name}  {shown}")
        if any(token for _, token in seeded.agents):
            out("Keep the tokens now: they are stored hashed and shown only this once.")
        out(f"Sources (the repositories' upstreams): {seeded.source_dir}")
        if seeded.plan is not None:
            out(f"A draft plan to look at and activate: {seeded.plan} (/plans/{seeded.plan.pk}/)")
        if hint:
            out(
                "To land the beads: `manage.py up` runs the demo agents in its workers; "
                "`manage.py demo --run` runs them here, to the end."
            )
