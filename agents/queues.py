"""Queue names, enqueue helpers and the per-repository lead lock.

RQ jobs are transport, not state: every job re-reads its row and is
idempotent, so enqueueing twice is harmless and losing a job loses no work.
Jobs are enqueued only after the transaction that made their row commits.
This module reads no rows: what to enqueue is decided in agents.flow,
agents.lead and agents.reconcile.

A job that runs is never deleted or replaced (its worker would fail to record
its end). Only a job that finished, failed or was stopped makes room for a new
one with its id, and that check and delete are one Redis transaction.
"""

import logging
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import redis
from django.conf import settings
from django.db import transaction
from rq import Queue
from rq.exceptions import DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.utils import as_text

from workspace.models import Repository

log = logging.getLogger(__name__)
DONE = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
# Not started yet (queued, scheduled, deferred, …): its work begins after any ask seen now.
WAITING = set(JobStatus) - DONE - {JobStatus.STARTED}
PENDING = WAITING | {JobStatus.STARTED}
LOCK_PREFIX = "corral:lead-lock:"
TRIES = 10
MAX_RUNS = 8  # runs of one job name started at once (one per worker on its queue, at most)


@cache
def connection() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


SESSIONS = "sessions"
DEFAULT = "default"


def queue(name: str) -> Queue:
    return Queue(name, connection=connection())


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
    return Queue(lead_queue_name(repository), connection=connection())


def enqueue_once(queue: Queue, func: str, *args: Any, job_id: str, timeout: int) -> Job:
    """Enqueue unless a job with this id waits or runs (it covers this ask); return the job.

    For work whose job reads its row when it starts and needs no second run
    for a later ask: a session, a revert, a push. Many processes may ask at
    once: a job that vanishes or finishes between two calls means another try.
    """
    for _ in range(TRIES):
        if job := take_id(queue, func, args, job_id, timeout, covers=PENDING):
            return job
    raise RuntimeError(f"could not enqueue {job_id}")


def enqueue_run(queue: Queue, func: str, *args: Any, name: str, timeout: int) -> Job:
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
) -> Job | None:
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


def delete_if_done(job: Job) -> bool:
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


def enqueue_drain(repo: Repository) -> Job:
    """Ask the repository's lead to land what waits. A drain already queued
    will see this submission; one already running may have looked before it
    was there, so a follow-up drain waits behind it (enqueue_run)."""
    return enqueue_run(
        lead_queue(repo),
        "agents.lead.drain",
        repo.pk,
        name=drain_name(repo),
        timeout=-1,  # as long as there is work; each check command has its own timeout
    )


def enqueue_drain_on_commit(repo: Repository) -> None:
    after_commit(lambda: enqueue_drain(repo))


def enqueue_revert(repo: Repository, bead_id: str) -> None:
    enqueue_lead_job(repo, "agents.lead.revert", bead_id, f"revert-{bead_id}")


def enqueue_session(session_id: Any, timeout: int) -> None:
    after_commit(
        lambda: enqueue_once(
            queue(SESSIONS),
            "agents.runner.run_session",
            session_id,
            job_id=f"session-{session_id}",
            timeout=timeout,
        )
    )


def enqueue_push(repository: Repository) -> Job:
    """One pending push per repository: later commits ride along with it."""
    return enqueue_once(
        lead_queue(repository),
        "agents.lead.push_branch",
        repository.pk,
        job_id=f"push-{repository.slug}",
        timeout=600,
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
        lambda: enqueue_run(queue(DEFAULT), "agents.dispatch.dispatch", name=DISPATCH, timeout=300)
    )


def job_missing(job_id: str) -> bool:
    return not Job.exists(job_id, connection=connection())


def runs_pending(name: str) -> bool:
    """A run of `name` (see enqueue_run) waits or runs."""
    return any(status in PENDING for status in statuses(connection(), run_ids(name)))


def drain_pending(repo: Repository) -> bool:
    """A drain of the repository is queued or running (so its waiting work will land)."""
    return runs_pending(drain_name(repo))
