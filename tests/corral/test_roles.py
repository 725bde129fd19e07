"""People act by role; logins are throttled; pages carry a CSP; secrets are private.

A viewer reads every page of the dashboard and can change nothing (the admin
site is for admins); an operator and an admin
(a member of the admin group, or a superuser) approve, reject, revert,
cancel, pause, resume and dispatch. A repository may want its work reviewed
by someone other than the person who filed the bead.
"""

import os
import re
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from agents.models import Session, Submission
from agents.moves import outcomes
from beads.models import Bead
from tests.factories import make_patch, submit
from workspace import config, roles

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


def person(name, role=None, **fields):
    user = get_user_model().objects.create_user(name, password=PASSWORD, **fields)
    if role:
        roles.assign(user, role)
    return user


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


def awaiting_review(repo, agent, title, filed_by=None):
    """A submission the gates passed, waiting for a person."""
    bead = Bead.objects.create(repository=repo, title=title, filed_by=filed_by)
    base, patch = make_patch(repo, {f"{title}.txt": "done\n"})
    sub = submit(bead, agent, patch, base)
    assert sub.start_checking() and sub.await_review()
    return sub


class World:
    """One of each thing an action moves."""

    def __init__(self, repo, agent):
        self.repo = repo
        self.to_approve = awaiting_review(repo, agent, "approve-me")
        self.to_reject = awaiting_review(repo, agent, "reject-me")
        self.landed = Bead.objects.create(
            repository=repo, title="landed", status="closed", commit_sha="a" * 40
        )
        live = Bead.objects.create(repository=repo, title="running")
        assert live.start(agent.name)
        self.session = Session.objects.create(agent=agent, bead=live, status="running")

    def actions(self):
        slug = self.repo.slug
        return {
            "approve": f"/submissions/{self.to_approve.pk}/approve",
            "reject": f"/submissions/{self.to_reject.pk}/reject",
            "revert": f"/beads/{self.landed.pk}/revert",
            "cancel": f"/sessions/{self.session.pk}/cancel",
            "pause": f"/repos/{slug}/dispatch/pause",
            "resume": f"/repos/{slug}/dispatch/resume",
            "dispatch": "/dispatch",
        }

    def state(self):
        """Everything the actions could change, as the database has it."""
        return {
            "subs": list(Submission.objects.order_by("pk").values_list("status", "reviewed_by_id")),
            "beads": list(Bead.objects.order_by("pk").values_list("id", "status")),
            "session": Session.objects.get(pk=self.session.pk).status,
            "paused": type(self.repo).objects.get(pk=self.repo.pk).dispatch_paused,
        }

    def pages(self):
        return [
            "/",
            "/hook/",
            self.repo.get_absolute_url(),
            f"/repos/{self.repo.slug}/lead/",
            self.to_approve.get_absolute_url(),
            self.session.get_absolute_url(),
        ]


@pytest.fixture
def world(repo, agent):
    return World(repo, agent)


# Roles and their actions.


def test_the_three_roles_are_groups_with_their_permissions(db):
    assert set(Group.objects.values_list("name", flat=True)) >= {"viewer", "operator", "admin"}
    viewer, operator, admin = (person(r, r) for r in roles.ROLES)
    actions = [roles.REVIEW, roles.CANCEL, roles.REVERT, roles.PAUSE_DISPATCH, roles.RUN_DISPATCH]
    actions += [roles.FILE_BEADS, roles.EDIT_BEADS]
    assert not any(viewer.has_perm(p) for p in actions)
    assert viewer.has_perm("beads.view_bead") and viewer.has_perm("agents.view_submission")
    assert all(operator.has_perm(p) for p in actions)
    assert not operator.has_perm("agents.change_agent")  # agents and tokens: admins only
    assert all(admin.has_perm(p) for p in [*actions, "agents.change_agent", "auth.add_user"])


def test_a_viewer_reads_every_page_without_the_buttons_it_may_not_use(world, viewer):
    client = client_for(viewer)
    for url in world.pages():
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        for action in world.actions().values():
            assert f'action="{action}"' not in html, (url, action)
    operator_page = client_for(person("olga", roles.OPERATOR)).get(world.repo.get_absolute_url())
    assert f'action="{world.actions()["revert"]}"' in operator_page.content.decode()
    assert f'action="{world.actions()["pause"]}"' in operator_page.content.decode()


