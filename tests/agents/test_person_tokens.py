"""People's API tokens: made, rotated and revoked on the account page, stored
hashed, acting through the API as their person with the person's role, never
as an agent; and the routes people script with them (edit and close a bead,
start and activate a plan, review submissions)."""

import base64
import hashlib
import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from agents.models import Agent, Submission
from beads.models import Bead, Dependency, Plan
from tests.factories import land, run_lead
from tests.races import race
from workspace import roles
from workspace.audit import Action, AuditEntry
from workspace.tokens import PersonToken

pytestmark = pytest.mark.django_db(transaction=True)
PLAIN = re.compile(r"crp_[A-Za-z0-9_\-]{43}")


class Api:
    """/api/v1/ as a script calls it: a bearer token, JSON in and out."""

    def __init__(self, token, client=None):
        self.client = client or Client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path, **params):
        return self.client.get(f"/api/v1/{path}", params, headers=self.headers)

    def post(self, path, body=None):
        return self.send("post", path, body)

    def patch(self, path, body=None):
        return self.send("patch", path, body)

    def send(self, method, path, body):
        return getattr(self.client, method)(
            f"/api/v1/{path}",
            json.dumps(body or {}),
            content_type="application/json",
            headers=self.headers,
        )


def person(name, role=None):
    someone = get_user_model().objects.create_user(name, password="correct horse battery")
    if role is not None:
        roles.assign(someone, role)
    return someone


def api_for(someone, name="script"):
    return Api(PersonToken.issue(someone, name).plain_token)


@pytest.fixture
def api(user):
    return api_for(user)


@pytest.fixture
def agent(db):
    return Agent.objects.create(name="worker", preset="shell")


def created(client, name="CI"):
    """Make a token on the account page; its plain text, as the page shows it once."""
    response = client.post("/account/tokens/new", {"name": name})
    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
    return PLAIN.search(response.content.decode()).group()


def detail(response):
    return response.json()["detail"]


# --- the account page --------------------------------------------------------------------


def test_a_token_is_stored_hashed_and_shown_only_once(logged_in, user, repo):
    assert "No token yet." in logged_in.get("/account/").content.decode()
    plain = created(logged_in)

    token = PersonToken.objects.get(person=user)
    assert token.token_hash == hashlib.sha256(plain.encode()).hexdigest()
    assert token.hint == plain[-4:] and token.name == "CI"
    stored = json.dumps(list(PersonToken.objects.values()), default=str)
    assert plain not in stored and plain[4:] not in stored
    again = logged_in.get("/account/").content.decode()
    assert plain not in again and f"crp_…{plain[-4:]}" in again

    entry = AuditEntry.objects.get(action=Action.API_TOKEN_CREATE)
    assert entry.actor == user and entry.target == "alice's token CI"
    assert plain not in entry.detail
    assert Api(plain).get("beads").status_code == 200


def test_two_live_tokens_cannot_share_a_name(logged_in, user):
    created(logged_in, "CI")
    response = logged_in.post("/account/tokens/new", {"name": "CI"})
    assert response.status_code == 409
    assert "You have a live token of that name" in response.content.decode()
    assert PersonToken.objects.filter(person=user).count() == 1


def test_rotating_gives_a_new_secret_and_the_old_one_stops_at_once(logged_in, user, repo):
    old = created(logged_in)
    token = PersonToken.objects.get(person=user)
    response = logged_in.post(f"/account/tokens/{token.pk}/rotate")
    new = PLAIN.search(response.content.decode()).group()
    assert new != old and "no-store" in response["Cache-Control"]
    assert Api(old).get("beads").status_code == 401
    assert Api(new).get("beads").status_code == 200
    token.refresh_from_db()
    assert token.rotated_at is not None and token.hint == new[-4:]
    assert AuditEntry.objects.filter(action=Action.API_TOKEN_ROTATE, actor=user).count() == 1


def test_a_revoked_token_is_401_and_revoking_twice_changes_nothing(logged_in, user, repo):
    plain = created(logged_in)
    token = PersonToken.objects.get(person=user)
    response = logged_in.post(f"/account/tokens/{token.pk}/revoke", follow=True)
    assert "Revoked CI: it no longer works." in response.content.decode()
    assert Api(plain).get("beads").status_code == 401
    response = logged_in.post(f"/account/tokens/{token.pk}/revoke", follow=True)
    assert "CI was revoked already." in response.content.decode()
    lost = logged_in.post(f"/account/tokens/{token.pk}/rotate", follow=True)
    assert "was revoked or rotated meanwhile" in lost.content.decode()
    assert Api(plain).get("beads").status_code == 401
    assert AuditEntry.objects.filter(action=Action.API_TOKEN_REVOKE).count() == 1
    # Its name is free again for a new token.
    assert PLAIN.fullmatch(created(logged_in, "CI"))


