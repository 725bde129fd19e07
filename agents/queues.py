"""Queue names, enqueue helpers and the per-repository lead lock.

RQ jobs are transport, not state: every job re-reads its row and is
idempotent, so enqueueing twice is harmless and losing a job loses no work.
Jobs are enqueued only after the transaction that made their row commits.
"""

import logging
import os
import threading
from contextlib import contextmanager
from functools import cache

import redis
from django.conf import settings
from django.db import transaction
from rq import Queue
from rq.exceptions import DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

log = logging.getLogger(__name__)
PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
LOCK_PREFIX = "corral:lead-lock:"


@cache
def connection():
    return redis.Redis.from_url(settings.REDIS_URL)


SESSIONS = "sessions"
DEFAULT = "default"


def queue(name):
    return Queue(name, connection=connection())


def after_commit(enqueue):
    """Run an enqueue once the transaction commits. Redis being down loses no
    work: the row stays, and reconcile() enqueues it again later."""

    def guarded():
        try:
            enqueue()
        except redis.ConnectionError as e:
            log.warning("Redis is not reachable (%s): reconcile() will enqueue it later", e)
        except Exception:  # the row is saved either way; never fail the caller for transport
            log.exception("could not enqueue; reconcile() will")

    transaction.on_commit(guarded)


def lead_queue_name(repository):
    return f"lead:{repository.slug}"


def lead_queue(repository):
    return Queue(lead_queue_name(repository), connection=connection())


def enqueue_once(queue, func, *args, job_id, timeout, pending=PENDING):
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


def lead_timeout(repository):
    # Gates, the check command and the commit, with room to spare.
    return repository.check_timeout_s + 300


def enqueue_lead_job(repo, func, arg, job_id):
    """Put a job on the repository's lead queue once the transaction commits."""
    after_commit(
        lambda: enqueue_once(lead_queue(repo), func, arg, job_id=job_id, timeout=lead_timeout(repo))
    )


def enqueue_drain(repo):
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


def enqueue_submission(submission):
    repo = submission.repository
    after_commit(lambda: enqueue_drain(repo))


def enqueue_revert(bead):
    enqueue_lead_job(bead.repository, "agents.lead.revert", bead.pk, f"revert-{bead.pk}")


def enqueue_push(repository):
    """One pending push per repository: later commits ride along with it."""
    return enqueue_once(
        lead_queue(repository),
        "agents.lead.push_branch",
        repository.pk,
        job_id=f"push-{repository.slug}",
        timeout=600,
    )


def retry_pushes():
    """Enqueue a push for every repository with commits a failed push left behind."""
    from agents.models import Submission
    from workspace.models import Repository

    behind = Submission.objects.filter(status="committed", pushed_at=None).exclude(push_error="")
    repos = Repository.objects.filter(push=True, active=True, submissions__in=behind).distinct()
    for repo in repos:
        enqueue_push(repo)
    return len(repos)


def requeue_in_flight(repository):
    """For a lead starting up: if submissions wait, a drain is queued for them
    (a drain job left `started` by a lead that died never finishes: it is
    replaced). Returns how many wait."""
    from agents.lead import IN_FLIGHT
    from agents.models import Submission

    waiting = Submission.objects.filter(repository=repository, status__in=IN_FLIGHT).count()
    if waiting:
        enqueue_drain(repository)
    return waiting


@contextmanager
def repo_lock(repository):
    """Hold the repository's lead lock: at most one commit step at a time, anywhere.

    The lock lives a few seconds and a thread renews it while the holder
    works, so a lead killed mid-job frees it quickly instead of after the
    longest check command.
    """
    ttl = settings.LEAD_LOCK_SECONDS
    lock = connection().lock(LOCK_PREFIX + repository.slug, timeout=ttl, thread_local=False)
    lock.acquire(blocking=True)
    stop = threading.Event()

    def renew():
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


def session_timeout(session):
    from agents.runner import time_limit_s

    # The agent's limit, the grace before SIGKILL, and the clone and collection.
    return time_limit_s(session) + settings.KILL_GRACE_SECONDS + 300


def enqueue_session(session):
    after_commit(
        lambda: enqueue_once(
            queue(SESSIONS),
            "agents.runner.run_session",
            session.pk,
            job_id=f"session-{session.pk}",
            timeout=session_timeout(session),
        )
    )


def enqueue_dispatch():
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


def job_missing(job_id):
    return not Job.exists(job_id, connection=connection())


def drain_pending(repo):
    """A drain of the repository is queued or running (so its waiting work will land)."""
    job_id = f"drain-{repo.slug}"
    if job_missing(job_id):
        return False
    return Job.fetch(job_id, connection=connection()).get_status(refresh=True) in PENDING


def reconcile():
    """Repair what crashed processes and a lost Redis leave behind.

    Sessions whose lease expired are lost: their agent's process group is
    killed if it runs on this machine, their bead goes back to the hook.
    Queued sessions and in-flight submissions whose job vanished are queued
    again.
    """
    from django.utils import timezone

    from agents.models import Session, Submission

    expired = Session.objects.filter(status__in=Session.LIVE, lease_expires_at__lt=timezone.now())
    lost = [s for s in expired.select_related("bead", "agent") if s.lose()]
    for session in lost:
        kill_local_agent(session)
    queued = Session.objects.filter(status=Session.Status.QUEUED).select_related(
        "agent", "bead__repository"
    )
    requeued = [s for s in queued if job_missing(f"session-{s.pk}")]
    for session in requeued:
        enqueue_session(session)
    from agents.lead import IN_FLIGHT

    in_flight = Submission.objects.filter(status__in=IN_FLIGHT).select_related("repository")
    undrained = [s for s in in_flight if not drain_pending(s.repository)]
    for repo in {s.repository for s in undrained}:
        enqueue_drain(repo)
    return {"lost": len(lost), "sessions": len(requeued), "submissions": len(undrained)}


def kill_local_agent(session):
    """Kill a lost session's agent if it still runs here (checked by its folder)."""
    import signal
    import socket

    host, _, _ = session.worker.partition(":")
    if not session.pid or host != socket.gethostname() or not session.workdir:
        return False
    try:
        cwd = os.readlink(f"/proc/{session.pid}/cwd")
    except OSError:
        return False
    if os.path.realpath(cwd) != os.path.realpath(session.workdir):
        return False  # the pid was reused by another process
    try:
        os.killpg(session.pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True
