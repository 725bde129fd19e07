"""Filing a bead: a person's from the dashboard or the API, an agent's from the
bead it works on. Who may file what is decided here, in one transaction with
the bead and its discovered-from dependency.
"""

from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from agents.models import Agent, Session
from beads import moves, plans, scopes
from beads.models import Bead, Dependency, Plan
from workspace import audit, roles
from workspace.models import Repository


class FilingRefused(Exception):
    """The caller may not file this bead (403); the message says why."""


def file_bead(
    bead: Bead,
    discovered_from: Bead | None,
    agent: Agent | None = None,
    person: Any = None,
    via: str = "the API",
) -> Bead:
    """File a new bead (not yet saved) and its discovered-from dependency, together.

    A person's bead is open at once, if their role lets them file here
    (person_may_file). An agent's comes from a bead it works on: it names
    that bead as discovered_from and must hold a live session on it (a
    session token: that very session); the new bead goes to the same
    repository, its scope must lie within that bead's (beads.scopes.beyond),
    and it is proposed, for a person to accept, unless the repository lets
    agents file ready work (agents_file_ready). Internal agents then never
    run what an agent wrote until a person has looked at it.

    A person's bead is audited as filed through `via`.
    Raises FilingRefused (403) or ValidationError (422, naming the field).
    """
    with transaction.atomic():
        if agent is not None:
            admit_agents_bead(bead, discovered_from, agent)
        else:
            admit_persons_bead(bead, person)
        bead.save()
        if discovered_from is not None:
            Dependency.objects.create(
                issue=bead, depends_on=discovered_from, type=Dependency.Type.DISCOVERED_FROM
            )
        if agent is None:
            audit.record(
                audit.Action.BEAD_EDIT,
                bead,
                repository=bead.repository,
                detail=f"filed through {via}",
                actor=person,
            )
    return bead


def person_may_file(person: Any, repository: Repository) -> bool:
    """Whether a person may file beads in `repository`: their role's permission
    (operators and admins). Per-repository rules would go here."""
    return bool(getattr(person, "is_authenticated", False) and person.has_perm(roles.FILE_BEADS))


def admit_persons_bead(bead: Bead, person: Any) -> None:
    if not person_may_file(person, bead.repository):
        raise FilingRefused(roles.refusal(roles.FILE_BEADS))
    bead.filed_by = person
    bead.status = Bead.Status.OPEN


def admit_agents_bead(bead: Bead, parent: Bead | None, agent: Agent) -> None:
    if parent is None:
        raise ValidationError(
            {"discovered_from": "An agent files a bead from the bead it works on: name it."}
        )
    if not holds_live_session(agent, parent):
        raise FilingRefused(
            f"You hold no live session on {parent.pk}: an agent files beads only from "
            "the bead it is working on."
        )
    if bead.repository_id != parent.repository_id:
        raise FilingRefused(
            f"An agent files beads only in the repository it works in "
            f"({parent.repository.slug}), not in {bead.repository.slug}."
        )
    beyond = scopes.beyond(bead.scope, parent.scope, parent.repository.allow_unscoped)
    if beyond:
        raise ValidationError(
            {
                "scope": f"{', '.join(beyond)} may reach beyond the scope of {parent.pk} "
                f"({', '.join(parent.scope) or 'none'}). Give patterns under it; a person "
                "can widen the scope once the bead is filed."
            }
        )
    bead.filed_by_agent = agent.name
    ready = bead.repository.agents_file_ready
    bead.status = Bead.Status.OPEN if ready else Bead.Status.PROPOSED


def holds_live_session(agent: Agent, bead: Bead) -> bool:
    """Whether the agent works on the bead now (a session token: in its own session)."""
    sessions = Session.objects.filter(agent=agent, bead=bead, status__in=Session.LIVE)
    only = getattr(agent, "only_session", None)
    if only is not None:
        sessions = sessions.filter(pk=only)
    return sessions.exists()


def file_persons_bead(
    bead: Bead, person: Any, waits_for: Sequence[Bead] = (), parent: Bead | None = None
) -> Bead:
    """A person files a bead from the dashboard with its blockers and parent, together."""
    with transaction.atomic():
        file_bead(bead, None, person=person, via="the dashboard")
        moves.set_links(bead, waits_for, parent)
    return bead


def file_first_for(
    plan: Plan, path: str, sharing: Sequence[Bead], person: Any, version: int
) -> Bead:
    """The planner's second fix for a file beads share: a bead that changes
    `path` first, in a new first wave of the plan; the beads that share it
    wait for it. Raises plans.PlanChanged when the plan is no longer at
    `version`, FilingRefused or ValidationError as file_bead does."""
    title = f"Change {path} first, for {', '.join(b.id for b in sharing)}"
    with transaction.atomic():
        first = Bead(repository=sharing[0].repository, title=title[:500], scope=[path])
        first.priority = min(b.priority for b in sharing)
        file_bead(first, None, person=person, via="the plan page")
        for bead in sharing:
            Dependency.objects.create(issue=bead, depends_on=first)
        plans.save_waves(plan, [[first.id], *plans.waves_of(plan)], version)
    return first