def test_a_stale_rotate_loses_to_the_revoke_that_came_first(user):
    token = PersonToken.issue(user, "CI")
    seen = PersonToken.objects.get(pk=token.pk)
    assert token.revoke()
    assert not seen.rotate()
    assert seen.revoked_at is not None
    assert PersonToken.objects.authenticate(token.plain_token) is None


def test_nobody_rotates_or_revokes_anothers_token(logged_in, viewer, repo):
    theirs = PersonToken.issue(viewer, "theirs")
    assert logged_in.post(f"/account/tokens/{theirs.pk}/rotate").status_code == 404
    assert logged_in.post(f"/account/tokens/{theirs.pk}/revoke").status_code == 404
    assert Api(theirs.plain_token).get("beads").status_code == 200


def test_the_account_page_needs_a_login_and_changes_only_on_post(client, logged_in, user):
    anonymous = Client()
    assert anonymous.get("/account/")["Location"].startswith("/login/")
    assert anonymous.post("/account/tokens/new", {"name": "x"}).status_code == 302
    assert not PersonToken.objects.exists()
    assert logged_in.get("/account/tokens/new").status_code == 405
    assert 'href="/account/"' in logged_in.get("/").content.decode()  # in the navigation


def test_a_name_with_a_control_character_is_refused(logged_in, user):
    response = logged_in.post("/account/tokens/new", {"name": "CI\u202e"})
    assert response.status_code == 400 and "control character U+202E" in response.content.decode()


# --- who a person's token is ------------------------------------------------------------


def test_unknown_tokens_and_deactivated_people_are_401(user, repo):
    assert Api("crp_" + "x" * 43).get("beads").status_code == 401
    api = api_for(user)
    assert api.get("beads").status_code == 200
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    assert api.get("beads").status_code == 401


def test_a_viewers_token_reads_but_does_not_write(viewer, repo):
    bead = Bead.objects.create(repository=repo, title="Read me")
    api = api_for(viewer)
    assert api.get(f"beads/{bead.pk}").json()["title"] == "Read me"
    assert api.get("reviews").status_code == 200
    for response in [
        api.post("beads", {"repo": repo.slug, "title": "Mine"}),
        api.patch(f"beads/{bead.pk}", {"title": "Changed"}),
        api.post(f"beads/{bead.pk}/close"),
        api.post("plans", {"name": "p", "beads": [bead.pk]}),
    ]:
        assert response.status_code == 403, response.content
        assert "needs the operator role" in detail(response)
    bead.refresh_from_db()
    assert (bead.title, bead.status) == ("Read me", "open")
    assert Bead.objects.count() == 1 and not Plan.objects.exists()


def test_an_account_with_no_role_gets_nothing(repo):
    api = api_for(person("nobody"))
    response = api.get("beads")
    assert response.status_code == 403 and detail(response) == roles.NO_ROLE


