import os

import pytest
from django.contrib.auth import get_user_model

from tests.factories import git
from workspace import roles
from workspace.models import Repository, Workspace


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
        # A source folder is a working clone, not a remote to push to: the
        # tests that follow an upstream make a bare one and turn push on.
        fields.setdefault("push", False)
        return Repository.register(str(make_source(name)), workspace, **fields)

    return make


@pytest.fixture
def repo(make_repo):
    return make_repo("app")


@pytest.fixture
def user(db):
    """An operator: the tests that log in exercise operator actions."""
    alice = get_user_model().objects.create_user("alice", password="correct horse battery")
    roles.assign(alice, roles.OPERATOR)
    return alice


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def viewer(db):
    """Someone who may read every page and do nothing."""
    victor = get_user_model().objects.create_user("victor", password="correct horse battery")
    roles.assign(victor, roles.VIEWER)
    return victor


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
    env["SECRET_KEY"] = settings.SECRET_KEY  # it opens the secrets this test stored
    return env


@pytest.fixture
def agent(db):
    from agents.models import Agent

    return Agent.objects.create(name="agent-1", preset="shell")
