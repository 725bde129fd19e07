"""What a token reaches. A session token: its session's repository only (other
repositories' beads, comments, change sets and learnings are 404). An agent
token: the beads and change sets of every repository (it claims from any),
but learnings only for the work it holds: it reads them for a bead it holds a
live session on, or searches a repository it holds one in (that repository's
and the workspace-wide learnings), and proposes them only there."""

import pytest

from agents.models import Session
from agents.moves import changesets
from beads.models import Bead, Comment
from knowledge.models import Learning
from tests.agents.test_api import Api, new_agent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def repos(make_repo):
    return make_repo("app"), make_repo("other"), make_repo("third")


def working_on(agent, bead):
    """A live session of the agent on the bead."""
    bead.start(agent.name)
    return Session.objects.create(agent=agent, bead=bead, status="running", base_sha="0" * 40)


def learning(repo, title, body, workspace_wide=False):
    return Learning.objects.create(
        workspace=repo.workspace,
        repository=None if workspace_wide else repo,
        title=title,
        body=body,
        status="approved",
    )


@pytest.fixture
def scene(repos):
    """An agent working on a bead of app, with its session token; beads and an
    approved learning in the other repositories."""
    app, other, third = repos
    agent, agent_api = new_agent("scoped")
    mine = Bead.objects.create(repository=app, title="Rotate the deploy keys")
    theirs = Bead.objects.create(repository=other, title="Rotate the billing keys")
    session = working_on(agent, mine)
    return {
        "app": app,
        "other": other,
        "third": third,
        "agent": agent,
        "agent_api": agent_api,
        "session": session,
        "session_api": Api(session.issue_token()),
        "mine": mine,
        "theirs": theirs,
    }


def test_a_session_token_lists_and_shows_only_its_repositorys_beads(scene):
    api, mine, theirs = scene["session_api"], scene["mine"], scene["theirs"]
    Comment.add(theirs, "the billing key is in vault/billing", agent="someone")
    listed = api.get("beads")
    assert listed.status_code == 200 and [b["id"] for b in listed.json()] == [mine.id]
    assert api.get("beads", repo=scene["other"].slug).status_code == 404
    assert api.get(f"beads/{mine.id}").status_code == 200
    assert api.get(f"beads/{theirs.id}").status_code == 404
    assert api.get(f"beads/{theirs.id}/comments").status_code == 404
    assert api.get(f"beads/{mine.id}/comments").status_code == 200
    assert api.get("ready", repo=scene["other"].slug).status_code == 404
    assert theirs.id not in [b["id"] for b in api.get("ready").json()]


def test_a_session_token_files_beads_only_from_its_own(scene):
    answer = scene["session_api"].post(
        "beads", {"title": "More", "discovered_from": scene["theirs"].id}
    )
    assert answer.status_code == 404
    assert not Bead.objects.filter(title="More").exists()


def test_a_session_token_sees_only_change_sets_that_touch_its_repository(scene):
    api = scene["session_api"]
    far = Bead.objects.create(repository=scene["third"], title="Billing, third side")
    elsewhere = changesets.create("Billing", [scene["theirs"], far], scene["app"].workspace)
    near_bead = Bead.objects.create(repository=scene["app"], title="App side")
    near_other = Bead.objects.create(repository=scene["third"], title="Third side")
    near = changesets.create("Both", [near_bead, near_other], scene["app"].workspace)
    assert api.get(f"changesets/{elsewhere.pk}").status_code == 404
    assert api.get(f"changesets/{near.pk}").status_code == 200
    assert scene["agent_api"].get(f"changesets/{elsewhere.pk}").status_code == 200