def test_a_viewers_posts_to_every_action_are_403_and_change_nothing(
    world, viewer, rq_redis, django_capture_on_commit_callbacks
):
    client = client_for(viewer)
    before = world.state()
    for name, url in world.actions().items():
        with django_capture_on_commit_callbacks() as jobs:
            response = client.post(url, {"reason": "no"})
        assert response.status_code == 403, name
        assert "operator role" in response.content.decode(), name
        assert jobs == [], f"{name} asked for a job"
    assert world.state() == before
    type(world.repo).objects.filter(pk=world.repo.pk).update(dispatch_paused=True)
    assert client.post(world.actions()["resume"]).status_code == 403
    assert type(world.repo).objects.get(pk=world.repo.pk).dispatch_paused


def test_an_anonymous_post_goes_to_the_login_page_not_a_403(world, client):
    for name, url in world.actions().items():
        response = client.post(url)
        assert response.status_code == 302, name
        assert response["Location"].startswith("/login/"), name


@pytest.mark.parametrize("role", ["operator", "admin", "superuser"])
def test_operators_and_admins_may_do_every_action(
    world, role, rq_redis, django_capture_on_commit_callbacks
):
    if role == "superuser":
        someone = get_user_model().objects.create_superuser("root", password=PASSWORD)
    else:
        someone = person(f"{role}-1", role)
    client = client_for(someone)
    done = {}
    for name, url in world.actions().items():
        with django_capture_on_commit_callbacks() as jobs:
            response = client.post(url, {"reason": "not this way"})
        assert response.status_code == 302, name
        done[name] = len(jobs)
    world.to_approve.refresh_from_db()
    world.to_reject.refresh_from_db()
    world.session.refresh_from_db()
    assert world.to_approve.status == "approved" and world.to_approve.reviewed_by == someone
    assert world.to_reject.status == "rejected" and world.to_reject.reason == "not this way"
    assert world.session.status == "cancelled"
    assert not type(world.repo).objects.get(pk=world.repo.pk).dispatch_paused  # paused, resumed
    assert done["revert"] and done["dispatch"] and done["approve"]  # the lead and dispatch asked


