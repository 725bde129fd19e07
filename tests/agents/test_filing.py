"""What agents may file and see: beads agents file are proposed, in the repository
and within the scope of the bead they work on; a check's output is scrubbed and
shown only to people and to the bead's own sessions; text with control
characters is refused with the field named."""

import json

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from agents.models import Agent, GateResult, Session, Submission
from agents.moves import lifecycle
from beads import hook, scopes
from beads.models import Bead, Dependency
from tests.factories import make_patch, run_lead, submit
from workspace import roles

pytestmark = pytest.mark.django_db(transaction=True)


class Api:
    def __init__(self, token=None, user=None):
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        if user is not None:
            self.client.force_login(user)

    def get(self, path, **params):
        return self.client.get(f"/api/v1/{path}", params, headers=self.headers)

    def post(self, path, body=None):
        return self.client.post(
            f"/api/v1/{path}",
            json.dumps(body or {}),
            content_type="application/json",
            headers=self.headers,
        )


def external_agent(name="agent-1"):
    agent = Agent(name=name, preset="shell", internal=False)
    agent.save()
    return agent, Api(agent.plain_token)


@pytest.fixture
def working(repo):
    """An agent with a live session on a bead scoped to src/**: (agent, api, session)."""
    Bead.objects.create(repository=repo, title="Grow the app", scope=["src/**"])
    agent, api = external_agent()
    session = lifecycle.claim(agent, repository=repo)
    return agent, api, session


@pytest.fixture
def operator(user):
    roles.assign(user, roles.OPERATOR)
    return user


def found(parent, **fields):
    return {"title": "Found a bug", "discovered_from": parent.id, **fields}


def test_an_agents_bead_in_another_repository_is_403(repo, make_repo, working):
    _, api, session = working
    other = make_repo("other")
    elsewhere = Bead.objects.create(repository=other, title="elsewhere", scope=["src/**"])

    response = api.post("beads", found(session.bead, repo=other.slug, scope=["src/x.py"]))
    assert response.status_code == 403
    assert "only in the repository it works in (app)" in response.json()["detail"]
    # Nor beside a bead it does not work on, there or here.
    assert api.post("beads", found(elsewhere, scope=["src/x.py"])).status_code == 403
    mine = Bead.objects.create(repository=repo, title="not claimed", scope=["src/**"])
    assert api.post("beads", found(mine, scope=["src/x.py"])).status_code == 403
    assert not Bead.objects.filter(title="Found a bug").exists()


def test_an_agent_must_say_what_it_was_working_on(repo, working):
    _, api, _ = working
    response = api.post("beads", {"title": "Found a bug", "repo": repo.slug})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("discovered_from: ")


def test_a_session_tokens_bead_is_proposed_in_its_repository_never_dispatched(
    repo, make_repo, working, rq_redis
):
    agent, _, session = working
    api = Api(session.issue_token())
    other = make_repo("other")
    response = api.post("beads", found(session.bead, scope=["src/api/**"]))
    assert response.status_code == 201, response.content
    created = Bead.objects.get(pk=response.json()["id"])
    assert (created.repository, created.status) == (repo, Bead.Status.PROPOSED)
    assert (created.filed_by_agent, created.filed_by) == (agent.name, None)
    dependency = Dependency.objects.get(issue=created)
    assert (dependency.depends_on, dependency.type) == (session.bead, "discovered-from")

    # Not ready: no claim, by bead or from the hook, and no dispatch takes it.
    assert created not in hook.ready()
    internal = Agent.objects.create(name="internal-1", preset="shell", internal=True)
    with pytest.raises(hook.NothingReady):
        lifecycle.claim(internal, repositories=[repo.pk])
    with pytest.raises(hook.NotClaimable, match="Proposed"):
        lifecycle.claim(internal, bead=created)
    # A session token works in its session's repository only.
    assert api.post("beads", found(session.bead, repo=other.slug)).status_code == 404


def test_an_agent_token_files_beside_a_bead_it_holds_a_live_session_on(repo, working):
    _, api, session = working
    assert api.post("beads", found(session.bead, scope=["src/a.py"])).status_code == 201
    lifecycle.release(session, "done looking")
    # Its session over, it works on the bead no more.
    response = api.post("beads", found(session.bead, scope=["src/b.py"]))
    assert response.status_code == 403 and "no live session" in response.json()["detail"]


