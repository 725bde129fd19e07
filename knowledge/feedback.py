"""What happened after a learning was used flows back into it.

A session's outcome reaches every learning injected into it, once (each
Injection's outcome is set by a conditional UPDATE, then the learning's
counters by F() expressions, so two sessions ending at once both count):
a landing confirms it (utility toward 1, freshness renewed, helpful + 1),
a refusal or rejection pulls its utility toward 0.

Marks: an agent marks a learning it was given (helpful or harmful), once per
learning however many sessions it went into: a second mark is refused
(MarkedAlready), so one agent cannot retire what it was given by marking it
in session after session. A person marks any learning. A learning whose
harmful marks outnumber its helpful ones, and come from RETIRE_AFTER_AGENTS
different agents or from a person, is retired with the reason recorded.
"""

from collections.abc import Sequence
from typing import Any

from django.db import IntegrityError, transaction

from knowledge.models import Injection, Learning, Mark
from knowledge.seams import AgentLike, SessionLike


class NotGiven(Exception):
    """The agent marks a learning none of its sessions was given."""


class MarkedAlready(Exception):
    """The agent has marked this learning already: one mark per agent per learning."""


def settle(session: SessionLike, landed: bool) -> int:
    """The session's outcome reaches the learnings it was given; how many it counted for."""
    return settle_all([session], landed)


def settle_all(sessions: Sequence[SessionLike], landed: bool) -> int:
    """settle() for sessions of one outcome (a lead's train) with one query to
    find what they were given; how many learnings it counted for."""
    counted = 0
    pending = Injection.objects.filter(session__in=sessions, outcome=Injection.Outcome.PENDING)
    for injection in pending.select_related("learning"):
        if not injection.move("land" if landed else "refuse"):
            continue  # the same outcome, reported twice
        if landed:
            injection.learning.confirm()
        else:
            injection.learning.record_outcome(0.0)
        counted += 1
    return counted


def mark(learning: Learning, helpful: bool, why: str, person: Any = None) -> bool:
    """A person's mark; True if it retired the learning."""
    return counted(learning, helpful, why, person=person)


def counted(learning: Learning, helpful: bool, why: str, **who: Any) -> bool:
    """Keep the mark (who made it: an agent and its session, or a person) and
    count it, in one transaction; True if it retired the learning. The mark is
    kept first: an agent's second one breaks the constraint and counts nothing."""
    with transaction.atomic():
        Mark.objects.create(learning=learning, helpful=helpful, reason=why, **who)
        if helpful:
            learning.confirm()
        else:
            learning.count_harm()
    # Asked once committed, so of two marks at once the later sees both.
    return not helpful and learning.retire_if_hurting(why)


def mark_by_agent(
    learning: Learning,
    agent: AgentLike,
    helpful: bool,
    why: str,
    session: SessionLike | None = None,
) -> bool:
    """An agent's mark on a learning it was given (in `session`, or in any of its
    sessions); raises NotGiven if it was not, MarkedAlready if the agent marked
    it before. True if it retired the learning."""
    given = Injection.objects.filter(learning=learning, session__agent_id=agent.pk)
    if session is not None:
        given = given.filter(session_id=session.pk)
    injection = given.order_by("-pk").first()
    if injection is None:
        raise NotGiven(
            f"Learning {learning.pk} was not injected into "
            + ("this session" if session is not None else "any session of yours")
            + ": an agent marks only what it was given."
        )
    why = why or f"marked by the agent {agent}"
    try:
        retired = counted(
            learning, helpful, why, agent_id=agent.pk, session_id=injection.session_id
        )
    except IntegrityError:
        raise MarkedAlready(
            f"You marked it already: one mark per agent per learning (#{learning.pk}), "
            "however many sessions it went into."
        ) from None
    verdict = Injection.Verdict.HELPFUL if helpful else Injection.Verdict.HARMFUL
    Injection.objects.filter(pk=injection.pk, verdict=Injection.Verdict.NONE).update(
        verdict=verdict
    )
    return retired
