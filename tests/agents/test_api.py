"""The agents' API: bearer tokens, own sessions only, JSON errors with the right status."""

import json

import pytest
from django.test import Client

from agents.models import Agent, Session, Submission
from beads.models import Bead, Dependency
from knowledge.models import Learning
from tests.factories import git, make_patch

pytestmark = pytest.mark.django_db(transaction=True)


class Api:
    def __init__(self, token=None):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path, **params):
        return self.client.get(f"/api/v1/{path}", params, headers=self.headers)

    def post(self, path, body=None, raw=None):
        data = raw if raw is not None else json.dumps(body or {})
        return self.client.post(
            f"/api/v1/{path}", data, content_type="application/json", headers=self.headers
        )


def new_agent(name="agent-1", **fields):
    agent = Agent(name=name, preset="shell", internal=False, **fields)
    agent.save()
    return agent, Api(agent.plain_token)


@pytest.fixture
def api(db):
    return new_agent()


def test_no_token_is_401_and_a_wrong_token_too(repo):
    assert Api().get("ready").status_code == 401
    response = Api("crl_wrong").post("claim")
    assert response.status_code == 401 and "detail" in response.json()


def test_a_deactivated_agents_token_is_401(repo):
    agent, client = new_agent()
    assert client.get("ready").status_code == 200
    Agent.objects.filter(pk=agent.pk).update(active=False)
    assert client.get("ready").status_code == 401


def test_a_logged_in_person_may_read_but_not_claim(repo, user):
    Bead.objects.create(repository=repo, title="x")
    browser = Api()
    browser.client.force_login(user)
    assert browser.get("ready").status_code == 200
    response = browser.post("claim")
    assert response.status_code in (403, 401)


def test_ready_lists_in_hook_order(repo, api):
    _, client = api
    low = Bead.objects.create(repository=repo, title="low", priority=3)
    top = Bead.objects.create(repository=repo, title="top", priority=0)
    body = client.get("ready", repo=repo.slug).json()
    assert [b["id"] for b in body] == [top.id, low.id]
    assert body[0]["repo"] == repo.slug


def test_claim_returns_what_an_agent_needs(repo, api):
    agent, client = api
    bead = Bead.objects.create(
        repository=repo, title="Fix it", acceptance_criteria="tests pass", scope=["src/**"]
    )
    body = client.post("claim", {"repo": repo.slug}).json()
    assert body["bead"]["id"] == bead.id
    assert body["clone_url"] == f"http://testserver/git/{repo.slug}.git"
    assert body["base_sha"] == git(repo.canonical_path, "rev-parse", repo.branch)
    assert "tests pass" in body["context"] and "`src/**`" in body["context"]
    assert Session.objects.get(pk=body["session"]).agent == agent
    response = client.post("claim", {"repo": repo.slug})
    assert response.status_code == 409 and "nothing is ready" in response.json()["detail"]


def test_claim_of_a_taken_bead_is_409_and_an_unknown_one_404(repo, api):
    _, client = api
    bead = Bead.objects.create(repository=repo, title="x")
    assert client.post("claim", {"bead": bead.id}).status_code == 200
    taken = client.post("claim", {"bead": bead.id})
    assert taken.status_code == 409 and "in progress" in taken.json()["detail"]
    assert client.post("claim", {"bead": "nope-1234"}).status_code == 404
    assert client.post("claim", {"repo": "nope"}).status_code == 404


def test_heartbeat_log_and_release_act_only_on_own_sessions(repo, api):
    _, mine = api
    _, theirs = new_agent("agent-2")
    bead = Bead.objects.create(repository=repo, title="x")
    session = mine.post("claim").json()["session"]
    for path, body in [("heartbeat", {}), ("log", {"text": "hi"}), ("release", {"reason": "x"})]:
        assert theirs.post(f"sessions/{session}/{path}", body).status_code == 403
    beat = mine.post(f"sessions/{session}/heartbeat").json()
    assert beat["status"] == "running"  # an external agent's first heartbeat starts it
    assert mine.post(f"sessions/{session}/log", {"text": "line 1\n"}).json() == {"seq": 0}
    assert mine.post(f"sessions/{session}/log", {"text": "line 2\n"}).json() == {"seq": 1}
    released = mine.post(f"sessions/{session}/release", {"reason": "too big"})
    assert released.json()["status"] == "cancelled"
    bead.refresh_from_db()
    assert bead.status == "open" and bead.attempts == 1 and "too big" in bead.last_failure
    assert mine.post(f"sessions/{session}/release", {"reason": "again"}).status_code == 409
    assert mine.post(f"sessions/{session}/heartbeat").status_code == 409


def test_submit_queues_the_patch_for_the_lead(repo, api, rq_redis):
    _, client = api
    Bead.objects.create(repository=repo, title="x", scope=["docs/**"])
    claimed = client.post("claim").json()
    _, patch = make_patch(repo, {"docs/a.md": "hello\n"}, base=claimed["base_sha"])
    body = {
        "patch": patch,
        "summary": "Wrote docs.",
        "learnings": [{"title": "Docs live in docs/", "body": "Put docs there.", "tags": ["docs"]}],
    }
    response = client.post(f"sessions/{claimed['session']}/submit", body)
    assert response.status_code == 201, response.json()
    assert response.json()["changed_files"] == ["docs/a.md"]
    submission = Submission.objects.get(pk=response.json()["submission"])
    assert submission.status == "queued" and submission.bead.status == "review"
    assert Learning.objects.get().status == "candidate"
    again = client.post(f"sessions/{claimed['session']}/submit", body)
    assert again.status_code == 409