@pytest.mark.parametrize("scope", [["**"], ["docs/**"], ["src"], ["src/**", "README.md"], []])
def test_a_scope_wider_than_the_parents_is_422(repo, working, scope):
    _, api, session = working
    response = api.post("beads", found(session.bead, scope=scope))
    assert response.status_code == 422
    assert response.json()["detail"].startswith("scope: ")
    assert "a person can widen the scope" in response.json()["detail"]
    assert not Bead.objects.filter(title="Found a bug").exists()


@pytest.mark.parametrize(
    "scope, parent, beyond",
    [
        (["src/**"], ["src/**"], []),  # the same pattern
        (["src/api/**", "src/*.py", "/src/x"], ["src/**"], []),  # under its directory
        (["src/api/**"], ["/src/"], []),  # an anchored directory
        (["src/api/**"], ["src/"], ["src/api/**"]),  # `src/` is any src/ at any depth
        (["src/x", "!src/x/y"], ["src/**"], []),  # a negation only narrows
        (["lib/**", "src/a"], ["src/**"], ["lib/**"]),
        (["src/**"], ["src/api/**"], ["src/**"]),  # wider than the parent
        (["src/../etc/**"], ["src/**"], ["src/../etc/**"]),  # no `..` games
        (["**/src/a"], ["src/**"], ["**/src/a"]),  # at any depth
        (["src"], ["src/**"], ["src"]),  # unanchored: src at any depth
        (["src/"], ["src/**"], ["src/"]),
        (["s*/x"], ["s*/**"], ["s*/x"]),  # a wildcard directory proves nothing
        (["anything/at/all", "*.md"], ["**"], []),  # the parent may change anything
        (["src/api/**"], ["src/**", "!src/secret/**"], []),  # clear of the exclusion
        (["src/secret/a"], ["src/**", "!src/secret/**"], ["src/secret/a"]),
        (["src/*.py"], ["src/**", "!src/secret/**"], ["src/*.py"]),  # might reach into it
        (["src/a"], ["src/**", "!*.key"], ["src/a"]),  # an exclusion at any depth
        (["src/**", "# note", ""], ["src/**"], []),  # comments and blanks add nothing
        ([], ["src/**"], ["(no scope, which is any path)"]),
    ],
)
def test_scopes_are_compared_as_patterns(scope, parent, beyond):
    assert scopes.beyond(scope, parent, unscoped_ok=False) == beyond


def test_an_unscoped_parent(db):
    # Unscoped is any path where the repository allows it, none where it does not.
    assert scopes.beyond(["docs/**"], [], unscoped_ok=True) == []
    assert scopes.beyond(["docs/**"], [], unscoped_ok=False) == ["docs/**"]
    assert scopes.beyond([], [], unscoped_ok=False) == []


def test_agents_file_ready_makes_an_agents_bead_open(repo, working):
    _, api, session = working
    repo.agents_file_ready = True
    repo.save()
    response = api.post("beads", found(session.bead, scope=["src/a.py"]))
    assert response.status_code == 201
    created = Bead.objects.get(pk=response.json()["id"])
    assert created.status == Bead.Status.OPEN and created in hook.ready()


def test_a_persons_bead_is_open_anywhere_in_any_scope(repo, operator):
    person = Api(user=operator)
    response = person.post("beads", {"title": "Wider work", "repo": repo.slug, "scope": ["**"]})
    assert response.status_code == 201, response.content
    created = Bead.objects.get(pk=response.json()["id"])
    assert (created.status, created.filed_by, created.filed_by_agent) == ("open", operator, "")
    assert created in hook.ready()


def test_a_person_without_the_role_may_not_file(repo):
    viewer = get_user_model().objects.create_user("bob", password="correct horse battery")
    roles.assign(viewer, roles.VIEWER)
    response = Api(user=viewer).post("beads", {"title": "x", "repo": repo.slug})
    assert response.status_code == 403 and "operator" in response.json()["detail"]
    assert not Bead.objects.exists()


def test_accepting_a_proposal_in_the_admin_makes_it_ready(repo, working, admin_client):
    _, api, session = working
    created = api.post("beads", found(session.bead, scope=["src/a.py"])).json()
    open_one = Bead.objects.create(repository=repo, title="already open")
    response = admin_client.post(
        reverse("admin:beads_bead_changelist"),
        {"action": "accept", "_selected_action": [created["id"], open_one.pk]},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "Accepted 1 bead.",
        "Skipped 1 bead whose status does not allow this.",
    ]
    bead = Bead.objects.get(pk=created["id"])
    assert bead.status == Bead.Status.OPEN and bead in hook.ready()


