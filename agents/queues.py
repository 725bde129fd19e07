"""Queue names, enqueue helpers and the per-repository lead lock.

RQ jobs are transport, not state: every job re-reads its row and is
idempotent, so enqueueing twice is harmless and losing a job loses no work.
Jobs are enqueued only after the transaction that made their row commits.
This module reads no rows: what to enqueue is decided in agents.flow,
agents.lead and agents.reconcile.
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

from workspace.models import Repository

log = logging.getLogger(__name__)
PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
LOCK_PREFIX = "corral:lead-lock:"


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


def lead_queue_name(repository: Repository) -> str:
    return f"lead:{repository.slug}"


def lead_queue(repository: Repository) -> Queue:
    return Queue(lead_queue_name(repository), connection=connection())


def enqueue_once(
    queue: Queue,
    func: str,
    *args: Any,
    job_id: str,
    timeout: int,
    pending: Collection[JobStatus] = PENDING,
) -> Job:
    """Enqueue unless a job with this id is still `pending`; return the job.

    Many processes may ask at once: a job that vanishes or finishes between
    two calls just means another try.
    """
    for _ in range(10):
        try:
            return queue.enqueue_call(
                func, args=args, job_id=job_id, timeout=timeout, result_ttl=0, unique=True
            )
        except DuplicateJobError:
            try:
                job = Job.fetch(job_id, connection=queue.connection)
                if job.get_status(refresh=True) in pending:
                    return job
            except (NoSuchJobError, InvalidJobOperation):
                continue  # it vanished between two calls
            job.delete()  # finished or failed long ago: make room for a fresh run
    raise RuntimeError(f"could not enqueue {job_id}")


def lead_timeout(repository: Repository) -> int:
    # Gates, the check command and the commit, with room to spare.
    return repository.check_timeout_s + 300


def enqueue_lead_job(repo: Repository, func: str, arg: Any, job_id: str) -> None:
    """Put a job on the repository's lead queue once the transaction commits."""
    after_commit(
        lambda: enqueue_once(lead_queue(repo), func, arg, job_id=job_id, timeout=lead_timeout(repo))
    )


def enqueue_drain(repo: Repository) -> Job:
    """Ask the repository's lead to land what waits. A drain already queued
    will see this submission; one already running may have looked before it
    was there, so only a queued one counts."""
    return enqueue_once(
        lead_queue(repo),
        "agents.lead.drain",
        repo.pk,
        job_id=f"drain-{repo.slug}",
        timeout=-1,  # as long as there is work; each check command has its own timeout
        pending={JobStatus.QUEUED},
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
def repo_lock(repository: Repository) -> Iterator[None]:
    """Hold the repository's lead lock: at most one commit step at a time, anywhere.

    The lock lives a few seconds and a thread renews it while the holder
    works, so a lead killed mid-job frees it quickly instead of after the
    longest check command.
    """
    ttl = settings.LEAD_LOCK_SECONDS
    lock = connection().lock(LOCK_PREFIX + repository.slug, timeout=ttl, thread_local=False)
    lock.acquire(blocking=True)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            lock.reacquire()

    renewer = threading.Thread(target=renew, daemon=True, name="lead-lock-renewer")
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        lock.release()


def enqueue_dispatch() -> None:
    """Ask for a dispatch soon; many asks while one waits make one run. A
    dispatch already running may have read the hook before this ask's bead
    was there, so only a queued one counts."""
    after_commit(
        lambda: enqueue_once(
            queue(DEFAULT),
            "agents.dispatch.dispatch",
            job_id="dispatch",
            timeout=300,
            pending={JobStatus.QUEUED},
        )
    )


def job_missing(job_id: str) -> bool:
    return not Job.exists(job_id, connection=connection())


def drain_pending(repo: Repository) -> bool:
    """A drain of the repository is queued or running (so its waiting work will land)."""
    job_id = f"drain-{repo.slug}"
    if job_missing(job_id):
        return False
    return Job.fetch(job_id, connection=connection()).get_status(refresh=True) in PENDING
