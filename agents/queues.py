"""Queue names, enqueue helpers and the per-repository lead lock.

RQ jobs are transport, not state: every job re-reads its row and is
idempotent, so enqueueing twice is harmless and losing a job loses no work.
Jobs are enqueued only after the transaction that made their row commits.
This module reads no rows: what to enqueue is decided by the moves
(agents/moves/), the lead (agents/jobs/lead.py) and agents.jobs.reconcile.

A job that runs is never deleted or replaced (its worker would fail to record
its end), unless its worker is dead (abandon()): only a job that finished,
failed or was stopped, or one a dead worker left `started`, makes room for a
new one with its id, and that check and delete are one Redis transaction.
"""

import importlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, cast

import redis
from django.conf import settings
from django.db import transaction
from rq import Queue
from rq import Worker as RQWorker
from rq.exceptions import DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.utils import as_text, import_attribute

from workspace import processes
from workspace.models import Repository

log = logging.getLogger(__name__)
DONE = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
# Not started yet (queued, scheduled, deferred, …): its work begins after any ask seen now.
WAITING = set(JobStatus) - DONE - {JobStatus.STARTED}
PENDING = WAITING | {JobStatus.STARTED}
LOCK_PREFIX = "corral:lead-lock:"
TRIES = 10
MAX_RUNS = 8  # runs of one job name started at once (one per worker on its queue, at most)


# Jobs enqueued by an older Corral name their functions by the paths they had
# before agents/ was split into packages; a worker of this version runs them
# under the new ones, so an upgrade loses none waiting in Redis.
MOVED_FUNCTIONS = {
    "agents.lead.drain": "agents.jobs.lead.drain",
    "agents.lead.revert": "agents.jobs.revert.revert",
    "agents.lead.push_branch": "agents.jobs.push.push_branch",
    "agents.runner.run_session": "agents.jobs.runner.run_session",
    "agents.dispatch.dispatch": "agents.jobs.dispatch.dispatch",
    "agents.webhooks.deliver": "agents.jobs.webhooks.deliver",
    "agents.integration.run": "agents.jobs.integration.run",
    "agents.integration.revert": "agents.jobs.integration.revert",
}


class Job(RQJob):
    """RQ's job, finding a function enqueued under its old path at its new one.
    Every worker and queue of Corral's uses it (settings.RQ's JOB_CLASS, the
    lead pool)."""

    @property
    def func(self) -> Any:
        name = self.func_name
        if self.instance is None and name in MOVED_FUNCTIONS:
            return import_attribute(MOVED_FUNCTIONS[name])
        return super().func


WORKER_TTL = 30


class Worker(RQWorker):
    """RQ's forking worker (`manage.py rqworker`, settings.RQ's WORKER_CLASS),
    whose work horse dies with it. RQ puts the horse in a process group of its
    own, so a worker killed with SIGKILL (or stopped by its group) left it
    running a session that no worker stood for; now the horse goes, its
    sandboxed agent with it (sandbox die_with_parent), and reconcile() sees
    the session's heartbeat stop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parent_pid = os.getpid()
        # An idle worker beats once per dequeue timeout (its TTL less 15 s):
        # kept short, so that a Redis restarted empty counts it again soon.
        self.worker_ttl = min(self.worker_ttl, WORKER_TTL)
        warm_job_modules(self.queue_names())

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat; and a worker whose registration a Redis restarted
        empty forgot registers again, so dispatch, which counts the workers
        listening on `sessions`, sees it (else it would start nothing until a
        worker restarted)."""
        if pipeline is None and not self.connection.exists(self.key):
            self.register_birth()
        super().heartbeat(timeout, pipeline)

    def setup_work_horse_signals(self) -> None:
        super().setup_work_horse_signals()  # SIGTERM left to its default: it ends the horse
        signal.signal(WIND_DOWN, wind_down)
        processes.die_with_parent()
        if os.getppid() != self.parent_pid:  # the worker died before that took effect
            os._exit(1)

    def _install_signal_handlers(self) -> None:
        super()._install_signal_handlers()
        # Ignored here, and so in a horse until it sets its handler: the
        # signal's default would kill a horse told to wind down as it starts.
        signal.signal(WIND_DOWN, signal.SIG_IGN)

    def handle_warm_shutdown_request(self) -> None:
        """SIGTERM (a scale-down, a rollout, `docker compose stop`): RQ waits for
        the job in hand; the horse is told to wind down, so that a session
        finishes or is salvaged within CORRAL_SHUTDOWN_GRACE_SECONDS rather
        than be cut short by the SIGKILL that follows the supervisor's grace."""
        super().handle_warm_shutdown_request()
        if self.horse_pid and self.get_state() == "busy":
            try:
                os.kill(self.horse_pid, WIND_DOWN)
            except ProcessLookupError:
                pass  # it has just finished


