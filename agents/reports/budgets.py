"""What is left of each token budget: per bead, repository and agent, for the
pages, dispatch and the runner. A day is a UTC day; cache reads do not count.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from django.db.models import QuerySet, Sum
from django.utils import timezone

from agents.models import Agent, TokenUsage
from agents.models.budgets import COUNTED, Budget
from workspace.models import Repository


def start_of_today() -> datetime:
    return datetime.combine(timezone.now().date(), time.min, tzinfo=UTC)


def counted(rows: QuerySet[Any]) -> int:
    return rows.aggregate(n=Sum(COUNTED))["n"] or 0


def usage_rows() -> QuerySet[TokenUsage]:
    return TokenUsage.objects.all()


def used_by_bead(bead_id: str) -> int:
    return counted(usage_rows().filter(session__bead_id=bead_id))


def used_today(**session: Any) -> int:
    """Tokens of today's sessions, e.g. used_today(bead__repository_id=1)."""
    filters = {f"session__{k}": v for k, v in session.items()}
    return counted(usage_rows().filter(session__created_at__gte=start_of_today(), **filters))


@dataclass
class Left:
    """A budget and what is left of it."""

    budget: int
    used: int

    @property
    def left(self) -> int:
        return max(0, self.budget - self.used)

    @property
    def spent(self) -> bool:
        return self.used >= self.budget


def for_bead(bead_id: str) -> Left | None:
    budget = Budget.objects.filter(bead_id=bead_id).values_list("tokens", flat=True).first()
    return None if budget is None else Left(budget, used_by_bead(bead_id))


def for_repository(repository_id: int) -> Left | None:
    budget = (
        Budget.objects.filter(repository_id=repository_id).values_list("tokens", flat=True).first()
    )
    if budget is None:
        return None
    return Left(budget, used_today(bead__repository_id=repository_id))


def for_agent(agent_id: int) -> Left | None:
    budget = Budget.objects.filter(agent_id=agent_id).values_list("tokens", flat=True).first()
    return None if budget is None else Left(budget, used_today(agent_id=agent_id))


def left_per_repository(repository_ids: list[int]) -> dict[int, Left]:
    """What is left today of each of these repositories' budgets, in two queries."""
    limits = dict(
        Budget.objects.filter(repository_id__in=repository_ids).values_list(
            "repository_id", "tokens"
        )
    )
    if not limits:
        return {}
    used = dict(
        usage_rows()
        .filter(
            session__created_at__gte=start_of_today(), session__bead__repository_id__in=list(limits)
        )
        .values("session__bead__repository_id")
        .annotate(n=Sum(COUNTED))
        .values_list("session__bead__repository_id", "n")
        .order_by()
    )
    return {pk: Left(tokens, used.get(pk) or 0) for pk, tokens in limits.items()}


def left_per_bead(bead_ids: list[str]) -> dict[str, Left]:
    """What is left of each of these beads' budgets, in two queries."""
    limits = dict(Budget.objects.filter(bead_id__in=bead_ids).values_list("bead_id", "tokens"))
    if not limits:
        return {}
    used = dict(
        usage_rows()
        .filter(session__bead_id__in=list(limits))
        .values("session__bead_id")
        .annotate(n=Sum(COUNTED))
        .values_list("session__bead_id", "n")
        .order_by()
    )
    return {pk: Left(tokens, used.get(pk) or 0) for pk, tokens in limits.items()}


def left_per_agent() -> list[tuple[str, Left]]:
    """What is left of each agent's budget for today (the agents with one), by name."""
    with_budget = Budget.objects.filter(agent__isnull=False).select_related("agent")
    return [
        (b.agent.name, Left(b.tokens, used_today(agent_id=b.agent_id)))
        for b in with_budget.order_by("agent__name")
        if b.agent is not None
    ]


def spent_for(bead_id: str, repository_id: int, agent_id: int) -> tuple[str, bool] | None:
    """Why a session on this bead, repository and agent must stop (and whether it
    is the bead's own budget), or None while every budget has tokens left."""
    checks = [
        (for_bead(bead_id), f"its bead's budget ({bead_id})", True),
        (for_repository(repository_id), "its repository's budget for today", False),
        (for_agent(agent_id), "its agent's budget for today", False),
    ]
    for left, what, of_bead in checks:
        if left is not None and left.spent:
            return f"Stopped at {what}: {left.used:,} of {left.budget:,} tokens used.", of_bead
    return None


def spent_repositories() -> set[int]:
    """Repositories whose budget for today is spent."""
    return {
        b.repository_id
        for b in Budget.objects.filter(repository__isnull=False)
        if b.repository_id is not None
        and used_today(bead__repository_id=b.repository_id) >= b.tokens
    }


def spent_agents() -> set[int]:
    """Agents whose budget for today is spent."""
    return {
        b.agent_id
        for b in Budget.objects.filter(agent__isnull=False)
        if b.agent_id is not None and used_today(agent_id=b.agent_id) >= b.tokens
    }


def any_set() -> bool:
    """Whether any budget is set: most workspaces have none, and a claim then
    asks nothing more of them."""
    return Budget.objects.exists()


def claim_refusal(agent: Agent, repository: Repository | None = None) -> str:
    """Why this agent may not claim (in this repository) today, or "": as
    dispatch starts nothing for them, a claim through the API takes nothing
    for an agent, or in a repository, whose day is spent."""
    checks = [(for_agent(agent.pk), f"The agent {agent.name}'s budget for today")]
    if repository is not None:
        checks.append((for_repository(repository.pk), f"{repository.name}'s budget for today"))
    for left, what in checks:
        if left is not None and left.spent:
            return f"{what} is spent: {left.used:,} of {left.budget:,} tokens used."
    return ""
