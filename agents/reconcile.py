"""Repair what crashed processes and a lost Redis leave behind.

RQ jobs are transport, not state: a job can vanish (Redis restarted, a worker
killed), so this looks at the rows and enqueues again whatever should be
moving and is not. It runs on the ticker (`manage.py tick`) and is safe to run
as often and in as many places as anyone likes.
"""

import os
import signal
import socket

from django.db.models import QuerySet
from django.utils import timezone

from agents import changesets, flow, problems, queues, webhooks
from agents.models import Session, Submission
from workspace.models import Repository
from workspace.processes import signal_group


def reconcile() -> dict[str, int]:
    """Sessions whose lease expired are lost: their agent's process group is
    killed if it runs on this machine, their bead goes back to the hook.
    Queued sessions, waiting submissions and change sets in flight (gating,
    landing, reverting) whose job vanished are queued again."""
    expired = Session.objects.filter(status__in=Session.LIVE, lease_expires_at__lt=timezone.now())
    lost = [s for s in expired.select_related("bead", "agent") if flow.lose(s)]
    for session in lost:
        kill_local_agent(session)
    queued = Session.objects.filter(status=Session.Status.QUEUED).select_related(
        "agent", "bead__repository"
    )
    requeued = [s for s in queued if queues.job_missing(f"session-{s.pk}")]
    for session in requeued:
        queues.enqueue_session(session.pk, flow.session_job_timeout(session))
    waiting = Submission.objects.filter(status__in=Submission.FOR_LEAD).select_related("repository")
    undrained = [s for s in waiting if not queues.drain_pending(s.repository)]
    for repo in {s.repository for s in undrained}:
        queues.enqueue_drain(repo)
    stalled = [c for c, job in changesets.in_flight() if queues.job_missing(job)]
    for changeset in stalled:
        changesets.enqueue_again(changeset)
    return {
        "lost": len(lost),
        "sessions": len(requeued),
        "submissions": len(undrained),
        "changesets": len(stalled),
        "stuck": tell_stuck(),
        "webhooks": webhooks.send_due(),
    }


def tell_stuck() -> int:
    """Webhooks hear of each stuck repository once per submission it is stuck on."""
    told = 0
    for repo in problems.stuck():
        head = repo.submissions.filter(status__in=Submission.FOR_LEAD).order_by("queued_at").first()
        told += webhooks.emit(
            webhooks.REPOSITORY_STUCK,
            {
                "repository": repo.slug,
                "waiting": repo.waiting,
                "text": f"{repo.name}'s lead queue has not moved since {repo.moved:%H:%M} UTC.",
            },
            key=f"stuck:{repo.slug}:{head.pk if head else ''}",
        )
    return told


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
    """Repositories with commits a failed push left behind."""
    behind = Submission.objects.filter(status=Submission.Status.COMMITTED, pushed_at=None).exclude(
        push_error=""
    )
    return Repository.objects.filter(push=True, active=True, submissions__in=behind).distinct()


def retry_pushes() -> int:
    """Enqueue a push for every repository a failed push left behind."""
    repos = list(unpushed())
    for repo in repos:
        queues.enqueue_push(repo)
    return len(repos)
