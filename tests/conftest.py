import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from workspace.models import Repository, Workspace


def git(cwd, *args):
    """Run git with a fixed identity, returning its stdout."""
    argv = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args]
    done = subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture(autouse=True)
def corral_dirs(settings, tmp_path):
    """Each test gets its own canonical-repository and session folders."""
    settings.REPOS_DIR = tmp_path / "repos"
    settings.SESSIONS_DIR = tmp_path / "sessions"
    # PBKDF2's many rounds cost ~0.3 s per user or login; hashing is not under test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make_source(tmp_path):
    """A working git repository with real history: {path: text} per commit."""

    def make(name="app", commits=None, branch="main"):
        path = tmp_path / "sources" / name
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", branch)
        commits = commits or [
            {"README.md": f"# {name}\n"},
            {"src/app.py": "print('hello')\n"},
        ]
        for n, files in enumerate(commits, 1):
            for rel, text in files.items():
                (path / rel).parent.mkdir(parents=True, exist_ok=True)
                (path / rel).write_text(text)
            git(path, "add", "-A")
            git(path, "commit", "-q", "-m", f"commit {n}")
        return path

    return make


@pytest.fixture
def workspace(db):
    return Workspace.default()


@pytest.fixture
def make_repo(workspace, make_source):
    """A registered repository with a real canonical bare clone."""

    def make(name="app", **fields):
        return Repository.register(str(make_source(name)), workspace, **fields)

    return make


@pytest.fixture
def repo(make_repo):
    return make_repo("app")


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("alice", password="correct horse battery")


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def rq_redis(settings):
    """The tests' Redis, emptied: queues and locks from other tests are gone."""
    from agents import queues

    conn = queues.connection()
    conn.flushdb()
    yield conn
    conn.flushdb()


@pytest.fixture
def subprocess_env(tmp_path, settings):
    """The environment for a Corral process that must share this test's database."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor == "sqlite":
        url = f"sqlite:///{db['NAME']}"
    else:
        url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = dict(
        os.environ, DATABASE_URL=url, CORRAL_HOME=str(tmp_path), REDIS_URL=settings.REDIS_URL
    )
    env["CORRAL_LEAD_LOCK_SECONDS"] = "3"
    return env


@pytest.fixture
def agent(db):
    from agents.models import Agent

    return Agent.objects.create(name="agent-1", preset="shell")


def make_patch(repo, write=None, delete=(), base=None):
    """(base sha, git diff) of changes made in a private clone of the repository."""
    base = base or git(repo.canonical_path, "rev-parse", repo.branch)
    with tempfile.TemporaryDirectory() as work:
        git(work, "clone", "-q", "--shared", str(repo.canonical_path), ".")
        git(work, "checkout", "-q", "--detach", base)
        for rel, text in (write or {}).items():
            path = Path(work, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for rel in delete:
            Path(work, rel).unlink()
        git(work, "add", "-A")
        return base, git_raw(work, "diff", "--cached", "--binary", base)


def git_raw(cwd, *args):
    """git's stdout exactly as printed (a patch must keep its last newline)."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def submit(bead, agent, patch, base, summary="Did the work."):
    """A running session on the bead that hands in `patch`: the lead's input."""
    from agents.models import Session

    bead.start(agent.name)
    session = Session.objects.create(agent=agent, bead=bead, status="running", base_sha=base)
    return session.hand_in(patch, summary)


def run_lead(repo):
    """Work the repository's lead queue until it is empty, in this process."""
    from rq import SimpleWorker

    from agents import queues

    SimpleWorker([queues.lead_queue(repo)], connection=queues.connection()).work(burst=True)