def test_proposed_beads_show_on_the_repository_page(repo, working, logged_in):
    _, api, session = working
    created = api.post("beads", found(session.bead, scope=["src/a.py"])).json()
    html = logged_in.get(f"/repos/{repo.slug}/").content.decode()
    group = html.split('data-status="proposed"', 1)[1].split("</section>", 1)[0]
    assert created["id"] in group and "Found a bug" in group
    assert "agent-1" in group  # who proposed it


# Control characters: refused with the field named.


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"title": "bad\x00title"}, "title"),
        ({"title": "tab\tin a title"}, "title"),
        ({"description": "ring\x07"}, "description"),
        ({"labels": ["ok", "b\x1bd"]}, "labels"),
        ({"scope": ["src/\x00"]}, "scope"),
        ({"acceptance_criteria": "\x0c"}, "acceptance_criteria"),
    ],
)
def test_control_characters_are_422_with_the_field_named(repo, operator, fields, named):
    body = {"title": "ok", "repo": repo.slug, **fields}
    response = Api(user=operator).post("beads", body)
    assert response.status_code == 422
    assert named in json.dumps(response.json()["detail"])
    assert not Bead.objects.exists()


def test_multiline_text_keeps_tabs_and_line_breaks(repo, operator):
    body = {"title": "ok", "repo": repo.slug, "description": "a\tb\r\nc\n"}
    assert Api(user=operator).post("beads", body).status_code == 201


@pytest.mark.parametrize(
    "path, body",
    [
        ("sessions/{session}/release", {"reason": "stuck\x00"}),
        ("sessions/{session}/log", {"text": "nul\x00"}),
        ("sessions/{session}/submit", {"patch": "", "summary": "a\x00b"}),
        ("learnings", {"title": "t\x01", "body": "b"}),
    ],
)
def test_other_texts_agents_send_refuse_control_characters(working, path, body):
    _, api, session = working
    response = api.post(path.format(session=session.pk), body)
    assert response.status_code == 422, response.content
    session.refresh_from_db()
    assert session.status == "claimed"


def test_the_model_refuses_control_characters_for_the_admin(repo, admin_client):
    add = reverse("admin:beads_bead_add")
    data = {
        "repository": repo.pk,
        "title": "escape \x1b[31m",
        "priority": 2,
        "issue_type": "task",
        "labels": "[]",
        "scope": '["src/**"]',
        "dependencies-TOTAL_FORMS": 0,
        "dependencies-INITIAL_FORMS": 0,
    }
    response = admin_client.post(add, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "control character U+001B" in str(errors["title"])
    assert not Bead.objects.exists()


# A check's output: scrubbed where it is stored, shown to people and the bead's sessions.


def test_a_checks_output_is_stored_scrubbed_and_shown_only_to_the_right_eyes(
    repo, agent, rq_redis, user
):
    leaked = f"SECRET_KEY={settings.SECRET_KEY}\nREDIS_URL={settings.REDIS_URL}\n"
    leaked += "DSN postgres://corral:pw-in-url@db:5432/corral\n"
    repo.check_command = "cat leak.txt no-such-file"
    repo.save()
    bead = Bead.objects.create(repository=repo, title="Leak", scope=["**"])
    base, patch = make_patch(repo, {"leak.txt": leaked})
    sub = submit(bead, agent, patch, base)
    run_lead(repo)

    sub.refresh_from_db()
    bead.refresh_from_db()
    check = GateResult.objects.get(submission=sub, gate="check")
    assert sub.status == Submission.Status.REJECTED and check.passed is False
    stored = [
        check.detail,
        sub.reason,
        bead.last_failure,
        Session.objects.get(pk=sub.session_id).error,
    ]
    assert "no-such-file" in bead.last_failure  # the output is there, its secrets not
    for text in stored:
        for secret in (settings.SECRET_KEY, settings.REDIS_URL, "pw-in-url"):
            assert secret not in text
    assert "[redacted]" in bead.last_failure

    # Another agent sees the bead, not why it failed; a person sees both.
    _, rival = external_agent("rival")
    shown = rival.get(f"beads/{bead.id}").json()
    assert shown["title"] == "Leak" and shown["last_failure"] == ""
    assert Api(user=user).get(f"beads/{bead.id}").json()["last_failure"] == bead.last_failure

    # The agent that claims it next sees it, in the bead and in its context.
    claimer, api = external_agent("claimer")
    claimed = api.post("claim", {"bead": bead.id}).json()
    assert claimed["bead"]["last_failure"] == bead.last_failure
    assert "no-such-file" in claimed["context"] and settings.SECRET_KEY not in claimed["context"]
    assert api.get(f"beads/{bead.id}").json()["last_failure"] == bead.last_failure
    assert rival.get(f"beads/{bead.id}").json()["last_failure"] == ""
