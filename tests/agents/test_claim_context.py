"""The context pack fetched after the claim: `POST claim?context=later` answers
without it, `GET sessions/{id}/context` builds it once for the session's own
agent; clients that do not say so still get it in the claim's answer."""

import json

import pytest
from django.test import Client

from agents.models import Agent, Session
from beads.models import Bead
from knowledge.models import Injection, Learning
from tests.races import race

pytestmark = pytest.mark.django_db(transaction=True)


def agent_client(name="agent-1"):
    agent = Agent(name=name, preset="shell", internal=False)
    agent.save()
    return Client(headers={"Authorization": f"Bearer {agent.plain_token}"})


def claim(client, path="/api/v1/claim", **headers):
    response = client.post(path, "{}", content_type="application/json", headers=headers)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def bead(repo):
    Learning.objects.create(
        workspace=repo.workspace, repository=repo, title="Grow carefully", body="grow the app",
        status=Learning.Status.APPROVED,
    )  # fmt: skip
    return Bead.objects.create(repository=repo, title="Grow the app", scope=["src/**"])


def test_a_claim_that_says_later_carries_no_pack_and_the_route_gives_it(bead):
    client = agent_client()
    claimed = claim(client, "/api/v1/claim?context=later")
    assert claimed["context"] is None
    assert claimed["context_url"].endswith(f"/api/v1/sessions/{claimed['session']}/context")
    session = Session.objects.get(pk=claimed["session"])
    assert session.context == "" and session.context_chars == 0  # nothing built yet

    pack = client.get(f"/api/v1/sessions/{claimed['session']}/context").json()
    assert pack["bead"] == bead.id and "# Grow the app" in pack["context"]
    session.refresh_from_db()
    assert session.context == pack["context"]


def test_the_header_says_later_too(bead):
    claimed = claim(agent_client(), **{"X-Corral-Context": "later"})
    assert claimed["context"] is None


def test_an_old_client_still_gets_the_pack_in_the_claim(bead):
    client = agent_client()
    claimed = claim(client)
    assert "# Grow the app" in claimed["context"]
    # Asked again through the route: the pack that was kept, not a second one.
    again = client.get(f"/api/v1/sessions/{claimed['session']}/context").json()
    assert again["context"] == claimed["context"]
    assert Injection.objects.filter(session=claimed["session"]).count() == 1


def test_the_pack_is_built_once_however_often_it_is_asked(bead):
    client = agent_client()
    claimed = claim(client, "/api/v1/claim?context=later")
    path = f"/api/v1/sessions/{claimed['session']}/context"
    packs = {client.get(path).json()["context"] for _ in range(3)}
    assert len(packs) == 1
    assert Injection.objects.filter(session=claimed["session"]).count() == 1


def fetch_context(token, session_id):
    client = Client(headers={"Authorization": f"Bearer {token}"})
    return client.get(f"/api/v1/sessions/{session_id}/context").json()["context"]


@pytest.mark.slow
def test_eight_calls_at_once_keep_one_pack(bead):
    agent = Agent(name="racer", preset="shell", internal=False)
    agent.save()
    client = Client(headers={"Authorization": f"Bearer {agent.plain_token}"})
    claimed = claim(client, "/api/v1/claim?context=later")
    packs = race(fetch_context, [(agent.plain_token, claimed["session"])] * 8)
    assert len(set(packs)) == 1
    assert Session.objects.get(pk=claimed["session"]).context == packs[0]
    assert Injection.objects.filter(session=claimed["session"]).count() == 1


def test_another_agents_session_is_403_and_an_unknown_one_404(bead):
    claimed = claim(agent_client(), "/api/v1/claim?context=later")
    other = agent_client("agent-2")
    response = other.get(f"/api/v1/sessions/{claimed['session']}/context")
    assert response.status_code == 403 and "another agent" in response.json()["detail"]
    missing = other.get("/api/v1/sessions/00000000-0000-0000-0000-000000000000/context")
    assert missing.status_code == 404


def test_an_ended_session_without_a_pack_is_409(bead):
    client = agent_client()
    claimed = claim(client, "/api/v1/claim?context=later")
    reason = json.dumps({"reason": "not for me"})
    path = f"/api/v1/sessions/{claimed['session']}"
    client.post(f"{path}/release", reason, content_type="application/json")
    response = client.get(f"{path}/context")
    assert response.status_code == 409 and "released" not in response.json()["detail"].lower()
    assert "no context pack" in response.json()["detail"]