def test_a_persons_token_never_passes_as_an_agents(user, repo, client):
    Bead.objects.create(repository=repo, title="Ready work")
    api = api_for(user)
    response = api.post("claim")
    assert response.status_code == 403 and "Only an agent can do this" in detail(response)
    assert api.post("learnings", {"title": "t", "body": "b"}).status_code == 403
    basic = base64.b64encode(f"alice:{api.headers['Authorization'][7:]}".encode()).decode()
    git = client.get(
        f"/git/{repo.slug}.git/info/refs",
        {"service": "git-upload-pack"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert git.status_code == 401
    assert Bead.objects.get().status == "open"


def test_an_agents_token_cannot_do_peoples_work(repo):
    agent = Agent(name="outside", preset="shell", internal=False)
    agent.save()
    api = Api(agent.plain_token)
    bead = Bead.objects.create(repository=repo, title="Mine to keep")
    for response in [
        api.get("reviews"),
        api.patch(f"beads/{bead.pk}", {"title": "x"}),
        api.post(f"beads/{bead.pk}/close"),
        api.post("plans", {"name": "p", "beads": [bead.pk]}),
    ]:
        assert response.status_code == 403 and "Only a person can do this" in detail(response)


def test_a_bearer_call_needs_no_csrf_token_and_acts_as_its_person(user, repo):
    browser = Client(enforce_csrf_checks=True)
    api = Api(PersonToken.issue(user, "CI").plain_token, client=browser)
    response = api.post("beads", {"repo": repo.slug, "title": "Filed from CI"})
    assert response.status_code == 201, response.content
    bead = Bead.objects.get(pk=response.json()["id"])
    assert bead.filed_by == user and bead.status == "open"
    assert AuditEntry.objects.get(action=Action.BEAD_EDIT).actor == user
    # A dashboard login still needs the CSRF token: it is the bearer that is exempt.
    browser.force_login(user)
    response = browser.post(
        "/api/v1/beads",
        json.dumps({"repo": repo.slug, "title": "No CSRF"}),
        content_type="application/json",
    )
    assert response.status_code == 403 and Bead.objects.count() == 1


def test_using_a_token_is_recorded(user, repo):
    token = PersonToken.issue(user, "CI")
    assert token.last_used_at is None
    Api(token.plain_token).get("beads")
    token.refresh_from_db()
    assert token.last_used_at is not None


# --- editing and closing beads ----------------------------------------------------------


def test_an_edit_is_written_only_over_the_version_read(api, repo):
    epic = Bead.objects.create(repository=repo, title="Epic", issue_type="epic")
    bead = Bead.objects.create(repository=repo, title="Old title", scope=["src/**"])
    Dependency.objects.create(issue=bead, depends_on=epic, type="parent-child")
    seen = api.get(f"beads/{bead.pk}").json()["updated_at"]

    response = api.patch(
        f"beads/{bead.pk}", {"title": "New title", "priority": 0, "updated_at": seen}
    )
    assert response.status_code == 200, response.content
    assert response.json()["title"] == "New title" and response.json()["updated_at"] != seen
    stale = api.patch(f"beads/{bead.pk}", {"title": "Over it", "updated_at": seen})
    assert stale.status_code == 409 and "changed since the version you read" in detail(stale)

    bead.refresh_from_db()
    assert (bead.title, bead.priority, bead.scope) == ("New title", 0, ["src/**"])
    assert list(bead.parents()) == [epic]  # links not named are kept
    entry = AuditEntry.objects.filter(action=Action.BEAD_EDIT).first()
    assert entry.detail == "edited title, priority through the API"


def test_an_edit_sets_blockers_and_refuses_bad_input(api, repo):
    a = Bead.objects.create(repository=repo, title="A")
    b = Bead.objects.create(repository=repo, title="B")
    assert api.patch(f"beads/{b.pk}", {"waits_for": [a.pk]}).status_code == 200
    assert list(b.blockers()) == [a]
    for body, status, says in [
        ({"waits_for": [b.pk]}, 422, "cycle of blocking dependencies"),
        ({"waits_for": ["app-nope"]}, 422, "No such bead: app-nope"),
        ({"parent": b.pk, "waits_for": [b.pk]}, 422, "One dependency per pair"),
        ({"priority": 9}, 422, "priority"),
        ({"status": "closed"}, 422, "status"),
        ({"title": "bad\u202eone"}, 422, "title"),
    ]:
        response = api.patch(f"beads/{a.pk}", body)
        assert response.status_code == status, (body, response.content)
        assert says in json.dumps(response.json()), (body, response.json())
    assert api.patch("beads/app-nope", {"title": "x"}).status_code == 404
    a.refresh_from_db()
    assert a.title == "A" and not a.blockers().exists()


def test_closing_is_the_same_move_as_every_entry_points(api, repo):
    epic = Bead.objects.create(repository=repo, title="Epic", issue_type="epic")
    child = Bead.objects.create(repository=repo, title="Last child")
    Dependency.objects.create(issue=child, depends_on=epic, type="parent-child")
    response = api.post(f"beads/{child.pk}/close", {"reason": "done by hand"})
    assert response.status_code == 200 and response.json()["close_reason"] == "done by hand"
    epic.refresh_from_db()
    assert epic.status == "closed"  # what follows any close followed this one
    again = api.post(f"beads/{child.pk}/close")
    assert again.status_code == 409 and "it cannot be closed" in detail(again)
    held = Bead.objects.create(repository=repo, title="Held")
    held.start("someone")
    assert api.post(f"beads/{held.pk}/close").status_code == 409
    entry = AuditEntry.objects.filter(target__startswith=child.pk).first()
    assert entry.detail == "Closed through the API" and entry.actor.username == "alice"


# --- plans ------------------------------------------------------------------------------


def test_a_plan_starts_from_beads_or_from_waves_and_activates(api, repo):
    a, b, c = (Bead.objects.create(repository=repo, title=t) for t in "ABC")
    Dependency.objects.create(issue=b, depends_on=a, type="blocks")
    proposed = api.post("plans", {"name": "Proposed", "beads": [a.pk, b.pk]})
    assert proposed.status_code == 201, proposed.content
    assert proposed.json()["waves"] == [[a.pk], [b.pk]]  # the planner's order
    given = api.post("plans", {"name": "Given", "waves": [[c.pk], [a.pk, b.pk]]})
    assert given.json()["waves"] == [[c.pk], [a.pk, b.pk]] and given.json()["status"] == "draft"

    plan = given.json()["id"]
    active = api.post(f"plans/{plan}/activate")
    assert active.status_code == 200 and active.json()["status"] == "active"
    again = api.post(f"plans/{plan}/activate")
    assert again.status_code == 409 and "is active already" in detail(again)
    clash = api.post(f"plans/{proposed.json()['id']}/activate")
    assert clash.status_code == 409 and "Already in another active plan" in detail(clash)
    assert api.get(f"plans/{plan}").json()["status"] == "active"
    started = AuditEntry.objects.filter(action=Action.PLAN_EDIT, detail__contains="the API")
    assert started.count() == 3


def test_a_plan_refuses_what_it_cannot_plan(api, repo):
    a = Bead.objects.create(repository=repo, title="A")
    epic = Bead.objects.create(repository=repo, title="E", issue_type="epic")
    done = Bead.objects.create(repository=repo, title="Done", status="closed")
    for body, says in [
        ({"name": "p"}, "Give beads"),
        ({"name": "p", "beads": [a.pk], "waves": [[a.pk]]}, "not both"),
        ({"name": "p", "beads": ["app-nope"]}, "No such bead: app-nope"),
        ({"name": "p", "beads": [done.pk, epic.pk]}, "None of these beads is left to do"),
        ({"name": "p", "waves": [[a.pk], [a.pk]]}, "in one wave only"),
        ({"name": "p", "waves": [[epic.pk]]}, "not the epic"),
        ({"name": "p", "waves": [[done.pk]]}, "Closed beads are not planned"),
    ]:
        response = api.post("plans", body)
        assert response.status_code == 422 and says in detail(response), (body, response.json())
    assert not Plan.objects.exists()
    assert api.post("plans/999/activate").status_code == 404


# --- reviews ----------------------------------------------------------------------------


def awaiting_review(repo, agent, name="a.txt"):
    """A submission the lead has gated and left for a person."""
    repo.review_mode = "human"
    repo.save()
    bead, sub = land(repo, agent, {name: "1\n"}, title=f"Write {name}")
    run_lead(repo)
    sub.refresh_from_db()
    assert sub.status == "awaiting_review"
    return bead, sub


def test_reviews_are_listed_approved_and_rejected(api, repo, agent, rq_redis):
    bead, sub = awaiting_review(repo, agent)
    other_bead, other = awaiting_review(repo, agent, "b.txt")
    listed = api.get("reviews").json()
    assert [(r["id"], r["bead"], r["agent"]) for r in listed] == [
        (sub.pk, bead.pk, "worker"),
        (other.pk, other_bead.pk, "worker"),
    ]
    assert listed[0]["changed_files"] == ["a.txt"]

    approved = api.post(f"reviews/{sub.pk}/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert approved.json()["reviewed_by"] == "alice"
    rejected = api.post(f"reviews/{other.pk}/reject", {"reason": "not like this"})
    assert rejected.status_code == 200 and rejected.json()["reason"] == "not like this"
    run_lead(repo)
    bead.refresh_from_db()
    other_bead.refresh_from_db()
    assert bead.status == "closed" and other_bead.status == "open"
    assert other_bead.last_failure == "not like this"
    late = api.post(f"reviews/{sub.pk}/reject")
    assert late.status_code == 409 and "no longer waiting for review" in detail(late)
    assert api.get("reviews").json() == []
    assert AuditEntry.objects.filter(action__in=[Action.APPROVE, Action.REJECT]).count() == 2


def test_a_filer_may_not_review_their_own_bead_where_another_must(user, repo, agent, rq_redis):
    repo.review_by_other = True
    repo.save()
    bead, sub = awaiting_review(repo, agent)
    Bead.objects.filter(pk=bead.pk).update(filed_by=user)
    response = api_for(user).post(f"reviews/{sub.pk}/approve")
    assert response.status_code == 403 and "reviewed by another person" in detail(response)
    sub.refresh_from_db()
    assert sub.status == "awaiting_review"


def decide_through_the_api(token, submission_id, verdict):
    return Api(token).post(f"reviews/{submission_id}/{verdict}", {"reason": "raced"}).status_code


def test_approve_and_reject_racing_through_the_api_one_wins(user, repo, agent, rq_redis):
    _, sub = awaiting_review(repo, agent)
    tokens = [PersonToken.issue(user, f"t{i}").plain_token for i in range(6)]
    verdicts = ["approve", "reject"] * 3
    results = race(
        decide_through_the_api, [(t, sub.pk, v) for t, v in zip(tokens, verdicts, strict=True)]
    )
    assert sorted(results) == [200] + [409] * 5
    sub.refresh_from_db()
    winner = verdicts[results.index(200)]
    assert sub.status == ("approved" if winner == "approve" else "rejected")
    decisions = AuditEntry.objects.filter(action__in=[Action.APPROVE, Action.REJECT])
    assert decisions.count() == 1
    assert Submission.objects.filter(pk=sub.pk, reviewed_by=user).exists()
