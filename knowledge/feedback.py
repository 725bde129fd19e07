"""What happened after a learning was used flows back into it.

A session's outcome reaches every learning injected into it, once (each
Injection's outcome is set by a conditional UPDATE, then the learning's
counters by F() expressions, so two sessions ending at once both count):
a landing confirms it (utility toward 1, freshness renewed, helpful + 1),
a refusal or rejection pulls its utility toward 0.

Marks: an agent marks a learning it was given (helpful or harmful, once per
session it went into); a person marks any learning. A learning marked
harmful RETIRE_AFTER_HARMFUL times, more often than helpful, is retired
with the reason recorded.
"""

from collections.abc import Sequence
from typing import Any

from knowledge.models import Injection, Learning

# agents.models.Session and Agent: agents sits above knowledge.
AgentSession = Any
AgentRow = Any


class NotGiven(Exception):
    """The agent marks a learning none of its sessions was given (or marked it already)."""


def settle(session: AgentSession, landed: bool) -> int:
    """The session's outcome reaches the learnings it was given; how many it counted for."""
    return settle_all([session], landed)


def settle_all(sessions: Sequence[AgentSession], landed: bool) -> int:
    """settle() for sessions of one outcome (a lead's train) with one query to
    find what they were given; how many learnings it counted for."""
    outcome = Injection.Outcome.LANDED if landed else Injection.Outcome.REFUSED
    counted = 0
    pending = Injection.objects.filter(session__in=sessions, outcome=Injection.Outcome.PENDING)
    for injection in pending.select_related("learning"):
        won = Injection.objects.filter(pk=injection.pk, outcome=Injection.Outcome.PENDING).update(
            outcome=outcome
        )
        if not won:
            continue  # the same outcome, reported twice
        if landed:
            injection.learning.confirm()
        else:
            injection.learning.record_outcome(0.0)
        counted += 1
    return counted


def mark(learning: Learning, helpful: bool, why: str) -> bool:
    """A person's mark; True if it retired the learning."""
    if helpful:
        learning.confirm()
        return False
    return learning.hurt(why)


def mark_by_agent(
    learning: Learning, agent: AgentRow, helpful: bool, why: str, session: AgentSession = None
) -> bool:
    """An agent's mark on a learning it was given (in `session`, or in any of its
    sessions); raises NotGiven otherwise. True if it retired the learning."""
    given = Injection.objects.filter(
        learning=learning, session__agent=agent, verdict=Injection.Verdict.NONE
    )
    if session is not None:
        given = given.filter(session=session)
    verdict = Injection.Verdict.HELPFUL if helpful else Injection.Verdict.HARMFUL
    for pk in given.order_by("-pk").values_list("pk", flat=True):
        if Injection.objects.filter(pk=pk, verdict=Injection.Verdict.NONE).update(verdict=verdict):
            return mark(learning, helpful, why or f"marked by the agent {agent}")
    raise NotGiven(
        f"Learning {learning.pk} was not injected into "
        + ("this session" if session is not None else "any session of yours")
        + " (or you marked it already): an agent marks only what it was given."
    )
