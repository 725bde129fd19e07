"""Asking for work to start or go on: dispatch paused or resumed in a
repository, an agent paused by a rate limit resumed, a dispatch asked for now,
a lead asked to take up its queue again.

Pages call these rather than the queues: a page changes state only through a move.
"""

from django.db import transaction

from agents import queues
from agents.models import Agent
from workspace.models import Repository


def set_paused(repo: Repository, paused: bool) -> bool:
    """Pause or resume Corral's dispatch in `repo`; False if it already was.
    Resumed, its ready beads are offered to the agents at once."""
    with transaction.atomic():
        changed = repo.set_dispatch_paused(paused)
        if changed and not paused:
            queues.enqueue_dispatch()
    return changed


def resume_agent(agent: Agent) -> bool:
    """A person lets an agent paused by a rate limit take work again now;
    False if it was not paused. Its share of the ready beads is offered at once."""
    with transaction.atomic():
        resumed = agent.resume()
        if resumed:
            queues.enqueue_dispatch()
    return resumed


def ask_dispatch() -> None:
    """Fill every free slot now rather than at the next tick."""
    queues.enqueue_dispatch()


def retry_lead(repo: Repository) -> None:
    """The repository's lead takes up its queue again (a drain job left behind
    by a dead worker is replaced)."""
    queues.enqueue_drain(repo)
