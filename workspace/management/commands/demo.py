from collections import Counter

from django.core.management.base import BaseCommand, CommandError

from workspace import demo


class Command(BaseCommand):
    help = (
        "Seed a demo workspace: three small repositories with history, about twenty beads "
        "across them and two demo agents. Does nothing if the demo is already there."
    )

    def handle(self, *args, **opts):
        try:
            seeded = demo.seed()
        except demo.DemoError as e:
            raise CommandError(str(e)) from None
        if seeded.already:
            names = ", ".join(repo.slug for repo in seeded.repositories)
            self.stdout.write(f"The demo workspace is already there ({names}); nothing changed.")
            return
        self.report(seeded)

    def report(self, seeded):
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
        out("Agents (preset demo, run by Corral's workers):")
        for agent, token in seeded.agents:
            shown = token or "already existed, token unchanged"
            out(f"  {agent.name}  {shown}")
        if any(token for _, token in seeded.agents):
            out("Keep the tokens now: they are stored hashed and shown only this once.")
        out(f"Sources (the repositories' upstreams): {seeded.source_dir}")