# What a worker's SIGTERM becomes for its work horse (see Worker).
WIND_DOWN = signal.SIGUSR1
_wind_down_by: float | None = None


def wind_down(signum: int = WIND_DOWN, frame: Any = None) -> None:
    """In a work horse: its worker is stopping; the job in hand has
    CORRAL_SHUTDOWN_GRACE_SECONDS from now (a second signal changes nothing)."""
    global _wind_down_by
    if _wind_down_by is None:
        _wind_down_by = time.monotonic() + settings.SHUTDOWN_GRACE_SECONDS


def wind_down_by() -> float | None:
    """When the job in hand must be done (time.monotonic()), or None: no stop asked."""
    return _wind_down_by


@cache
def connection() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


SESSIONS = "sessions"
DEFAULT = "default"
# The modules of each queue's jobs, imported by the worker before it forks a
# work horse per job, so that no horse imports them again (the session runner's
# import was ~300 ms of each session's start on a loaded 2-core machine). By
# name: the queues sit below the jobs.
JOB_MODULES = {SESSIONS: ["agents.jobs.runner"], DEFAULT: ["agents.jobs.dispatch"]}


def warm_job_modules(queue_names: Collection[str]) -> None:
    for name in queue_names:
        for module in JOB_MODULES.get(name, []):
            importlib.import_module(module)


def queue(name: str) -> Queue:
    return Queue(name, connection=connection(), job_class=Job)


def after_commit(enqueue: Callable[[], object]) -> None:
    """Run an enqueue once the transaction commits. Redis being down loses no
    work: the row stays, and reconcile() enqueues it again later."""

    def guarded() -> None:
        try:
            enqueue()
        except redis.ConnectionError as e:
            log.warning("Redis is not reachable (%s): reconcile() will enqueue it later", e)
        except Exception:  # the row is saved either way; never fail the caller for transport
            log.exception("could not enqueue; reconcile() will")

    transaction.on_commit(guarded)


LEAD = "lead"


def lead_queue_name(repository: Repository | None = None) -> str:
    """Every repository's lead jobs share one queue: a fixed number of lead
    workers serve them all, and the repository's lock keeps one writer each."""
    return LEAD


def lead_queue(repository: Repository | None = None) -> Queue:
    return Queue(lead_queue_name(repository), connection=connection(), job_class=Job)


def enqueue_once(queue: Queue, func: str, *args: Any, job_id: str, timeout: int) -> RQJob:
    """Enqueue unless a job with this id waits or runs (it covers this ask); return the job.

    For work whose job reads its row when it starts and needs no second run
    for a later ask: a session, a revert, a push. Many processes may ask at
    once: a job that vanishes or finishes between two calls means another try.
    """
    for _ in range(TRIES):
        if job := take_id(queue, func, args, job_id, timeout, covers=PENDING):
            return job
    raise RuntimeError(f"could not enqueue {job_id}")


def enqueue_run(queue: Queue, func: str, *args: Any, name: str, timeout: int) -> RQJob:
    """Ask for a run of `func` that starts after this call; return its job.

    For work that reads what waits when it starts (a dispatch reads the
    hook, a drain the lead's queue): a run already waiting serves every ask
    made before it starts, but one already running may have looked before
    this ask's change and must not be touched, so a follow-up waits behind
    it. Runs take the ids `name`, then `next1-name`, `next2-name`…: the first
    one not running, so a follow-up never reuses a running job's id.
    """
    ids = run_ids(name)
    for _ in range(TRIES):
        found = statuses(queue.connection, ids)
        waiting = [job_id for job_id, status in zip(ids, found, strict=True) if status in WAITING]
        free = [job_id for job_id, status in zip(ids, found, strict=True) if status not in PENDING]
        if not waiting and not free:
            raise RuntimeError(f"{len(ids)} runs of {name} are running at once")
        # Take a waiting one before filling a free id: one waiting run serves all.
        job_id = (waiting or free)[0]
        if job := take_id(queue, func, args, job_id, timeout, covers=WAITING):
            return job
    raise RuntimeError(f"could not enqueue {name}")


