"""Read-only git over smart HTTP, for real: `git clone` against a live Corral,
with a good token, a bad one, none, a session token, path attacks, a push."""

import base64
import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.models import Agent, Session
from beads.models import Bead
from tests.factories import git

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token(db):
    agent = Agent(name="outside-agent", preset="shell", internal=False)
    agent.save()
    return agent.plain_token


def clone(url, dest, token=None, timeout=60):
    """`git clone` as an agent does, the token as the Basic password (or none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "CORRAL_"))}
    env.update(GIT_TERMINAL_PROMPT="0", HOME=str(dest.parent), GIT_CONFIG_NOSYSTEM="1")
    args = ["git"]
    if token is not None:
        basic = base64.b64encode(f"agent:{token}".encode()).decode()
        args += ["-c", f"http.extraHeader=Authorization: Basic {basic}"]
    return subprocess.run(
        [*args, "clone", "--quiet", url, str(dest)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def url_of(live_server, path):
    return f"{live_server.url}/git/{path}"


def basic(token):
    return "Basic " + base64.b64encode(f"agent:{token}".encode()).decode()


def test_an_agent_token_clones_the_repository(live_server, repo, token, tmp_path):
    done = clone(url_of(live_server, f"{repo.slug}.git"), tmp_path / "work", token)
    assert done.returncode == 0, done.stderr
    head = git(tmp_path / "work", "rev-parse", "HEAD")
    assert head == git(repo.canonical_path, "rev-parse", repo.branch)


@pytest.mark.parametrize("given_token", [None, "crl_not-a-token", ""])
def test_no_token_or_a_bad_one_clones_nothing(live_server, repo, tmp_path, given_token):
    done = clone(url_of(live_server, f"{repo.slug}.git"), tmp_path / "work", given_token)
    assert done.returncode != 0
    # git asks for credentials only after a 401; with prompts off it gives up.
    said = ("401", "Authentication failed", "could not read Username")
    assert any(s in done.stderr for s in said), done.stderr
    assert not (tmp_path / "work" / ".git").exists()


def test_a_push_is_refused(live_server, repo, token, tmp_path):
    assert clone(url_of(live_server, f"{repo.slug}.git"), tmp_path / "work", token).returncode == 0
    before = git(repo.canonical_path, "rev-parse", repo.branch)
    work = tmp_path / "work"
    (work / "pushed.txt").write_text("no\n")
    git(work, "add", "pushed.txt")
    git(work, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "push me")
    basic_header = f"http.extraHeader=Authorization: {basic(token)}"
    done = subprocess.run(
        ["git", "-c", basic_header, "push", "origin", f"HEAD:{repo.branch}"],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        timeout=60,
    )
    assert done.returncode != 0 and "403" in done.stderr
    assert git(repo.canonical_path, "rev-parse", repo.branch) == before


def test_a_session_token_clones_only_its_own_repository(
    live_server, repo, make_repo, token, tmp_path
):
    other = make_repo("other")
    agent = Agent.objects.get(name="outside-agent")
    bead = Bead.objects.create(repository=repo, title="x")
    session = Session.objects.create(agent=agent, bead=bead, status="running")
    session_token = session.issue_token()
    ok = clone(url_of(live_server, f"{repo.slug}.git"), tmp_path / "mine", session_token)
    assert ok.returncode == 0, ok.stderr
    no = clone(url_of(live_server, f"{other.slug}.git"), tmp_path / "theirs", session_token)
    assert no.returncode != 0 and "No such repository for this token" in no.stderr


def test_an_inactive_or_unknown_repository_is_not_served(live_server, make_repo, token, tmp_path):
    paused = make_repo("paused", active=False)
    for n, slug in enumerate([paused.slug, "nope"]):
        done = clone(url_of(live_server, f"{slug}.git"), tmp_path / f"w{n}", token)
        assert done.returncode != 0 and "No such repository for this token" in done.stderr


def test_a_symlink_out_of_the_canonical_folder_is_not_followed(
    live_server, repo, make_repo, token, tmp_path, settings
):
    # A repository whose canonical copy was replaced by a link to another folder.
    elsewhere = make_repo("elsewhere")
    linked = make_repo("linked")
    target = tmp_path / "outside.git"
    elsewhere.canonical_path.rename(target)
    shutil.rmtree(linked.canonical_path)
    linked.canonical_path.symlink_to(target)
    done = clone(url_of(live_server, f"{linked.slug}.git"), tmp_path / "work", token)
    assert done.returncode != 0 and "No such repository for this token" in done.stderr


ATTACKS = [
    "../app.git/info/refs?service=git-upload-pack",
    "%2e%2e/app.git/info/refs?service=git-upload-pack",
    "app.git/../../../etc/passwd",
    "app.git/%2e%2e/%2e%2e/config",
    "..%2fapp.git/info/refs?service=git-upload-pack",
    "app.git/HEAD",
    "app.git/config",
    "app.git/objects/info/packs",
    "app.git/info/refs",
    "app.git/info/refs?service=git-upload-archive",
]


@pytest.mark.parametrize("path", ATTACKS)
def test_path_attacks_and_dumb_paths_get_404(client, repo, token, path):
    response = client.get(f"/git/{path}", HTTP_AUTHORIZATION=basic(token))
    assert response.status_code == 404


def test_a_push_request_is_refused_before_anything_else(client, repo):
    for path in ["app.git/info/refs?service=git-receive-pack", "app.git/git-receive-pack"]:
        response = client.post(f"/git/{path}", b"", content_type="application/x-git")
        assert response.status_code == 403 and b"read-only" in response.content


def test_the_refs_answer_as_git_expects(client, repo, token):
    response = client.get(
        f"/git/{repo.slug}.git/info/refs?service=git-upload-pack", HTTP_AUTHORIZATION=basic(token)
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-git-upload-pack-advertisement"
    body = b"".join(response.streaming_content)
    assert git(repo.canonical_path, "rev-parse", repo.branch).encode() in body
    assert response.get("WWW-Authenticate") is None


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    path=st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=60),
    authorization=st.sampled_from(["good", "none", "garbage", "bearer"]),
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT"]),
)
def test_fuzzed_git_paths_get_no_server_error_and_nothing_outside(
    client, repo, token, path, authorization, method
):
    headers = {
        "good": {"HTTP_AUTHORIZATION": basic(token)},
        "none": {},
        "garbage": {"HTTP_AUTHORIZATION": "Basic !!!not base64"},
        "bearer": {"HTTP_AUTHORIZATION": f"Bearer {token}"},
    }[authorization]
    response = client.generic(method, "/git/" + path.lstrip("/"), **headers)
    assert response.status_code < 500
    if response.status_code == 200:
        # Only the refs of a served repository, and only with the token.
        assert authorization == "good" and path.startswith(f"{repo.slug}.git/")
        b"".join(response.streaming_content)
