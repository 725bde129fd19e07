"""RQ bookkeeping under asks racing a running job: real workers, real Redis.

An ask for a dispatch or a drain while one runs must not touch the running
job (deleting it from its registry made its worker log tracebacks) and must
get a run that starts after it; many asks while one waits make one run.
"""

import json
import re
import time

import pytest
from rq.job import Job, JobStatus

from agents import queues
from agents.models import Submission
from beads.models import Bead
from tests.factories import make_patch, submit
from tests.procs import Running, wait_until
from tests.races import race

pytestmark = pytest.mark.django_db(transaction=True)

RUNS = "test:runs"
# What a worker prints besides its jobs' own lines: anything like these is a finding.
TROUBLE = re.compile(r"Traceback|Error|error|Exception|WARNING|warning|abandon|[Nn]o such")


def record_run(seconds):
    """A job that notes when it ran (run by the worker, in its process)."""
    conn = queues.connection()
    started = time.time()
    conn.rpush(RUNS + ":started", started)
    time.sleep(seconds)
    conn.rpush(RUNS, json.dumps([started, time.time()]))


def runs(conn):
    return [json.loads(r) for r in conn.lrange(RUNS, 0, -1)]


def ask(n, seconds):
    """`n` asks for a run of record_run; returns when the last one was answered."""
    for _ in range(n):
        queues.enqueue_run(
            queues.queue(queues.DEFAULT),
            "tests.agents.test_queues.record_run",
            seconds,
            name="recorded",
            timeout=60,
        )
    return time.time()


def default_worker(env):
    return Running(["manage.py", "rqworker", "default"], env)


def assert_clean(worker):
    trouble = [line for line in worker.output.splitlines() if TROUBLE.search(line)]
    assert not trouble, worker.output


def assert_one_at_a_time(done):
    spans = sorted(done)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start, f"two runs overlapped: {spans}"


def idle(name):
    return lambda: not queues.runs_pending(name)


FIRST_RUN_S = 6.0


@pytest.mark.slow
def test_asks_racing_a_running_job_get_one_run_after_it(rq_redis, subprocess_env):
    worker = default_worker(subprocess_env)
    try:
        # The first run lasts long enough for eight processes to start and ask
        # on a loaded machine (2 s was too short beside a busy suite).
        ask(1, FIRST_RUN_S)
        wait_until(lambda: rq_redis.llen(RUNS + ":started") == 1, what="the first run")
        # Eight processes ask twenty times each while it runs.
        last_ask = max(race(ask, [(20, 0.2)] * 8))
        first_started = float(rq_redis.lindex(RUNS + ":started", 0))
        assert last_ask < first_started + FIRST_RUN_S, "the asks must come while the first run runs"
        wait_until(idle("recorded"), timeout=30, what="the runs to end")
    finally:
        worker.kill_group()
    done = runs(rq_redis)
    assert len(done) == 2, done  # the first, and one for all 160 asks made during it
    assert_one_at_a_time(done)
    assert done[1][0] >= last_ask  # the follow-up started after the last ask
    assert_clean(worker)


def test_many_asks_while_one_waits_make_one_run(rq_redis):
    jobs = {ask_job().id for _ in range(5)}
    race(ask, [(10, 0)] * 4)
    assert len(jobs) == 1 and queues.queue(queues.DEFAULT).job_ids == ["recorded"]


def ask_job():
    return queues.enqueue_run(
        queues.queue(queues.DEFAULT),
        "tests.agents.test_queues.record_run",
        0,
        name="recorded",
        timeout=60,
    )


def test_a_finished_or_failed_job_makes_room_but_a_running_one_is_kept(rq_redis):
    queue = queues.queue(queues.DEFAULT)
    job = ask_job()
    job.set_status(JobStatus.FAILED)
    again = ask_job()
    assert again.id == "recorded" and again.get_status() == JobStatus.QUEUED
    again.set_status(JobStatus.STARTED)  # as a worker marks the job it runs
    follow_up = ask_job()
    assert follow_up.id == "next1-recorded"
    assert Job.fetch("recorded", connection=rq_redis).get_status() == JobStatus.STARTED
    assert queue.job_ids == ["recorded", "next1-recorded"]
    assert queues.delete_if_done(again) is False  # never a running job
    assert queues.runs_pending("recorded")


@pytest.mark.slow
def test_a_dispatch_asked_for_while_one_runs_is_not_deleted(rq_redis, subprocess_env):
    """The dispatch job waits on its lock (held here), as it does behind a slow one."""
    lock = rq_redis.lock("corral:dispatch", timeout=60)
    lock.acquire()
    worker = default_worker(subprocess_env)
    try:
        queues.enqueue_dispatch()
        running = Job.fetch(queues.DISPATCH, connection=rq_redis)
        wait_until(lambda: running.get_status() == JobStatus.STARTED, what="dispatch to start")
        race(ask_dispatch, [(5,)] * 4)
        assert running.get_status() == JobStatus.STARTED  # still there, still running
        assert queues.queue(queues.DEFAULT).job_ids == ["next1-dispatch"]
        lock.release()
        wait_until(idle(queues.DISPATCH), timeout=60, what="both dispatches to end")
    finally:
        worker.kill_group()
    assert len(re.findall(r"Job OK \((next1-)?dispatch\)", worker.output)) == 2, worker.output
    assert_clean(worker)


def ask_dispatch(n):
    for _ in range(n):
        queues.enqueue_dispatch()  # no transaction open: it is asked at once


@pytest.mark.slow
def test_a_submission_during_a_drain_gets_a_drain_after_it(repo, agent, rq_redis, subprocess_env):
    repo.check_command = 'python3 -c "import time; time.sleep(2)"'
    repo.save()
    first = Bead.objects.create(repository=repo, title="First", scope=["a/**"])
    second = Bead.objects.create(repository=repo, title="Second", scope=["b/**"])
    base, patch_a = make_patch(repo, {"a/done.txt": "a\n"})
    _, patch_b = make_patch(repo, {"b/done.txt": "b\n"})
    worker = Running(["manage.py", "leadworker", repo.slug], subprocess_env)
    try:
        sub_a = submit(first, agent, patch_a, base)
        wait_until(lambda: sub_a.gate_results.filter(gate="apply").exists(), what="the check")
        drain = Job.fetch(queues.drain_name(repo), connection=rq_redis)
        assert drain.get_status() == JobStatus.STARTED
        sub_b = submit(second, agent, patch_b, base)  # its drain is asked for on commit
        assert drain.get_status() == JobStatus.STARTED
        assert queues.lead_queue(repo).job_ids == [f"next1-drain-{repo.slug}"]
        assert queues.drain_pending(repo)
        wait_until(lambda: not Submission.objects.filter(finished_at=None).exists(), timeout=60)
        wait_until(lambda: not queues.drain_pending(repo), timeout=30, what="the drains to end")
    finally:
        worker.kill_group()
    for sub in (sub_a, sub_b):
        sub.refresh_from_db()
        assert sub.status == Submission.Status.COMMITTED, sub.reason
    assert_clean(worker)
