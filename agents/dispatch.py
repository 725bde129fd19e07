"""Dispatch: fill free session slots from the hook with Corral's own agents.

Never beyond a repository's max_agents (the hook sees to that) nor the
number of session workers listening. Runs when a session ends, a commit
lands or a bead is added, and on the ticker's timer.
"""

from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Count, Q
from rq import Worker

from agents import budgets, flow, queues
from agents.models import Agent, Session
from beads import hook
from workspace import sandbox
from workspace.models import Repository

BUSY = [Session.Status.QUEUED, Session.Status.RUNNING]


def free_slots() -> int:
    workers = Worker.all(queue=queues.queue(queues.SESSIONS))
    busy = Session.objects.filter(status__in=BUSY, agent__internal=True).count()
    return len(workers) - busy


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
                session = flow.claim(agent, repositories=repositories)
            except hook.NothingReady:
                break
            flow.queue_session(session)
            started += 1
        return started


def sandbox_refuses() -> bool:
    """Whether sessions would be refused for want of a sandbox: each would fail
    and spend its bead's attempts, so dispatch waits instead (every dashboard
    page's banner says why)."""
    return not settings.UNSANDBOXED and not sandbox.available()


def least_busy_agent() -> Agent | None:
    """The active internal agent with the fewest live sessions (then by name)."""
    live = Count("sessions", filter=Q(sessions__status__in=Session.LIVE))
    return (
        Agent.objects.filter(active=True, internal=True)
        .exclude(pk__in=budgets.spent_agents())  # today's budget is spent
        .annotate(live=live)
        .order_by("live", "name")
        .first()
    )


def bead_added(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """A new bead may be ready: ask for a dispatch once it is committed."""
    if created:
        queues.enqueue_dispatch()