def test_a_session_token_reads_no_other_repositorys_learnings(scene):
    api = scene["session_api"]
    learning(scene["app"], "Deploy keys rotate weekly", "Rotate deploy keys with the script.")
    learning(scene["other"], "Billing keys live in vault", "Rotate billing keys: vault/billing.")
    assert api.get("inject", repo=scene["other"].slug, q="keys").status_code == 404
    assert api.get("inject", bead=scene["theirs"].id).status_code == 404
    searched = api.get("inject", q="rotate keys vault billing deploy")
    assert searched.status_code == 200
    assert [i["title"] for i in searched.json()["learnings"]] == ["Deploy keys rotate weekly"]


def test_a_session_token_reads_its_own_beads_learnings_as_its_context_had_them(scene):
    learning(scene["app"], "Deploy keys rotate weekly", "Rotate deploy keys with the script.")
    answer = scene["session_api"].get("inject", bead=scene["mine"].id)
    assert answer.status_code == 200
    assert "Deploy keys rotate weekly" in [i["title"] for i in answer.json()["learnings"]]


def test_an_agent_token_without_a_live_session_reads_no_learnings(repos):
    app, other, _ = repos
    _, api = new_agent("idle")
    learning(other, "Billing keys live in vault", "Rotate billing keys: vault/billing.")
    learning(app, "Team rule", "Rotate keys weekly.", workspace_wide=True)
    bead = Bead.objects.create(repository=other, title="Rotate the billing keys")
    for params in ({"repo": other.slug, "q": "keys"}, {"q": "keys"}, {"bead": bead.id}):
        answer = api.get("inject", **params)
        assert answer.status_code == 403, params
        assert "live session" in answer.json()["detail"]


def test_an_agent_token_searches_only_where_it_works_and_workspace_wide(scene):
    api = scene["agent_api"]
    learning(scene["app"], "Deploy keys rotate weekly", "Rotate deploy keys with the script.")
    learning(scene["other"], "Billing keys live in vault", "Rotate billing keys: vault/billing.")
    learning(scene["app"], "Keys never go in git", "Rotate any key that did.", workspace_wide=True)
    assert api.get("inject", repo=scene["other"].slug, q="keys").status_code == 403
    found = api.get("inject", q="rotate keys vault billing deploy git").json()["learnings"]
    assert {i["title"] for i in found} == {"Deploy keys rotate weekly", "Keys never go in git"}


def test_an_agent_proposes_learnings_only_where_it_holds_a_live_session(scene):
    api, other = scene["agent_api"], scene["other"]
    tip = {"title": "Billing keys are public", "body": "Paste them anywhere."}
    refused = api.post("learnings", {**tip, "repo": other.slug})
    assert refused.status_code == 403 and "live session" in refused.json()["detail"]
    assert scene["session_api"].post("learnings", {**tip, "repo": other.slug}).status_code == 404
    made = api.post("learnings", {"title": "Use the script", "body": "It rotates deploy keys."})
    assert made.status_code == 201
    assert Learning.objects.get(pk=made.json()["id"]).repository == scene["app"]
    assert not Learning.objects.filter(repository=other).exists()


def test_an_agent_with_no_live_session_proposes_nothing(repos):
    app, _, _ = repos
    _, api = new_agent("idle")
    for body in ({"repo": app.slug}, {}):
        answer = api.post("learnings", {"title": "Tip", "body": "Text.", **body})
        assert answer.status_code == 403 and "live session" in answer.json()["detail"]
    assert not Learning.objects.exists()


def test_an_agent_token_still_reads_every_repositorys_beads(scene):
    """It claims from any active repository, so it sees their work."""
    api = scene["agent_api"]
    assert api.get(f"beads/{scene['theirs'].id}").status_code == 200
    assert api.get("beads", repo=scene["other"].slug).status_code == 200


def test_a_person_still_reads_every_repositorys_learnings(repos, user):
    _, other, _ = repos
    learning(other, "Billing keys live in vault", "Rotate billing keys: vault/billing.")
    browser = Api()
    browser.client.force_login(user)
    found = browser.get("inject", repo=other.slug, q="billing keys").json()["learnings"]
    assert [i["title"] for i in found] == ["Billing keys live in vault"]
