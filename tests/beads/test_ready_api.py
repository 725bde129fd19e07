"""GET /api/v1/ready renders the hook's rows itself: exactly what ninja would
send after validating each row as BeadOut, on random workspaces."""

import json
import random

import pytest
from django.test import Client
from ninja.responses import NinjaJSONEncoder

from agents.models import Agent
from beads import hook
from beads.api import BeadOut
from tests.beads.test_ready_sql import random_world

pytestmark = pytest.mark.django_db


def validated(rows):
    """What ninja's own path sends: each row validated as BeadOut, then dumped."""
    return json.dumps(
        [BeadOut.model_validate(row).model_dump() for row in rows], cls=NinjaJSONEncoder
    )


@pytest.mark.parametrize("seed", range(4))
def test_the_ready_answer_is_the_schemas_rendering_of_the_hooks_rows(seed):
    _, repos = random_world(random.Random(seed))
    agent = Agent.objects.create(name="reader", preset="shell", internal=False)
    client = Client(headers={"Authorization": f"Bearer {agent.plain_token}"})
    answered = 0
    for repo in [None, *repos]:
        params = {"limit": 7} if repo is None else {"repo": repo.slug, "limit": 7}
        response = client.get("/api/v1/ready", params)
        assert response.status_code == 200
        assert response["Content-Type"] == "application/json; charset=utf-8"
        rows = hook.ready_rows(7, repository=repo)
        assert response.content.decode() == validated(rows)
        assert [b["id"] for b in response.json()] == [r["id"] for r in rows]
        answered += len(rows)
    assert answered  # some repository had ready work