def test_a_viewer_may_read_the_api_but_not_write_to_it(repo, viewer, user):
    Bead.objects.create(repository=repo, title="x")
    client = client_for(viewer)
    assert client.get("/api/v1/beads").status_code == 200
    body = {"repo": repo.slug, "title": "Filed by a viewer"}
    response = client.post("/api/v1/beads", body, content_type="application/json")
    assert response.status_code == 403
    assert "operator role" in response.json()["detail"]
    assert not Bead.objects.filter(title="Filed by a viewer").exists()
    # An operator's browser session may file one, and it is theirs.
    response = client_for(user).post(
        "/api/v1/beads", {"repo": repo.slug, "title": "Filed"}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    assert Bead.objects.get(title="Filed").filed_by == user


def test_the_admin_records_who_filed_a_bead(repo):
    user = person("ada", roles.ADMIN)  # only admins get the admin site
    client = client_for(user)
    add = client.get("/admin/beads/bead/add/")
    assert add.status_code == 200
    form = add.context["adminform"].form
    data = {"repository": repo.pk, "title": "From the admin", "priority": 2}
    data |= {"issue_type": "task", "labels": "[]", "scope": "[]"}
    data |= {f.html_name: f.value() or "" for f in form if f.html_name not in data}
    data |= {
        "dependencies-TOTAL_FORMS": 0,
        "dependencies-INITIAL_FORMS": 0,
        "dependencies-MIN_NUM_FORMS": 0,
        "dependencies-MAX_NUM_FORMS": 1000,
    }
    response = client.post("/admin/beads/bead/add/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Bead.objects.get(title="From the admin").filed_by == user


# Review by another person.


def test_review_by_other_refuses_the_filer_and_takes_another_operator(repo, agent, user):
    repo.review_by_other = True
    repo.save()
    sub = awaiting_review(repo, agent, "mine", filed_by=user)
    client = client_for(user)
    page = client.get(sub.get_absolute_url()).content.decode()
    assert "submission-approve" not in page and 'action="/submissions/' not in page
    assert "wants another person to review" in page
    response = client.post(f"/submissions/{sub.pk}/approve", follow=True)
    assert any("another operator" in str(m) for m in response.context["messages"])
    sub.refresh_from_db()
    assert sub.status == "awaiting_review" and sub.reviewed_by is None
    with pytest.raises(outcomes.ReviewRefused):
        outcomes.review(sub, user, approve=False)
    bob = person("bob", roles.OPERATOR)
    assert client_for(bob).post(f"/submissions/{sub.pk}/approve").status_code == 302
    sub.refresh_from_db()
    assert sub.status == "approved" and sub.reviewed_by == bob


def test_without_review_by_other_the_filer_may_review(repo, agent, user):
    sub = awaiting_review(repo, agent, "mine", filed_by=user)
    assert not repo.review_by_other
    assert 'class="approve"' in client_for(user).get(sub.get_absolute_url()).content.decode()
    assert outcomes.review(sub, user, approve=True)


# Login throttling.


def log_in(client, username, password):
    return client.post("/login/", {"username": username, "password": password})


def test_the_right_password_is_refused_once_the_account_is_locked(user, settings):
    limit = settings.AXES_FAILURE_LIMIT
    assert limit == 10
    client = Client()
    for _ in range(limit - 1):
        assert log_in(client, "alice", "wrong").status_code == 200
    # Below the limit the right password still works, and clears the count.
    assert log_in(client, "alice", PASSWORD).status_code == 302
    client = Client()
    for _ in range(limit):
        log_in(client, "alice", "wrong")
    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 429
    html = response.content.decode()
    assert "This account is locked" in html and "15 minutes" in html
    assert client.get("/").status_code == 302  # not logged in
    # 40 more tries change nothing; another name from the same address may still log in.
    for _ in range(40):
        assert log_in(client, "alice", "wrong").status_code == 429
    assert log_in(client, "alice", PASSWORD).status_code == 429
    person("bea", roles.VIEWER)
    assert log_in(Client(), "bea", PASSWORD).status_code == 302


# Content Security Policy.


def test_every_page_carries_a_csp_that_forbids_inline_scripts(world, user, admin_client):
    client = client_for(user)
    pages = [(client, url) for url in [*world.pages(), "/api/v1/docs"]]
    pages += [
        (Client(), "/login/"),
        (admin_client, "/admin/"),
        (admin_client, "/admin/beads/bead/"),
    ]
    for c, url in pages:
        response = c.get(url)
        assert response.status_code == 200, url
        policy = response["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["script-src"] == "'self'", url
        assert "unsafe" not in directives["style-src"], url
        assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
        html = response.content.decode()
        if url.startswith("/admin") or url.startswith("/api"):
            continue  # Django's and ninja's own templates, checked in the browser
        assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", html), url
        assert not re.search(r"\son[a-z]+=", html), url
        assert not re.search(r"\sstyle=", html), url


def test_cookies_are_httponly_and_same_site_lax(user):
    client = Client()
    client.get("/login/")
    response = log_in(client, "alice", PASSWORD)
    session = response.cookies["sessionid"]
    assert session["httponly"] and session["samesite"] == "Lax"
    assert not session["secure"]  # plain HTTP unless CORRAL_HTTPS


def test_corral_https_makes_cookies_secure_and_asks_for_hsts(tmp_path):
    env = dict(os.environ, CORRAL_HOME=str(tmp_path), CORRAL_HTTPS="1")
    code = (
        "from django.conf import settings as s;"
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS,"
        " s.SECURE_PROXY_SSL_HEADER)"
    )
    out = manage(env, "shell", "--no-imports", "-c", code).stdout.split()
    assert out[:3] == ["True", "True", "31536000"] and "HTTP_X_FORWARDED_PROTO" in out[3]


# Secret files.


def manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_corral_home_the_database_and_the_secret_key_are_private(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env["CORRAL_HOME"] = str(home)
    manage(env, "showmigrations", "-v0")  # connects: the database is made (unmigrated)
    assert mode(home) == 0o700
    assert mode(home / "corral.sqlite3") == 0o600
    assert mode(home / "secret_key") == 0o600
    # While a connection writes in WAL mode, SQLite's side files take the database's mode.
    db = sqlite3.connect(home / "corral.sqlite3")
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x)")
        db.commit()
        assert mode(home / "corral.sqlite3-wal") == 0o600
        assert mode(home / "corral.sqlite3-shm") == 0o600
    finally:
        db.close()


def test_files_made_before_are_tightened(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    key = config.secret_key(tmp_path)
    (tmp_path / "corral.sqlite3").write_text("")
    for name in ("secret_key", "corral.sqlite3"):
        (tmp_path / name).chmod(0o644)
    assert config.secret_key(tmp_path) == key
    config.database(tmp_path)
    assert mode(tmp_path / "secret_key") == 0o600
    assert mode(tmp_path / "corral.sqlite3") == 0o600