@pytest.mark.parametrize(
    "body, status, says",
    [
        ({"patch": "just some text"}, 400, "not a git diff"),
        ({"patch": "diff --git a/x b/x", "bogus": 1}, 422, "bogus"),
        ({"summary": "no patch"}, 422, "patch"),
    ],
)
def test_submit_refuses_bad_input_clearly(repo, api, body, status, says):
    _, client = api
    Bead.objects.create(repository=repo, title="x")
    session = client.post("claim").json()["session"]
    response = client.post(f"sessions/{session}/submit", body)
    assert response.status_code == status
    assert says in json.dumps(response.json()["detail"])
    assert Session.objects.get(pk=session).status == "claimed"  # nothing lost


def test_an_oversize_patch_is_413(repo, api, settings):
    settings.MAX_PATCH_BYTES = 1000
    _, client = api
    Bead.objects.create(repository=repo, title="x")
    session = client.post("claim").json()["session"]
    response = client.post(f"sessions/{session}/submit", {"patch": "diff --git " + "x" * 2000})
    assert response.status_code == 413


def test_malformed_json_is_a_4xx_with_a_detail(repo, api):
    _, client = api
    response = client.post("claim", raw="{not json")
    assert 400 <= response.status_code < 500
    assert "detail" in response.json()


def test_unknown_ids_are_404(api):
    _, client = api
    unknown = client.get("no/such/endpoint")
    assert unknown.status_code == 404 and unknown.json() == {"detail": "No such endpoint."}
    assert client.get("beads/nope-1").status_code == 404
    missing = "00000000-0000-0000-0000-000000000000"
    assert client.post(f"sessions/{missing}/heartbeat").status_code == 404
    assert client.post("sessions/not-a-uuid/heartbeat").status_code == 422


def test_create_a_bead_discovered_from_another(repo, api):
    _, client = api
    parent = Bead.objects.create(repository=repo, title="parent", scope=["src/**"])
    client.post("claim", {"bead": parent.id})  # an agent files from the bead it works on
    response = client.post(
        "beads", {"title": "Found a bug", "discovered_from": parent.id, "scope": ["src/**"]}
    )
    assert response.status_code == 201
    created = response.json()
    assert created["id"].startswith(f"{repo.bead_prefix}-") and created["repo"] == repo.slug
    assert created["status"] == "proposed"  # for a person to accept
    assert created["dependencies"] == [
        {"depends_on": parent.id, "type": "discovered-from", "status": "in_progress"}
    ]
    assert Dependency.objects.get(issue_id=created["id"]).type == "discovered-from"
    assert client.get(f"beads/{created['id']}").json()["scope"] == ["src/**"]


def test_create_refuses_bad_fields(repo, api):
    _, client = api
    assert client.post("beads", {"title": "x"}).status_code == 422  # no repository
    assert client.post("beads", {"repo": repo.slug, "title": ""}).status_code == 422
    assert client.post("beads", {"repo": repo.slug, "title": "x", "priority": 9}).status_code == 422
    assert client.post("beads", {"repo": repo.slug, "title": "a\x00b"}).status_code == 422
    assert client.post("beads", {"repo": repo.slug, "title": "x"}).status_code == 422  # no parent
    assert not Bead.objects.exists()


def test_inject_ranks_learnings_within_the_budget(repo, make_repo, api):
    _, client = api
    other = make_repo("other")
    for title, body, where in [
        ("Migrations", "Run makemigrations after model changes.", repo),
        ("Migrations elsewhere", "Models need migrations too.", other),
        ("Unrelated", "Coffee is in the kitchen.", other),
    ]:
        Learning.objects.create(
            workspace=repo.workspace, repository=where, title=title, body=body, status="approved"
        )
    bead = Bead.objects.create(repository=repo, title="Add a field to the models")
    assert client.post("claim", {"bead": bead.id}).status_code == 200  # its work: a live session
    body = client.get("inject", bead=bead.id).json()
    titles = [item["title"] for item in body["learnings"]]
    assert titles[:2] == ["Migrations", "Migrations elsewhere"]  # across repositories
    assert "Unrelated" not in titles
    assert set(body["learnings"][0]["parts"]) == {
        "relevance",
        "affinity",
        "freshness",
        "utility",
        "maturity",
        "refuted",
    }
    small = client.get("inject", repo=repo.slug, q="migrations models", budget=60).json()
    # An agent's search: its repository's learnings and the workspace-wide ones.
    assert small["chars"] <= 60 and small["found"] == 1
    assert client.get("inject").status_code == 422


def test_propose_a_learning(repo, api):
    _, client = api
    Bead.objects.create(repository=repo, title="x")
    assert client.post("claim", {"repo": repo.slug}).status_code == 200  # it works here
    response = client.post(
        "learnings", {"title": "Tip", "body": "Use pathspec.", "repo": repo.slug}
    )
    assert response.status_code == 201 and response.json()["status"] == "candidate"
    assert Learning.objects.get().repository == repo


def test_the_openapi_document_and_docs_page_are_served(client):
    schema = client.get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    for path in ["/api/v1/ready", "/api/v1/claim", "/api/v1/sessions/{session_id}/submit"]:
        assert path in paths
    docs = client.get("/api/v1/docs").content.decode()
    assert "cdn" not in docs.lower()