def run_ids(name: str) -> list[str]:
    # A prefix, not a suffix: "drain-app-1" could be another repository's drain.
    return [name, *(f"next{n}-{name}" for n in range(1, MAX_RUNS))]


def statuses(connection: redis.Redis, job_ids: list[str]) -> list[JobStatus | None]:
    """Each job's status, None where there is no such job, in one round trip."""
    pipe = connection.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(Job.key_for(job_id), "status")
    return [JobStatus(as_text(s)) if s else None for s in pipe.execute()]


def take_id(
    queue: Queue,
    func: str,
    args: tuple[Any, ...],
    job_id: str,
    timeout: int,
    covers: Collection[JobStatus],
) -> RQJob | None:
    """Enqueue a job under `job_id`, or return the job holding it if its status
    `covers` this ask; None when the id was busy otherwise and the caller should
    look again (it started meanwhile, vanished, or finished and was cleared)."""
    try:
        return queue.enqueue_call(
            func, args=args, job_id=job_id, timeout=timeout, result_ttl=0, unique=True
        )
    except DuplicateJobError:
        pass
    try:
        job = Job.fetch(job_id, connection=queue.connection)
        status = job.get_status(refresh=True)
    except (NoSuchJobError, InvalidJobOperation):
        return None  # it vanished between two calls
    if status in covers:
        return job
    if status in DONE:
        delete_if_done(job)  # make room for a fresh run
    return None


def delete_if_done(job: RQJob) -> bool:
    """Delete a job that finished, failed or was stopped, never one that waits
    or runs: the status check and the delete are one transaction (WATCH), so a
    job enqueued again under the id in between is left alone."""
    with job.connection.pipeline() as pipe:
        try:
            pipe.watch(job.key)
            status = pipe.hget(job.key, "status")
            if not status or JobStatus(as_text(status)) not in DONE:
                return False
            pipe.multi()
            job.delete(pipeline=pipe)
            pipe.execute()
        except redis.WatchError:
            return False  # the job changed meanwhile: the caller looks again
    return True


def abandon(queue: Queue, job_id: str, workers: Collection[str]) -> bool:
    """Delete a job of `queue` left `started` by one of `workers`, all dead:
    nobody will ever finish it, and while it stands its id (a drain's, a
    revert's, a change set's) looks taken. The check, the delete and its
    removal from the started registry are one transaction (WATCH on the job),
    so a job that finished, was enqueued again or was abandoned by another
    reconciler meanwhile is left alone; what RQ keeps of its execution expires."""
    key = Job.key_for(job_id)
    registry = queue.started_job_registry.key
    with queue.connection.pipeline() as pipe:
        try:
            pipe.watch(key)  # not the registry: other jobs start and end there
            status, worker = pipe.hmget(key, ["status", "worker_name"])
            if not status or JobStatus(as_text(status)) != JobStatus.STARTED:
                return False
            if not worker or as_text(worker) not in workers:
                return False
            entries = map(as_text, cast("list[bytes]", pipe.zrange(registry, 0, -1)))
            runs = [entry for entry in entries if entry.startswith(job_id + ":")]
            pipe.multi()
            pipe.delete(key)
            if runs:
                pipe.zrem(registry, *runs)
            pipe.execute()
        except redis.WatchError:
            return False
    return True


def abandon_jobs_of(workers: Collection[str]) -> list[str]:
    """Delete the lead queue's jobs left `started` by `workers`, all dead (see
    abandon()); the ids of those deleted. reconcile() then enqueues again
    whatever their rows still ask for."""
    if not workers:
        return []
    lead = lead_queue()
    started = lead.started_job_registry.get_job_ids(cleanup=False)
    return [job_id for job_id in dict.fromkeys(started) if abandon(lead, job_id, workers)]


def lead_timeout(repository: Repository) -> int:
    # Gates, the check command and the commit, with room to spare.
    return repository.check_timeout_s + 300


def enqueue_lead_job(repo: Repository, func: str, arg: Any, job_id: str) -> None:
    """Put a job on the repository's lead queue once the transaction commits."""
    after_commit(
        lambda: enqueue_once(lead_queue(repo), func, arg, job_id=job_id, timeout=lead_timeout(repo))
    )


def drain_name(repo: Repository) -> str:
    return f"drain-{repo.slug}"


