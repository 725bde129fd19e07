"""Usage as the pages show it: per session, repository, agent and day; cost
per landed bead; how many beads land on their first try.

A session's tokens count on the day it was opened (a row keeps a session's
running total, so its tokens are not spread over the hours it ran).
"""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

from agents.models import Agent, Session
from agents.models.usage import KINDS, PriceTable, TokenUsage, UsageDay
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
    return summary(TokenUsage.objects.filter(agent_id=agent_id))


def for_repository(repo: Repository, days: int | None = None) -> Summary:
    rows = TokenUsage.objects.filter(repository=repo)
    if days is not None:
        rows = rows.filter(session__created_at__gte=timezone.now() - timedelta(days=days))
    return summary(rows)


def last_days(days: int) -> list[date]:
    today = timezone.now().date()
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


@dataclass
class Overview:
    """What the usage page charts and lists: {series: {day: tokens}} per
    repository and per agent over the last days, and each agent's tokens and
    cost, most tokens first."""

    by_repository: dict[str, dict[date, int]]
    by_agent: dict[str, dict[date, int]]
    agents: list[dict[str, Any]]


class SessionDay(TruncDate):
    """TruncDate, read off the text on SQLite when the day is UTC's: SQLite keeps
    a UTC datetime as 'YYYY-MM-DD HH:MM:SS[.ffffff]', so its first ten characters
    are the date, where TruncDate runs a Python function per row."""

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, Any]:
        if self.get_tzname() not in (None, "UTC"):
            return super().as_sql(compiler, connection, **extra)
        sql, params = compiler.compile(self.lhs)
        return f"substr({sql}, 1, 10)", params


def overview(days: int, prices: PriceTable | None = None) -> Overview:
    """The usage page's figures from the days' rollup (UsageDay, kept by every
    usage write), never the usage rows: the last days' tokens per repository
    and day and per agent and day, and each agent's tokens per model. Grouped
    by ids; the few names are read apart."""
    agent, repository = "agent_id", "repository_id"
    recent = UsageDay.objects.filter(day__gte=last_days(days)[0])
    per_repository = daily(recent, repository)
    per_agent = daily(recent, agent)
    totals = grouped(UsageDay.objects.all(), agent)
    agent_ids = {pk for pk, _ in per_agent} | set(totals)
    agent_names = dict(Agent.objects.filter(pk__in=agent_ids).values_list("pk", "name"))
    repo_ids = {pk for pk, _ in per_repository}
    repo_names = dict(Repository.objects.filter(pk__in=repo_ids).values_list("pk", "name"))
    by_repository = named_series(per_repository, repo_names)
    by_agent = named_series(per_agent, agent_names)
    prices = prices or PriceTable()
    summaries = {agent_names[pk]: Summary(m, prices.cost(m)) for pk, m in totals.items()}
    ranked = sorted(summaries, key=lambda name: (-summaries[name].total, name))
    agents = [{"agent": name, "summary": summaries[name]} for name in ranked]
    return Overview(sorted_series(by_repository), sorted_series(by_agent), agents)


def daily(days: QuerySet[UsageDay], by: str) -> dict[tuple[Any, date], int]:
    """{(value of `by`, day): tokens}, summed in the database."""
    rows = days.values_list(by, "day").annotate(tokens=Sum(TOTAL)).order_by()
    return {(pk, day): tokens or 0 for pk, day, tokens in rows}


def named_series(
    summed: dict[tuple[Any, date], int], names: dict[Any, str]
) -> dict[str, dict[date, int]]:
    """{name: {day: tokens}}; two ids of one name (two repositories called alike) add up."""
    series: dict[str, dict[date, int]] = {}
    for (pk, day), tokens in summed.items():
        one = series.setdefault(names[pk], {})
        one[day] = one.get(day, 0) + tokens
    return series


def sorted_series(series: dict[str, dict[date, int]]) -> dict[str, dict[date, int]]:
    """By name, each by day: the order the charts break ties in."""
    return {name: dict(sorted(series[name].items())) for name in sorted(series)}


def grouped(rows: QuerySet[Any], by: str) -> dict[Any, dict[str, dict[str, int]]]:
    """{value of `by`: {model: {kind: tokens}}} in one query (usage rows or days)."""
    summed = rows.values(by, "model").annotate(**{k: Sum(k) for k in KINDS}).order_by()
    found: dict[Any, dict[str, dict[str, int]]] = {}
    for row in summed:
        found.setdefault(row[by], {})[row["model"]] = {k: row[k] or 0 for k in KINDS}
    return found


def landed_beads(limit: int = 20, prices: PriceTable | None = None) -> dict[str, Any]:
    """The latest landed beads with what all their sessions cost, and the mean."""
    prices = prices or PriceTable()
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
        # COUNT(attempts), never null: counted off the landed beads' index alone.
        .aggregate(landed=Count("attempts"), first=Count("attempts", filter=Q(attempts=0)))
    )
    landed, first = counts["landed"], counts["first"]
    return {"landed": landed, "first": first, "rate": first / landed if landed else None}
