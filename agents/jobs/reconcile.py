"""Repair what crashed processes and a lost Redis leave behind.

RQ jobs are transport, not state: a job can vanish (Redis restarted, a worker
killed), so this looks at the rows and enqueues again whatever should be
moving and is not. It runs on the ticker (`manage.py tick`) and is safe to run
as often and in as many places as anyone likes.
"""

import logging
import os
import signal
import socket

from django.db.models import QuerySet
from django.utils import timezone

from agents import queues
from agents.jobs import salvage, webhooks
from agents.models import RevertRequest, Session, Submission, WorkerBeat
from agents.models.webhooks import REPOSITORY_STUCK
from agents.moves import changesets, lifecycle, notifications
from agents.reports import problems
from workspace.models import Repository
from workspace.processes import signal_group

log = logging.getLogger(__name__)


def reconcile() -> dict[str, int]:
    """Workers that stopped beating are dead: their sessions are lost and their
    lead jobs freed (see bury()). Sessions whose lease expired are lost: their
    agent's process group is killed if it runs on this machine, what its clone
    holds here is salvaged (the next session on the bead waits for that), their
    bead goes back to the hook. Queued sessions, waiting submissions, change
    sets in flight (gating, landing, reverting) and revert requests whose job
    vanished are queued again."""
    dead, orphaned, freed = bury()
    expired = Session.objects.filter(status__in=Session.LIVE, lease_expires_at__lt=timezone.now())
    lost = [s for s in expired.select_related("bead", "agent") if lifecycle.lose(s)]
    for session in lost:
        kill_local_agent(session)
        keep_lost_work(session)
    queued = Session.objects.filter(status=Session.Status.QUEUED).select_related(
        "agent", "bead__repository"
    )
    requeued = [s for s in queued if queues.job_missing(f"session-{s.pk}")]
    for session in requeued:
        queues.enqueue_session(session.pk, lifecycle.session_job_timeout(session))
    waiting = Submission.objects.filter(status__in=Submission.FOR_LEAD).select_related("repository")
    undrained = [s for s in waiting if not queues.drain_pending(s.repository)]
    for repo in {s.repository for s in undrained}:
        queues.enqueue_drain(repo)
    stalled = [c for c, job in changesets.in_flight() if queues.job_missing(job)]
    for changeset in stalled:
        changesets.enqueue_again(changeset)
    for repo in rebuilds_lost():
        queues.enqueue_rebuild(repo)
    return {
        "dead workers": dead,
        "orphaned": orphaned,
        "abandoned jobs": freed,
        "lost": len(lost),
        "sessions": len(requeued),
        "submissions": len(undrained),
        "changesets": len(stalled),
        "reverts": requeue_reverts(),
        "stuck": tell_stuck(),
        "webhooks": webhooks.send_due(),
    }


def bury() -> tuple[int, int, int]:
    """Workers not heard from for CORRAL_WORKER_DEAD_SECONDS are dead. Each
    live session a dead runner held is lost (its bead back to the hook), what
    is left of its agent here killed and what its clone holds here salvaged;
    each lead job a dead lead worker
    left `started` is deleted, so that the steps below enqueue again what its
    rows still ask for (the drain resumes a submission left `checking`: the
    lead finds a commit it made by its Session: trailer). The rows go last, so
    a Redis away meanwhile leaves them for the next tick.
    Returns (dead workers, sessions lost, jobs freed)."""
    dead = WorkerBeat.dead()
    if not dead:
        return 0, 0, 0
    names = [row.name for row in dead]
    held = Session.objects.filter(status__in=Session.LIVE, worker__in=names)
    orphaned = [s for s in held.select_related("bead", "agent") if lifecycle.worker_died(s)]
    for session in orphaned:
        kill_local_agent(session)
        keep_lost_work(session)
    leads = {row.name for row in dead if row.kind == WorkerBeat.Kind.LEAD}
    freed = queues.abandon_jobs_of(leads)
    WorkerBeat.forget(dead)
    return len(dead), len(orphaned), len(freed)


def requeue_reverts() -> int:
    """Revert requests waiting with no job (Redis lost it, or a lead killed
    holding it): their job again."""
    pending = RevertRequest.objects.filter(state=RevertRequest.State.PENDING)
    requeued = 0
    for request in pending.select_related("bead__repository", "changeset"):
        if request.bead is not None:
            if queues.job_missing(queues.revert_job_id(request.bead.pk)):
                queues.enqueue_revert(request.bead.repository, request.bead.pk)
                requeued += 1
        elif request.changeset is not None:
            if queues.job_missing(changesets.revert_job_id(request.changeset)):
                changesets.enqueue_revert(request.changeset)
                requeued += 1
    return requeued


def tell_stuck() -> int:
    """Webhooks hear of each stuck repository once per submission it is stuck on."""
    told = 0
    for repo in problems.stuck():
        head = repo.submissions.filter(status__in=Submission.FOR_LEAD).order_by("queued_at").first()
        told += notifications.emit(
            REPOSITORY_STUCK,
            {
                "repository": repo.slug,
                "waiting": repo.waiting,
                "text": f"{repo.name}'s lead queue has not moved since {repo.moved:%H:%M} UTC.",
            },
            key=f"stuck:{repo.slug}:{head.pk if head else ''}",
        )
    return told


def keep_lost_work(session: Session) -> None:
    try:
        salvage.keep_lost(session)
    except Exception:  # one session's salvage never stops the repairs
        log.exception("session %s: salvage failed", session.pk)


def kill_local_agent(session: Session) -> bool:
    """Kill a lost session's agent if it still runs here (checked by its folder,
    so a pid the system has since given to another process is left alone)."""
    host, _, _ = session.worker.partition(":")
    if not session.pid or host != socket.gethostname() or not session.workdir:
        return False
    try:
        cwd = os.readlink(f"/proc/{session.pid}/cwd")
    except OSError:
        return False
    if os.path.realpath(cwd) != os.path.realpath(session.workdir):
        return False  # the pid was reused by another process
    return signal_group(session.pid, signal.SIGKILL)


def unpushed() -> "QuerySet[Repository]":
    """Repositories whose last push failed."""
    following = Repository.objects.filter(
        push=True, active=True, push_ok=False, landing=Repository.Landing.FOLLOWING
    )
    return following.exclude(upstream="")


def rebuilds_lost() -> list[Repository]:
    """Repositories an operator asked to rebuild on the upstream whose job vanished."""
    rebuilding = Repository.objects.filter(landing=Repository.Landing.REBUILDING)
    return [repo for repo in rebuilding if not queues.runs_pending(queues.rebuild_name(repo))]


def retry_pushes() -> int:
    """Enqueue a push for every repository a failed push left behind."""
    repos = list(unpushed())
    for repo in repos:
        queues.enqueue_push(repo)
    return len(repos)
