"""Usage as the pages show it: per session, repository, agent and day; cost
per landed bead; how many beads land on their first try.

A session's tokens count on the day it was opened (a row keeps a session's
running total, so its tokens are not spread over the hours it ran).
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from agents.models import Session
from agents.usage import KINDS, PriceTable, TokenUsage
from beads.models import Bead
from workspace.models import Repository

TOTAL = sum((F(kind) for kind in KINDS[1:]), F(KINDS[0]))


@dataclass
class Summary:
    by_model: dict[str, dict[str, int]]
    cost: Decimal | None  # None: a model has tokens and no price

    @property
    def total(self) -> int:
        return sum(sum(kinds.values()) for kinds in self.by_model.values())

    def kind(self, name: str) -> int:
        return sum(kinds.get(name, 0) for kinds in self.by_model.values())

    @property
    def input(self) -> int:
        return self.kind("input")

    @property
    def output(self) -> int:
        return self.kind("output")

    @property
    def cache_read(self) -> int:
        return self.kind("cache_read")

    @property
    def cache_write(self) -> int:
        return self.kind("cache_write")


def summary(rows: QuerySet[TokenUsage], prices: PriceTable | None = None) -> Summary:
    by_model = TokenUsage.totals_by_model(rows)
    return Summary(by_model, (prices or PriceTable()).cost(by_model))


def for_session(session: Session) -> Summary:
    return summary(session.usage.all())


def for_bead(bead_id: str) -> Summary:
    """Every session of the bead together."""
    return summary(TokenUsage.objects.filter(session__bead_id=bead_id))


def for_agent(agent_id: int) -> Summary:
    return summary(TokenUsage.objects.filter(session__agent_id=agent_id))


def for_repository(repo: Repository, days: int | None = None) -> Summary:
    rows = TokenUsage.objects.filter(session__bead__repository=repo)
    if days is not None:
        rows = rows.filter(session__created_at__gte=timezone.now() - timedelta(days=days))
    return summary(rows)


def last_days(days: int) -> list[date]:
    today = timezone.now().date()
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


def per_day(days: int, by: str) -> dict[str, dict[date, int]]:
    """{series: {day: tokens}} over the last `days` days; `by` is "repository" or "agent"."""
    field = {"repository": "session__bead__repository__name", "agent": "session__agent__name"}[by]
    since = datetime.combine(last_days(days)[0], time.min, tzinfo=UTC)
    rows = (
        TokenUsage.objects.filter(session__created_at__gte=since)
        .annotate(day=TruncDate("session__created_at"))
        .values(field, "day")
        .annotate(tokens=Sum(TOTAL))
        .order_by(field, "day")
    )
    series: dict[str, dict[date, int]] = {}
    for row in rows:
        series.setdefault(row[field], {})[row["day"]] = row["tokens"] or 0
    return series


def grouped(rows: QuerySet[TokenUsage], by: str) -> dict[Any, dict[str, dict[str, int]]]:
    """{value of `by`: {model: {kind: tokens}}} in one query."""
    summed = rows.values(by, "model").annotate(**{k: Sum(k) for k in KINDS}).order_by()
    found: dict[Any, dict[str, dict[str, int]]] = {}
    for row in summed:
        found.setdefault(row[by], {})[row["model"]] = {k: row[k] or 0 for k in KINDS}
    return found


def per_agent() -> list[dict[str, Any]]:
    """Each agent's tokens and cost, most tokens first."""
    prices = PriceTable()
    by_agent = grouped(TokenUsage.objects.all(), "session__agent__name")
    rows = [
        {"agent": name, "summary": Summary(by_model, prices.cost(by_model))}
        for name, by_model in by_agent.items()
    ]
    return sorted(rows, key=lambda r: (-r["summary"].total, r["agent"]))


def landed_beads(limit: int = 20) -> dict[str, Any]:
    """The latest landed beads with what all their sessions cost, and the mean."""
    prices = PriceTable()
    landed = Bead.objects.filter(status=Bead.Status.CLOSED).exclude(commit_sha="")
    beads = list(landed.select_related("repository").order_by("-closed_at", "pk")[:limit])
    by_bead = grouped(TokenUsage.objects.filter(session__bead__in=beads), "session__bead_id")
    summaries = [Summary(by_bead.get(b.pk, {}), prices.cost(by_bead.get(b.pk, {}))) for b in beads]
    costs = [s.cost for s in summaries if s.total]
    priced = [c for c in costs if c is not None]
    mean = sum(priced, Decimal(0)) / len(priced) if costs and len(priced) == len(costs) else None
    rows = [{"bead": b, "summary": s} for b, s in zip(beads, summaries, strict=True)]
    return {"rows": rows, "mean_cost": mean, "priced": mean is not None}


def first_try() -> dict[str, Any]:
    """Landed beads, and how many of them landed without a failed attempt before."""
    counts = (
        Bead.objects.filter(status=Bead.Status.CLOSED)
        .exclude(commit_sha="")
        .aggregate(landed=Count("pk"), first=Count("pk", filter=Q(attempts=0)))
    )
    landed, first = counts["landed"], counts["first"]
    return {"landed": landed, "first": first, "rate": first / landed if landed else None}
