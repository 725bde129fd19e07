"""Sessions on real RQ workers: a worker killed mid-session, Redis emptied, and the
whole loop (dispatch, session workers, leads) landing dependent beads across repositories."""

import os
import signal
import sys

import pytest

from agents.jobs import reconcile
from agents.models import Agent, LogChunk
from agents.moves import lifecycle
from beads.models import Bead, Dependency
from tests.factories import PROGRAMS, git, run_lead
from tests.procs import Running, group_members, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
AGENTS = PROGRAMS


@pytest.fixture
def worker_env(subprocess_env, settings):
    settings.KILL_GRACE_SECONDS = 1
    settings.LEASE_SECONDS = 2  # claims made here get the workers' short lease
    return dict(
        subprocess_env,
        CORRAL_LEASE_SECONDS="2",
        CORRAL_KILL_GRACE_SECONDS="1",
        CORRAL_WATCH_INTERVAL_MS="200",
    )


def session_worker(env, *args):
    return Running(["manage.py", "rqworker", "sessions", *args], env)


def queue_session(agent, bead):
    session = lifecycle.claim(agent, bead=bead)
    assert lifecycle.queue_session(session)
    return session


def status_of(session):
    session.refresh_from_db()
    return session.status


def test_a_session_worker_killed_mid_session_is_lost_and_the_bead_lands_later(
    repo, rq_redis, worker_env
):
    agent = Agent.objects.create(
        name="second-try", command=[sys.executable, str(AGENTS / "second_try.py")]
    )
    bead = Bead.objects.create(repository=repo, title="Eventually", scope=["src/**"])
    first = queue_session(agent, bead)
    worker = session_worker(worker_env)
    try:
        # Once it has said so: an agent writing to the log after its runner died
        # would die of SIGPIPE, and this test wants one that lingers.
        hanging = LogChunk.objects.filter(session=first, text__contains="hanging")
        wait_until(hanging.exists, what="the agent to start hanging")
        first.refresh_from_db()
        horse = int(first.worker.rpartition(":")[2])  # RQ runs the job in a forked work-horse
        os.kill(horse, signal.SIGKILL)
        os.killpg(worker.proc.pid, signal.SIGKILL)  # the worker; the agent has a group of its own
        worker.wait(10)
    finally:
        worker.kill_group()
    # The sandbox dies with the runner that started it: nothing is left orphaned.
    wait_until(lambda: not group_members(first.pid), timeout=5, what="the agent to die with it")
    assert status_of(first) == "running"
    wait_until(lambda: reconcile.reconcile()["lost"] == 1, timeout=10, what="the lease to expire")
    assert status_of(first) == "lost"
    bead.refresh_from_db()
    assert (bead.status, bead.attempts) == ("open", 1)
    second = queue_session(agent, bead)
    burst = session_worker(worker_env, "--burst")
    try:
        assert burst.wait(60) == 0, burst.output
    finally:
        burst.kill_group()
    assert status_of(second) == "submitted", second.error
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed"
    assert git(repo.canonical_path, "show", f"{bead.commit_sha}:src/second.txt")


def test_sessions_queued_when_redis_was_emptied_are_queued_again_and_land(
    repo, rq_redis, worker_env
):
    agent = Agent.objects.create(name="demo", preset="demo")
    beads = [
        Bead.objects.create(
            repository=repo,
            title=f"Write {n}",
            scope=[f"b{n}/**"],
            description=f"```corral write b{n}/done.txt\nbead {n}\n```\n",
        )
        for n in range(3)
    ]
    sessions = [queue_session(agent, bead) for bead in beads]
    rq_redis.flushdb()  # Redis restarted empty: the jobs are gone, the rows are not
    assert reconcile.reconcile()["sessions"] == 3
    assert reconcile.reconcile()["sessions"] == 0  # queued once, not twice
    burst = session_worker(worker_env, "--burst")
    try:
        assert burst.wait(90) == 0, burst.output
    finally:
        burst.kill_group()
    assert [status_of(s) for s in sessions] == ["submitted"] * 3
    rq_redis.flushdb()  # and again, with the submissions queued for the lead
    assert reconcile.reconcile()["submissions"] == 3
    run_lead(repo)
    assert set(Bead.objects.values_list("status", flat=True)) == {"closed"}


def test_twelve_dependent_beads_across_three_repositories_land_in_order(
    make_repo, rq_redis, worker_env
):
    repos = [make_repo(name) for name in ("api", "web", "infra")]
    for repo in repos:
        repo.max_agents = 2
        repo.save()
    Agent.objects.create(name="demo-1", preset="demo")
    Agent.objects.create(name="demo-2", preset="demo")
    beads = []
    for n in range(12):
        beads.append(
            Bead.objects.create(
                repository=repos[n % 3],
                title=f"Step {n}",
                scope=[f"s{n}/**"],
                description=f"```corral write s{n}/done.txt\nstep {n}\n```\n",
            )
        )
    # Four layers of three, each bead waiting on beads of the layer before,
    # always in other repositories.
    for n in range(3, 12):
        Dependency.objects.create(issue=beads[n], depends_on=beads[n - 3 + (n + 1) % 3])
        Dependency.objects.create(issue=beads[n], depends_on=beads[n - 3 + (n + 2) % 3])
    procs = [
        session_worker(worker_env),
        session_worker(worker_env),
        Running(["manage.py", "rqworker", "default"], worker_env),
        Running(["manage.py", "lead", "--interval", "0.5"], worker_env),
        Running(["manage.py", "tick", "--interval", "1"], worker_env),
    ]
    try:
        closed = lambda: Bead.objects.filter(status="closed").count() == 12  # noqa: E731
        wait_until(closed, timeout=180, what="all twelve beads to close")
    finally:
        for proc in procs:
            os.killpg(proc.proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except Exception:
                proc.kill_group()
    total = sum(int(git(r.canonical_path, "rev-list", "--count", r.branch)) - 2 for r in repos)
    assert total == 12  # one commit per bead, nothing else
    for bead in Bead.objects.all():
        assert (
            git(bead.repository.canonical_path, "log", "-1", "--format=%B", bead.commit_sha).count(
                f"Bead: {bead.id}"
            )
            == 1
        )
        started = bead.sessions.order_by("created_at").first().created_at
        for blocker in bead.blockers():
            assert blocker.closed_at <= started, f"{bead} started before {blocker} landed"
