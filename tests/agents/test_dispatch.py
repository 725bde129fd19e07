"""dispatch() fills free session slots, never past the workers listening or max_agents."""

import sys

import pytest

from agents import queues
from agents.jobs import reconcile
from agents.jobs.dispatch import dispatch, free_slots
from agents.models import Agent, Session
from beads.models import Bead
from tests.factories import PROGRAMS
from tests.procs import Running, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
SLEEPER = str(PROGRAMS / "sleeper.py")


@pytest.fixture
def sleepy_agents(db):
    return [
        Agent.objects.create(name=f"sleepy-{n}", command=[sys.executable, SLEEPER, "30"])
        for n in range(2)
    ]


@pytest.fixture
def two_session_workers(subprocess_env, rq_redis):
    workers = [Running(["manage.py", "rqworker", "sessions"], subprocess_env) for _ in range(2)]
    wait_until(lambda: free_slots() == 2, timeout=60, what="two session workers")
    yield workers
    for worker in workers:
        worker.kill_group()
    for session in Session.objects.exclude(pid=None):
        reconcile.kill_local_agent(session)


def test_without_a_session_worker_nothing_is_dispatched(repo, sleepy_agents, rq_redis):
    Bead.objects.create(repository=repo, title="x")
    assert free_slots() == 0
    assert dispatch() == 0
    assert not Session.objects.exists()


def test_with_session_slots_dispatch_queues_sessions_for_workers_yet_to_start(
    repo, sleepy_agents, rq_redis, settings
):
    settings.SESSION_SLOTS = 3  # workers are started for the queue (KEDA), none listen yet
    for n in range(5):
        Bead.objects.create(repository=repo, title=f"b{n}")
    assert free_slots() == 3
    assert dispatch() == 3
    assert dispatch() == 0  # the slots are taken, by sessions still waiting
    assert set(Session.objects.values_list("status", flat=True)) == {"queued"}
    assert rq_redis.llen(queues.queue(queues.SESSIONS).key) == 3  # what the scaler reads


@pytest.mark.slow
def test_dispatch_fills_the_free_slots_and_spreads_over_agents(
    repo, sleepy_agents, two_session_workers
):
    for n in range(5):
        Bead.objects.create(repository=repo, title=f"b{n}")
    assert dispatch() == 2
    assert dispatch() == 0  # both workers are taken
    sessions = Session.objects.all()
    assert {s.agent.name for s in sessions} == {"sleepy-0", "sleepy-1"}
    assert {s.status for s in sessions} <= {"queued", "running"}


@pytest.mark.slow
def test_dispatch_respects_max_agents_and_paused_repositories(
    make_repo, sleepy_agents, two_session_workers
):
    busy, paused = make_repo("busy"), make_repo("paused")
    Bead.objects.create(repository=busy, title="b", status="in_progress")
    Bead.objects.create(repository=busy, title="waiting")
    busy.max_agents = 1
    busy.save()
    Bead.objects.create(repository=paused, title="waiting too")
    assert paused.set_dispatch_paused(True)
    assert dispatch() == 0
    assert paused.set_dispatch_paused(False)
    assert dispatch() == 1
    assert Session.objects.get().bead.repository == paused


@pytest.mark.slow
def test_dispatch_waits_while_bwrap_cannot_start_and_sessions_would_be_refused(
    repo, sleepy_agents, two_session_workers, settings, tmp_path
):
    bead = Bead.objects.create(repository=repo, title="waits")
    installed, settings.BWRAP = settings.BWRAP, str(tmp_path / "no-such-bwrap")
    assert dispatch() == 0
    bead.refresh_from_db()
    assert (bead.status, bead.attempts) == ("open", 0) and not Session.objects.exists()
    settings.BWRAP = installed
    assert dispatch() == 1


def test_a_bead_is_saved_even_when_redis_is_unreachable(repo, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    queues.connection.cache_clear()
    try:
        bead = Bead.objects.create(repository=repo, title="Still saved")  # asks for a dispatch
    finally:
        queues.connection.cache_clear()
    assert Bead.objects.filter(pk=bead.pk).exists()
