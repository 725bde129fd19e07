"""Dispatch: fill free session slots from the hook with Corral's own agents.

Never beyond a repository's max_agents (the hook sees to that) nor the
number of session workers listening (or CORRAL_SESSION_SLOTS). Runs when a session ends, a commit
lands or a bead is added, and on the ticker's timer.
"""

from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Count, Q
from rq import Worker

from agents import queues
from agents.models import Agent, Session
from agents.moves import lifecycle
from agents.reports import budgets
from beads import hook
from workspace import sandbox
from workspace.models import Repository

BUSY = [Session.Status.QUEUED, Session.Status.RUNNING]


def free_slots() -> int:
    """Room for more sessions: CORRAL_SESSION_SLOTS where workers are started for
    the queue (KEDA reads its length), else the session workers listening."""
    slots = settings.SESSION_SLOTS or len(Worker.all(queue=queues.queue(queues.SESSIONS)))
    busy = Session.objects.filter(status__in=BUSY, agent__internal=True).count()
    return slots - busy


def dispatch() -> int:
    """Claim ready beads for internal agents and queue their sessions; returns how many."""
    close_old_connections()  # a long-lived worker runs this: drop a connection gone bad
    if sandbox_refuses():
        return 0
    with queues.connection().lock("corral:dispatch", timeout=120, blocking_timeout=60):
        repositories = list(
            Repository.objects.filter(active=True, dispatch_paused=False)
            .exclude(pk__in=budgets.spent_repositories())
            .values_list("pk", flat=True)
        )
        started = 0
        for _ in range(max(0, free_slots())):
            agent = least_busy_agent()
            if agent is None:
                break
            try:
                session = lifecycle.claim(agent, repositories=repositories)
            except hook.NothingReady:
                break
            lifecycle.queue_session(session)
            started += 1
        return started


def sandbox_refuses() -> bool:
    """Whether sessions would be refused for want of a sandbox: each would fail
    and spend its bead's attempts, so dispatch waits instead (every dashboard
    page's banner says why)."""
    return not settings.UNSANDBOXED and not sandbox.available()


def least_busy_agent() -> Agent | None:
    """The active internal agent with the fewest live sessions (then by name),
    not paused by a rate limit (once its reset passes, it takes work again)."""
    live = Count("sessions", filter=Q(sessions__status__in=Session.LIVE))
    return (
        Agent.objects.taking_work()
        .filter(active=True, internal=True)
        .exclude(pk__in=budgets.spent_agents())  # today's budget is spent
        .annotate(live=live)
        .order_by("live", "name")
        .first()
    )


def bead_added(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """A new bead may be ready: ask for a dispatch once it is committed."""
    if created:
        queues.enqueue_dispatch()
