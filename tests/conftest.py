import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management.commands import flush as flush_command
from django.db.backends.postgresql.operations import DatabaseOperations

from tests.factories import git
from workspace import roles
from workspace.models import Repository, Workspace

# A transactional test (django_db(transaction=True)) ends with Django's flush:
# every table emptied, then post_migrate, as if the database were migrated
# again. Two things make that cheap here.
#
# - The rows migrate derives from the models (content types, permissions) are
#   kept: no test changes them, and making them again was most of a
#   transactional test's teardown (SQLite's fast lane: 44 -> 29 worker-seconds
#   of teardown over 570 tests without it). The role groups, which tests do
#   change, are emptied and made again (roles.sync_groups, post_migrate's only
#   other work).
# - PostgreSQL empties the tables with DELETE, not TRUNCATE, which makes new
#   files for each table (~150 ms a test); DELETE of a test's few rows takes a
#   few ms. Django's foreign keys there are DEFERRABLE INITIALLY DEFERRED and
#   the flush is one transaction, so the order of the DELETEs does not matter.
KEPT = {"django_content_type", "auth_permission"}
TRUNCATE = DatabaseOperations.sql_flush


def sql_flush_keeping_derived_rows(style, connection, reset_sequences=True, allow_cascade=False):
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    return connection.ops.sql_flush(
        style,
        [table for table in tables if table not in KEPT],
        reset_sequences=reset_sequences,
        allow_cascade=allow_cascade,
    )


def role_groups_again(verbosity, interactive, db, **kwargs):
    roles.sync_groups(using=db)


def delete_not_truncate(self, style, tables, *, reset_sequences=False, allow_cascade=False):
    if reset_sequences or allow_cascade:
        return TRUNCATE(
            self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
    return [f"DELETE FROM {self.quote_name(table)}" for table in tables]


flush_command.sql_flush = sql_flush_keeping_derived_rows
flush_command.emit_post_migrate_signal = role_groups_again
DatabaseOperations.sql_flush = delete_not_truncate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory):
    """A migrated SQLite database of a site of its own, made once per test
    process: a test that runs manage.py on such a site starts from a copy
    (sqlite_home) instead of migrating it again (~5-15 s)."""
    home = tmp_path_factory.mktemp("migrated") / "home"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["CORRAL_HOME"] = str(home)
    migrate = [sys.executable, "manage.py", "migrate", "-v0"]
    subprocess.run(migrate, cwd=ROOT, env=env, check=True, timeout=300)
    return home / "corral.sqlite3"


@pytest.fixture
def sqlite_home(tmp_path, migrated_sqlite):
    """A CORRAL_HOME (tmp_path/home) holding a copy of migrated_sqlite, private
    as Corral makes it; its secret key is made when a process first needs it."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    source, copy = sqlite3.connect(migrated_sqlite), sqlite3.connect(home / "corral.sqlite3")
    try:
        source.backup(copy)  # whole, whatever the template's WAL still holds
    finally:
        source.close()
        copy.close()
    (home / "corral.sqlite3").chmod(0o600)
    return home


@pytest.fixture(autouse=True)
def corral_dirs(settings, tmp_path):
    """Each test gets its own canonical-repository and session folders."""
    settings.REPOS_DIR = tmp_path / "repos"
    settings.SESSIONS_DIR = tmp_path / "sessions"
    # PBKDF2's many rounds cost ~0.3 s per user or login; hashing is not under test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def build_source(path, name, commits, branch):
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


@pytest.fixture(scope="session")
def default_sources(tmp_path_factory):
    """{(name, branch): a source with the default history}, built once per test
    process: most tests' repository is one, and copying it takes a fraction
    of the five git processes that build it."""
    return {}


@pytest.fixture
def make_source(tmp_path, tmp_path_factory, default_sources):
    """A working git repository with real history: {path: text} per commit."""

    def make(name="app", commits=None, branch="main"):
        path = tmp_path / "sources" / name
        if commits:
            build_source(path, name, commits, branch)
            return path
        if (name, branch) not in default_sources:
            built = tmp_path_factory.mktemp("source") / name
            build_source(built, name, None, branch)
            default_sources[name, branch] = built
        shutil.copytree(default_sources[name, branch], path, symlinks=True)
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
