"""A session worker told to stop (SIGTERM, as Kubernetes and docker compose
send it) finishes the session in hand within CORRAL_SHUTDOWN_GRACE_SECONDS,
or salvages its work and gives the bead back with no attempt counted; then
it exits. Real `manage.py rqworker sessions` processes, a slow test agent."""

import os
import signal
import time

import pytest

from agents.models import LogChunk, Salvage, Session
from agents.moves import lifecycle, shutdown
from beads.models import Bead
from tests.factories import git, program_agent
from tests.procs import Running, wait_until
from tests.races import race

pytestmark = pytest.mark.django_db(transaction=True)


def worker_env(subprocess_env, settings, grace):
    settings.KILL_GRACE_SECONDS = 1
    return dict(
        subprocess_env,
        CORRAL_SHUTDOWN_GRACE_SECONDS=str(grace),
        CORRAL_KILL_GRACE_SECONDS="1",
        CORRAL_WATCH_INTERVAL_MS="200",
    )


def started_session(agent, repo, env):
    bead = Bead.objects.create(repository=repo, title="Take your time", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    assert lifecycle.queue_session(session)
    worker = Running(["manage.py", "rqworker", "sessions"], env)
    working = LogChunk.objects.filter(session=session, text__contains="working slowly")
    try:
        wait_until(working.exists, timeout=60, what="the agent to start")
    except BaseException:
        worker.kill_group()
        session.refresh_from_db()
        print(f"session {session.status}: {session.error}\n{worker.output}")  # shown on failure
        raise
    return bead, session, worker


@pytest.mark.slow
def test_a_stopped_worker_lets_its_session_finish_within_the_grace(
    repo, rq_redis, subprocess_env, settings
):
    agent = program_agent("slow_finisher", "3")
    bead, session, worker = started_session(
        agent, repo, worker_env(subprocess_env, settings, grace=60)
    )
    try:
        os.kill(worker.proc.pid, signal.SIGTERM)  # the main process, as a kubelet does
        assert worker.wait(60) == 0, worker.output
    finally:
        worker.kill_group()
    session.refresh_from_db()
    assert session.status == "submitted", session.error
    assert "src/slow.py" in session.patch
    bead.refresh_from_db()
    assert bead.status == "review"


@pytest.mark.slow
def test_a_stopped_worker_salvages_a_session_past_the_grace_and_counts_no_attempt(
    repo, rq_redis, subprocess_env, settings
):
    agent = program_agent("slow_finisher", "3600")
    bead, session, worker = started_session(
        agent, repo, worker_env(subprocess_env, settings, grace=2)
    )
    attempts = bead.attempts
    try:
        wait_until(
            lambda: Session.objects.get(pk=session.pk).changed_files == ["src/slow.py"],
            timeout=30,
            what="the watchdog to see the agent's file",
        )
        stopped = time.monotonic()
        os.kill(worker.proc.pid, signal.SIGTERM)
        assert worker.wait(60) == 0, worker.output
        took = time.monotonic() - stopped
    finally:
        worker.kill_group()
    # The grace, the agent's own grace and the salvage: well before a SIGKILL.
    assert 2 <= took < 20, took
    session.refresh_from_db()
    assert session.status == "lost"
    assert "shutdown grace" in session.error
    salvage = Salvage.objects.get(session=session)
    assert salvage.sha and salvage.files == ["src/slow.py"]
    kept = git(repo.canonical_path, "show", f"{salvage.ref}:src/slow.py")
    assert kept.strip() == "SLOW = True"
    bead.refresh_from_db()
    assert (bead.status, bead.attempts) == ("open", attempts)


def stop_or_cancel(session_id, how):
    session = Session.objects.select_related("bead").get(pk=session_id)
    if how == "stop":
        return shutdown.worker_stopped(session, "Its worker was stopped.")
    return lifecycle.cancel(session, "someone")


def test_a_worker_stopping_races_a_cancel_and_one_ending_wins(repo, rq_redis):
    agent = program_agent("slow_finisher", "1")
    bead = Bead.objects.create(repository=repo, title="Raced", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    assert session.start(worker="here:1")
    won = race(stop_or_cancel, [(session.pk, "stop"), (session.pk, "cancel")] * 4)
    assert sorted(won) == [False] * 7 + [True]
    session.refresh_from_db()
    bead.refresh_from_db()
    assert bead.status == "open"
    # The bead counts an attempt only when the cancel won.
    assert bead.attempts == (1 if session.status == "cancelled" else 0)
    assert session.status in ("cancelled", "lost")
