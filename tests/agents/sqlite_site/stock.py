"""Stock a Corral site on its own SQLite database (CORRAL_HOME, no DATABASE_URL):
one repository registered from argv[1] with argv[2] ready beads, argv[3]
external agents. Prints {"tokens": [...], "repo": slug} as JSON."""

import json
import sys

import django

django.setup()

from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0)  # a no-op on the tests' migrated copy

from agents.models import Agent  # noqa: E402
from beads.models import Bead  # noqa: E402
from workspace.models import Repository, Workspace  # noqa: E402

source, beads, agents = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
repo = Repository.register(source, Workspace.default(), name="busy", max_agents=100_000)
Bead.objects.bulk_create(
    [
        Bead(id=f"{repo.bead_prefix}-{i:05d}", repository=repo, title=f"bead {i}")
        for i in range(beads)
    ]
)
tokens = []
for i in range(agents):
    agent = Agent(name=f"claimer-{i}", preset="shell", internal=False)
    agent.save()
    tokens.append(agent.plain_token)
print(json.dumps({"tokens": tokens, "repo": repo.slug}))
