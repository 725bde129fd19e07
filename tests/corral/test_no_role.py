"""No role, no pages: an account in none of the role groups (and no superuser)
gets a 403 page telling it to ask an admin for a role, on every page, and
the API refuses its browser session. Login, logout, static files, /metrics
(its own token) and the API by an agent's token work as before."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from agents.models import Session, Submission
from beads.models import Bead
from knowledge.models import Learning
from workspace import roles

PASSWORD = "correct horse battery"
METRICS_TOKEN = "s3cret-scraper-token"


@pytest.fixture
def nobody(db):
    """An account an admin made and gave no role."""
    return get_user_model().objects.create_user("nobody", password=PASSWORD)


@pytest.fixture
def pages(repo, agent, workspace):
    bead = Bead.objects.create(repository=repo, title="Secret roadmap item")
    session = Session.objects.create(agent=agent, bead=bead, status="submitted")
    submission = Submission.objects.create(session=session, repository=repo, bead=bead)
    learning = Learning.objects.create(workspace=workspace, title="Internal", body="private")
    return [
        "/",
        "/hook/",
        f"/repos/{repo.slug}/",
        f"/repos/{repo.slug}/lead/",
        f"/repos/{repo.slug}/beads.jsonl",
        "/beads/",
        f"/beads/{bead.pk}/",
        "/plans/",
        "/changesets/",
        "/knowledge/",
        f"/knowledge/{learning.pk}/",
        "/usage/",
        "/problems/",
        "/audit/",
        f"/sessions/{session.pk}/",
        f"/sessions/{session.pk}/log.txt",
        f"/submissions/{submission.pk}/",
    ]


def logged_in(user):
    client = Client()
    client.force_login(user)
    return client


def test_an_account_with_no_role_reads_no_page_and_is_told_to_ask_an_admin(nobody, pages):
    client = logged_in(nobody)
    for url in pages:
        response = client.get(url)
        assert response.status_code == 403, url
        html = response.content.decode()
        assert "no role" in html and "Ask an admin" in html, url
        assert "Secret roadmap item" not in html and "private" not in html, url
    assert "no_role.html" in [t.name for t in client.get("/").templates]


def test_its_posts_are_refused_too(nobody, repo):
    response = logged_in(nobody).post(f"/repos/{repo.slug}/dispatch/pause")
    assert response.status_code == 403
    repo.refresh_from_db()
    assert not repo.dispatch_paused


def test_the_api_refuses_its_browser_session(nobody, repo):
    Bead.objects.create(repository=repo, title="Secret roadmap item")
    response = logged_in(nobody).get("/api/v1/beads")
    assert response.status_code == 403
    assert "no role" in response.json()["detail"]


def test_login_logout_static_metrics_and_agent_tokens_still_work(nobody, agent, repo, settings):
    settings.METRICS_TOKEN = METRICS_TOKEN
    client = Client()
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "nobody", "password": PASSWORD})
    assert response.status_code == 302  # logged in, then the overview says why it is closed
    assert client.get("/login/").status_code == 200
    assert client.get("/static/corral.css").status_code == 200
    bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    assert client.get("/metrics", headers=bearer).status_code == 200
    token = agent.plain_token
    api = client.get("/api/v1/ready", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200, api.content
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302  # anonymous again: the login page


@pytest.mark.parametrize("role", [*roles.ROLES, "superuser"])
def test_every_role_and_a_superuser_read_the_pages(role, pages, nobody):
    if role == "superuser":
        someone = get_user_model().objects.create_superuser("root", password=PASSWORD)
    else:
        someone = get_user_model().objects.create_user(f"{role}-1", password=PASSWORD)
        roles.assign(someone, role)
    client = logged_in(someone)
    for url in pages:
        assert client.get(url).status_code == 200, (role, url)
    # Given a role, the account that had none reads them as well.
    roles.assign(nobody, roles.VIEWER)
    assert logged_in(nobody).get("/").status_code == 200


def test_anonymous_visitors_still_go_to_the_login_page(client, pages):
    for url in pages:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/"), url
