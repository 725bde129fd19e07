"""Workers beat while they work; reconcile() takes one gone quiet as dead: its
sessions are lost, the lead jobs it left `started` are freed, its row forgotten."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from rq.executions import Execution

from agents import queues
from agents.jobs import reconcile
from agents.jobs.heartbeat import Heartbeat
from agents.models import Session, WorkerBeat
from beads.models import Bead
from tests.factories import make_patch, submit
from tests.races import race

pytestmark = pytest.mark.django_db(transaction=True)


def quiet_for(name, seconds):
    WorkerBeat.objects.filter(name=name).update(beat_at=timezone.now() - timedelta(seconds=seconds))


def running(repo, agent, worker, title):
    bead = Bead.objects.create(repository=repo, title=title)
    assert bead.start(agent.name)
    session = Session.objects.create(agent=agent, bead=bead, status="queued")
    assert session.start(worker=worker)
    return session


def test_a_worker_is_dead_once_quiet_for_its_time_and_not_before(settings):
    settings.WORKER_DEAD_SECONDS = 20
    WorkerBeat.beat("host:1", "session", "host", 1)
    quiet_for("host:1", 19)
    assert WorkerBeat.dead() == []
    quiet_for("host:1", 21)
    assert [row.name for row in WorkerBeat.dead()] == ["host:1"]


def test_reconcile_loses_the_sessions_of_a_dead_runner_only(repo, agent, rq_redis):
    WorkerBeat.beat("elsewhere:101", "session", "elsewhere", 101)
    WorkerBeat.beat("elsewhere:102", "session", "elsewhere", 102)
    dead = running(repo, agent, "elsewhere:101", "Orphaned")
    alive = running(repo, agent, "elsewhere:102", "Watched")
    quiet_for("elsewhere:101", 60)
    repaired = reconcile.reconcile()
    assert (repaired["dead workers"], repaired["orphaned"], repaired["lost"]) == (1, 1, 0)
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert dead.status == "lost" and "elsewhere:101 died" in dead.error
    assert alive.status == "running"
    bead = Bead.objects.get(pk=dead.bead_id)
    assert (bead.status, bead.attempts) == ("open", 1)
    assert list(WorkerBeat.objects.values_list("name", flat=True)) == ["elsewhere:102"]
    assert reconcile.reconcile()["orphaned"] == 0  # once


def test_a_worker_that_beats_again_after_being_found_dead_keeps_its_row():
    WorkerBeat.beat("host:7", "lead", "host", 7)
    quiet_for("host:7", 60)
    found = WorkerBeat.dead()
    WorkerBeat.beat("host:7", "lead", "host", 7)  # only slow: it beat meanwhile
    assert WorkerBeat.forget(found) == 0
    assert WorkerBeat.objects.filter(name="host:7").exists()


def started_by(worker_name, job_id="revert-app-1"):
    """A lead job as a worker leaves it when it has taken it."""
    job = queues.lead_queue().enqueue_call("agents.jobs.revert.revert", args=("x",), job_id=job_id)
    queues.lead_queue().remove(job)  # taken off the queue, as a worker dequeues it
    with queues.connection().pipeline() as pipe:
        Execution.create(job, 420, pipeline=pipe, worker_name=worker_name)
        job.prepare_for_execution(worker_name, pipeline=pipe)
        pipe.execute()
    return job


def test_only_a_job_left_started_by_a_dead_worker_is_abandoned(rq_redis):
    job = started_by("lead-1-host-5")
    assert not queues.abandon(queues.lead_queue(), job.id, {"lead-1-host-6"})  # another worker's
    assert not queues.job_missing(job.id)
    assert queues.abandon(queues.lead_queue(), job.id, {"lead-1-host-5"})
    assert queues.job_missing(job.id)
    assert queues.lead_queue().started_job_registry.get_job_ids(cleanup=False) == []
    waiting = queues.lead_queue().enqueue_call(
        "agents.jobs.revert.revert", args=("y",), job_id="revert-app-2"
    )
    assert not queues.abandon(queues.lead_queue(), waiting.id, {""})  # not started: nobody took it
    assert not queues.job_missing(waiting.id)


def test_a_dead_lead_workers_drain_is_queued_again(repo, agent, rq_redis):
    bead = Bead.objects.create(repository=repo, title="Write it", scope=["b/**"])
    base, patch = make_patch(repo, {"b/done.txt": "done\n"})
    submit(bead, agent, patch, base)
    WorkerBeat.beat("lead-1-host-9", "lead", "host", 9)
    rq_redis.flushdb()
    started_by("lead-1-host-9", job_id=queues.drain_name(repo))
    assert reconcile.reconcile()["submissions"] == 0  # its drain looks taken
    quiet_for("lead-1-host-9", 60)
    repaired = reconcile.reconcile()
    assert (repaired["abandoned jobs"], repaired["submissions"]) == (1, 1)
    assert queues.drain_pending(repo)
    [job_id] = queues.lead_queue().job_ids
    assert queues.Job.fetch(job_id, connection=rq_redis).get_status() == "queued"


def test_a_heartbeat_is_there_before_its_block_beats_during_it_and_goes_after(settings):
    settings.WORKER_DEAD_SECONDS = 2  # a beat every half second
    with Heartbeat("host:42", "lead"):
        first = WorkerBeat.objects.get(name="host:42").beat_at
        time.sleep(1.2)
        assert WorkerBeat.objects.get(name="host:42").beat_at > first
    assert not WorkerBeat.objects.filter(name="host:42").exists()


def beat(name):
    WorkerBeat.beat(name, "session", "host", 3)
    return WorkerBeat.objects.filter(name=name).count()


def test_eight_first_beats_of_one_worker_at_once_make_one_row():
    assert race(beat, [("host:3",)] * 8) == [1] * 8
    assert WorkerBeat.objects.count() == 1


def tick():
    return reconcile.reconcile()


def test_four_tickers_burying_the_same_dead_workers_repair_each_thing_once(repo, agent, rq_redis):
    WorkerBeat.beat("elsewhere:201", "session", "elsewhere", 201)
    WorkerBeat.beat("lead-1-elsewhere-202", "lead", "elsewhere", 202)
    session = running(repo, agent, "elsewhere:201", "Orphaned")
    job = started_by("lead-1-elsewhere-202")
    quiet_for("elsewhere:201", 60)
    quiet_for("lead-1-elsewhere-202", 60)
    repaired = race(tick, [()] * 4)
    assert sum(r["orphaned"] for r in repaired) == 1
    assert sum(r["abandoned jobs"] for r in repaired) == 1
    assert Session.objects.get(pk=session.pk).status == "lost"
    assert Bead.objects.get(pk=session.bead_id).attempts == 1
    assert queues.job_missing(job.id) and not WorkerBeat.objects.exists()


def test_a_worker_forgotten_by_a_redis_restarted_empty_is_counted_again(rq_redis):
    """bench/chaos.py found it: after Redis came back empty, dispatch counted no
    session worker (and started nothing) until one restarted."""
    worker = queues.Worker([queues.queue(queues.SESSIONS)], connection=rq_redis)
    worker.register_birth()
    listening = queues.Worker.all(queue=queues.queue(queues.SESSIONS))
    assert [w.name for w in listening] == [worker.name]
    rq_redis.flushdb()  # Redis restarted empty
    assert queues.Worker.all(queue=queues.queue(queues.SESSIONS)) == []
    worker.heartbeat()
    listening = queues.Worker.all(queue=queues.queue(queues.SESSIONS))
    assert [w.name for w in listening] == [worker.name]
    assert worker.worker_ttl == queues.WORKER_TTL  # so an idle one beats every ~15 s
