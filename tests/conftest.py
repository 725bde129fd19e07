import subprocess

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