def enqueue_drain(repo: Repository) -> RQJob:
    """Ask the repository's lead to land what waits. A drain already queued
    will see this submission; one already running may have looked before it
    was there, so a follow-up drain waits behind it (enqueue_run)."""
    return enqueue_run(
        lead_queue(repo),
        "agents.jobs.lead.drain",
        repo.pk,
        name=drain_name(repo),
        timeout=-1,  # as long as there is work; each check command has its own timeout
    )


def enqueue_drain_on_commit(repo: Repository) -> None:
    after_commit(lambda: enqueue_drain(repo))


def revert_job_id(bead_id: str) -> str:
    return f"revert-{bead_id}"


def enqueue_revert(repo: Repository, bead_id: str) -> None:
    enqueue_lead_job(repo, "agents.jobs.revert.revert", bead_id, revert_job_id(bead_id))


def enqueue_session(session_id: Any, timeout: int) -> None:
    after_commit(
        lambda: enqueue_once(
            queue(SESSIONS),
            "agents.jobs.runner.run_session",
            session_id,
            job_id=f"session-{session_id}",
            timeout=timeout,
        )
    )


def enqueue_push(repository: Repository) -> RQJob:
    """One pending push per repository: later commits ride along with it."""
    return enqueue_once(
        lead_queue(repository),
        "agents.jobs.push.push_branch",
        repository.pk,
        job_id=f"push-{repository.slug}",
        timeout=600,
    )


def enqueue_forge_poll(repository: Repository) -> RQJob:
    """One pending look at a repository's pull requests: later asks ride along."""
    return enqueue_once(
        lead_queue(repository),
        "agents.jobs.forge.poll",
        repository.pk,
        job_id=f"forge-{repository.slug}",
        timeout=600,
    )


def enqueue_forge_poll_on_commit(repository: Repository) -> None:
    after_commit(lambda: enqueue_forge_poll(repository))


def enqueue_follow(repository: Repository) -> RQJob:
    """Ask the lead to fetch the upstream and follow it: one waiting run serves
    every ask (the schedule, a burst of webhooks)."""
    return enqueue_run(
        lead_queue(repository),
        "agents.jobs.upstream.follow_upstream",
        repository.pk,
        name=f"follow-{repository.slug}",
        timeout=900,
    )


def rebuild_name(repository: Repository) -> str:
    return f"rebuild-{repository.slug}"


def enqueue_rebuild(repository: Repository) -> RQJob:
    return enqueue_run(
        lead_queue(repository),
        "agents.jobs.upstream.rebuild",
        repository.pk,
        name=rebuild_name(repository),
        timeout=900,
    )


@contextmanager
def repo_lock(repository: Repository, wait_s: float | None = None) -> Iterator[bool]:
    """Hold the repository's lead lock: at most one commit step at a time, anywhere.

    The lock lives a few seconds and a thread renews it while the holder
    works, so a lead killed mid-job frees it quickly instead of after the
    longest check command. With wait_s, give up after that long and yield
    False (the lock is not held); without, wait as long as it takes.
    """
    ttl = settings.LEAD_LOCK_SECONDS
    lock = connection().lock(LOCK_PREFIX + repository.slug, timeout=ttl, thread_local=False)
    if not lock.acquire(blocking=True, blocking_timeout=wait_s):
        yield False
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            lock.reacquire()

    renewer = threading.Thread(target=renew, daemon=True, name="lead-lock-renewer")
    renewer.start()
    try:
        yield True
    finally:
        stop.set()
        renewer.join()
        lock.release()


DISPATCH = "dispatch"


def enqueue_dispatch() -> None:
    """Ask for a dispatch soon; many asks while one waits make one run. A
    dispatch already running may have read the hook before this ask's bead
    was there, so a follow-up waits behind it (enqueue_run)."""
    after_commit(
        lambda: enqueue_run(
            queue(DEFAULT), "agents.jobs.dispatch.dispatch", name=DISPATCH, timeout=300
        )
    )


def job_missing(job_id: str) -> bool:
    return not Job.exists(job_id, connection=connection())


def runs_pending(name: str) -> bool:
    """A run of `name` (see enqueue_run) waits or runs."""
    return any(status in PENDING for status in statuses(connection(), run_ids(name)))


def drain_pending(repo: Repository) -> bool:
    """A drain of the repository is queued or running (so its waiting work will land)."""
    return runs_pending(drain_name(repo))
