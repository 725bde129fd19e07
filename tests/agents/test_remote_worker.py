"""A session worker on "another machine": its own empty CORRAL_HOME, and the
canonical folder hidden from it (an empty tmpfs mounted over it, by bwrap).
It clones over git over HTTP from a live Corral, runs sessions to submitted,
and the lead lands them."""

import subprocess
import sys
from pathlib import Path

import pytest

from agents.moves import lifecycle
from beads.models import Bead
from tests.factories import git, program_agent, run_lead

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def remote_worker(env, hidden: Path | None = None, timeout=120):
    """`rqworker sessions --burst` with `env`; with `hidden`, in a mount namespace
    where that folder is empty."""
    argv = ["bwrap", "--dev-bind", "/", "/", "--tmpfs", str(hidden), "--"] if hidden else []
    argv += [sys.executable, "manage.py", "rqworker", "sessions", "--burst"]
    return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_a_worker_that_cannot_see_the_canonical_folder_lands_sessions(
    live_server, repo, rq_redis, subprocess_env, tmp_path, settings
):
    home = tmp_path / "remote-home"
    home.mkdir()
    env = dict(subprocess_env, CORRAL_HOME=str(home), CORRAL_URL=live_server.url)
    env.pop("CORRAL_GIT_URL", None)  # derived from CORRAL_URL
    agents = [program_agent("editor", f"src/remote{n}.txt=from afar {n}") for n in range(2)]
    beads = [
        Bead.objects.create(repository=repo, title=f"Remote {n}", scope=["src/**"])
        for n in range(2)
    ]
    sessions = [
        lifecycle.claim(agent, bead=bead) for agent, bead in zip(agents, beads, strict=True)
    ]
    for session in sessions:
        assert lifecycle.queue_session(session)

    done = remote_worker(env, hidden=settings.REPOS_DIR)
    assert done.returncode == 0, done.stdout + done.stderr

    for session in sessions:
        session.refresh_from_db()
        assert session.status == "submitted", session.error
        assert session.patch and "from afar" in session.patch
        assert session.context_chars > 0 and session.log_chunks.exists()
    # It cloned from its mirror, kept in its own home, and left no session clone behind.
    mirror = home / "mirrors" / f"{repo.slug}.git"
    assert git(mirror, "rev-parse", repo.branch) == sessions[0].base_sha
    assert not any((home / "sessions").iterdir())
    assert not (home / "repos").exists()

    run_lead(repo)
    for n, bead in enumerate(beads):
        bead.refresh_from_db()
        assert bead.status == "closed"
        shown = git(repo.canonical_path, "show", f"{bead.commit_sha}:src/remote{n}.txt")
        assert shown == f"from afar {n}"


def test_a_worker_without_the_canonical_folder_mirrors_it_over_http(
    live_server, repo, rq_redis, subprocess_env, tmp_path, settings
):
    """The same without bwrap: a worker whose CORRAL_HOME has no repos folder."""
    home = tmp_path / "elsewhere"
    home.mkdir()
    env = dict(subprocess_env, CORRAL_HOME=str(home), CORRAL_URL="http://127.0.0.1:9")
    env["CORRAL_GIT_URL"] = live_server.url + "/git"  # given, it wins over CORRAL_URL
    agent = program_agent("editor", "src/far.txt=far")
    bead = Bead.objects.create(repository=repo, title="Far", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    assert lifecycle.queue_session(session)
    done = remote_worker(env)
    assert done.returncode == 0, done.stdout + done.stderr
    session.refresh_from_db()
    assert session.status == "submitted", session.error
    assert (home / "mirrors" / f"{repo.slug}.git" / "HEAD").is_file()


def test_a_worker_that_cannot_reach_the_git_url_fails_the_session_saying_why(
    live_server, repo, rq_redis, subprocess_env, tmp_path
):
    home = tmp_path / "cut-off"
    home.mkdir()
    env = dict(subprocess_env, CORRAL_HOME=str(home), CORRAL_URL=live_server.url)
    env["CORRAL_GIT_URL"] = "http://127.0.0.1:9/git"  # nothing listens there
    agent = program_agent("editor", "src/x.txt=x")
    bead = Bead.objects.create(repository=repo, title="Unreachable", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    assert lifecycle.queue_session(session)
    done = remote_worker(env)
    assert done.returncode == 0, done.stdout + done.stderr
    session.refresh_from_db()
    assert session.status == "failed"
    assert "Could not start the session: cannot fetch http://127.0.0.1:9/git/app.git" in (
        session.error
    )
    bead.refresh_from_db()
    assert bead.status == "open"  # back on the hook for a worker that can reach it
