"""`manage.py addrepo` clones a canonical bare copy, or refuses with one clear line."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from tests.factories import git
from workspace.models import Repository

ROOT = Path(__file__).resolve().parents[2]


def addrepo(*args):
    call_command("addrepo", *[str(a) for a in args])
    return Repository.objects.get()


@pytest.mark.django_db
def test_registers_a_local_repository_with_its_history(make_source, settings):
    source = make_source("payments", commits=[{"a.txt": "1"}, {"b.txt": "2"}, {"a.txt": "3"}])
    repo = addrepo(source, "--check-command", "python3 -m pytest -q", "--review", "human")
    assert (repo.name, repo.slug, repo.branch, repo.bead_prefix) == (
        "payments",
        "payments",
        "main",
        "payments",
    )
    assert repo.canonical_path == settings.REPOS_DIR / "payments.git"
    assert git(repo.canonical_path, "rev-parse", "--is-bare-repository") == "true"
    assert git(repo.canonical_path, "rev-list", "--count", "main") == "3"
    assert git(repo.canonical_path, "rev-parse", "main") == git(source, "rev-parse", "HEAD")
    assert repo.upstream == str(source)
    assert repo.check_argv() == ["python3", "-m", "pytest", "-q"]
    assert repo.review_mode == "human"


@pytest.mark.django_db
def test_takes_the_sources_default_branch_and_a_given_name(make_source):
    source = make_source("svc", branch="trunk")
    repo = addrepo(source, "--name", "Billing Service")
    assert (repo.slug, repo.branch, repo.bead_prefix) == ("billing-service", "trunk", "billings")


@pytest.mark.django_db
def test_a_path_that_is_not_a_git_repository_is_refused(tmp_path, settings):
    (tmp_path / "plain").mkdir()
    with pytest.raises(CommandError, match="not a git repository"):
        addrepo(tmp_path / "plain")
    with pytest.raises(CommandError, match="no such file or folder"):
        addrepo(tmp_path / "missing")
    assert not Repository.objects.exists()


@pytest.mark.django_db
def test_a_missing_branch_leaves_nothing_behind(make_source, settings):
    with pytest.raises(CommandError, match="no branch 'release'"):
        addrepo(make_source("app"), "--branch", "release")
    assert not Repository.objects.exists()
    assert not (settings.REPOS_DIR / "app.git").exists()


@pytest.mark.django_db
def test_an_unparsable_check_command_leaves_nothing_behind(make_source, settings):
    with pytest.raises(CommandError, match="Cannot parse the command"):
        addrepo(make_source("app"), "--check-command", "pytest 'unclosed")
    assert not Repository.objects.exists()
    assert not (settings.REPOS_DIR / "app.git").exists()


@pytest.mark.django_db
def test_the_same_name_twice_is_refused_and_prefixes_stay_unique(make_source, make_repo):
    first = make_repo("app")
    with pytest.raises(CommandError, match="already registered"):
        addrepo(make_source("other"), "--name", "app")
    second = Repository.register(str(make_source("app2")), first.workspace, name="a-pp")
    assert first.bead_prefix == "app" and second.bead_prefix == "app2"


CARRIED = {
    "a folder": ({".agents/learnings/tip.md": "# Tip\n"}, ".agents/learnings/tip.md"),
    "a context pack link": ({}, ".agents/context.md"),
    "a link for the folder": ({}, ".agents"),
    "another case": ({".Agents/context.md": "x\n"}, ".Agents/context.md"),
}


@pytest.mark.django_db
@pytest.mark.parametrize("layout", sorted(CARRIED))
def test_a_repository_that_carries_dot_agents_is_refused_naming_the_path(
    make_source, settings, tmp_path, layout
):
    """.agents/ is where Corral writes each clone's context pack: a repository's
    own (a link to a file of the agent's machine, above all) is refused."""
    files, named = CARRIED[layout]
    source = make_source("carrier", commits=[{"README.md": "x\n", **files}])
    if layout == "a context pack link":
        (source / ".agents").mkdir()
        (source / ".agents" / "context.md").symlink_to(tmp_path / "host-file")
    elif layout == "a link for the folder":
        (source / ".agents").symlink_to(tmp_path)
    git(source, "add", "-A")
    git(source, "commit", "-q", "--allow-empty", "-m", "carry it")
    with pytest.raises(CommandError) as refused:
        addrepo(source)
    assert named in str(refused.value) and "Corral's" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert not Repository.objects.exists()
    assert not (settings.REPOS_DIR / "carrier.git").exists()


@pytest.mark.slow
def test_from_the_shell_a_bad_path_exits_non_zero_with_one_line(tmp_path, sqlite_home):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["CORRAL_HOME"] = str(sqlite_home)
    done = subprocess.run(
        [sys.executable, "manage.py", "addrepo", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip() == f"CommandError: {tmp_path}: not a git repository"


@pytest.mark.django_db
def test_land_via_pr_takes_the_forge_and_its_token_from_the_environment(make_source, monkeypatch):
    source = make_source("protected")
    monkeypatch.setenv("TEAM_FORGE_TOKEN", "ghp_not_on_the_command_line")
    repo = addrepo(
        source,
        "--land-via",
        "pr",
        "--forge",
        "github",
        "--forge-url",
        "http://127.0.0.1:9/api/v3",
        "--forge-repo",
        "team/protected",
        "--forge-token-env",
        "TEAM_FORGE_TOKEN",
        "--forge-checks-gate",
    )
    assert repo.lands_via_pr and repo.forge_checks_gate
    assert (repo.forge, repo.forge_repo) == ("github", "team/protected")
    assert repo.forge_token == "ghp_not_on_the_command_line"
    with connection.cursor() as cursor:  # at rest: encrypted, never the token itself
        cursor.execute("SELECT forge_token FROM workspace_repository WHERE id = %s", [repo.pk])
        (stored,) = cursor.fetchone()
    assert stored and "ghp_not_on_the_command_line" not in stored


@pytest.mark.django_db
def test_land_via_pr_without_a_forge_is_refused_in_one_line(make_source):
    source = make_source("protected")
    with pytest.raises(CommandError, match="needs an upstream, a forge and its repository"):
        call_command("addrepo", str(source), "--land-via", "pr")
    assert not Repository.objects.exists()
