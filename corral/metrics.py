"""Metrics for Prometheus at /metrics.

Sessions run in session workers and submissions land in lead workers: other
processes, each of which would hold its own in-process counters. So what the
database knows is read from it at scrape time (DatabaseCollector): every
process, and a restart, tells the same truth. Only HTTP latency is counted
in-process, by the web process that served the request (with several web
processes, scrape each, or read it from the proxy in front).
"""

import hmac
import ipaddress
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import (
    BigIntegerField,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Func,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.sql.compiler import SQLCompiler
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from agents.models import GateResult, Session, Submission
from agents.usage import TokenUsage
from workspace.audit import client_ip

# Seconds: a session runs minutes to hours; a landing and a dispatch take seconds.
SESSION_BUCKETS = (30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def histogram(
    name: str, doc: str, rows: QuerySet[Any], start: str, end: str, buckets: tuple[float, ...]
) -> HistogramMetricFamily:
    """A histogram of `end - start` over `rows`, counted in one query."""
    rows = rows.filter(**{f"{start}__isnull": False, f"{end}__isnull": False}).order_by()
    if connections[rows.db].vendor == "sqlite":
        n, total, counts = counted_in_sqlite(rows, start, end, buckets)
    else:
        n, total, counts = counted_in_sql(rows, start, end, buckets)
    series = [(str(float(b)), c) for b, c in zip(buckets, counts, strict=True)]
    return HistogramMetricFamily(name, doc, buckets=[*series, ("+Inf", n)], sum_value=total)


def counted_in_sql(
    rows: QuerySet[Any], start: str, end: str, buckets: tuple[float, ...]
) -> tuple[int, float, list[int]]:
    """(rows, seconds in all, cumulative count per bucket) in one query."""
    took = ExpressionWrapper(F(end) - F(start), output_field=DurationField())
    rows = rows.annotate(took=took)
    per_bucket = {
        f"le_{i}": Count("pk", filter=Q(took__lte=timedelta(seconds=b)))
        for i, b in enumerate(buckets)
    }
    found = rows.aggregate(n=Count("pk"), total=Sum("took"), **per_bucket)
    total = found["total"] or timedelta(0)
    return found["n"], total.total_seconds(), [found[f"le_{i}"] for i in range(len(buckets))]


class SqliteMicrosecondsBetween(Func):
    """end - start in whole microseconds, on SQLite. Django keeps a datetime there
    as text, 'YYYY-MM-DD HH:MM:SS' and '.ffffff' unless that is 0, and SQLite's
    date functions round to milliseconds (Django's own datetime difference is a
    Python function per row): so the whole seconds come from julianday() of the
    first 19 characters, the microseconds from the text after them (none: '',
    which casts to 0). Exact, as the difference Python would work out."""

    output_field = BigIntegerField()

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, list[Any]]:
        (end, end_params), (start, start_params) = (
            compiler.compile(e) for e in self.source_expressions
        )
        days = f"julianday(substr({end}, 1, 19)) - julianday(substr({start}, 1, 19))"
        fraction = (
            f"CAST(substr({end}, 21, 6) AS INTEGER) - CAST(substr({start}, 21, 6) AS INTEGER)"
        )
        sql = f"(CAST(round(({days}) * 86400) AS INTEGER) * 1000000 + {fraction})"
        return sql, [*end_params, *start_params] * 2


def counted_in_sqlite(
    rows: QuerySet[Any], start: str, end: str, buckets: tuple[float, ...]
) -> tuple[int, float, list[int]]:
    """The same on SQLite, in whole microseconds (see SqliteMicrosecondsBetween), each
    row's duration worked out once (a materialized CTE: SQLite would otherwise
    fold a subquery in and work it out again in each bucket's comparison)."""
    took = rows.annotate(took=SqliteMicrosecondsBetween(end, start))
    inner, params = took.values_list("took").query.sql_with_params()
    per_bucket = ", ".join(["COUNT(*) FILTER (WHERE took <= %s)"] * len(buckets))
    connection = connections[rows.db]
    hint = "MATERIALIZED " if sqlite3.sqlite_version_info >= (3, 35) else ""  # new in 3.35
    sql = f"WITH timed AS {hint}({inner}) SELECT COUNT(*), SUM(took), {per_bucket} FROM timed"
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *(round(b * 1_000_000) for b in buckets)])
        n, total_us, *counts = cursor.fetchone()
    total = timedelta(microseconds=total_us or 0)
    return n, total.total_seconds(), counts


class DatabaseCollector(Collector):
    """What the database says, read at every scrape."""

    def describe(self) -> list[Metric]:
        return []  # no query when the collector is registered

    def collect(self) -> Iterator[Metric]:
        claims = CounterMetricFamily(
            "corral_claims", "Beads claimed (a session opened)", labels=["repository"]
        )
        # Count("*"), not the primary key: SQLite then counts off the bead_id index
        # without reading each session's row (its text key is not in the index).
        by_repo = Session.objects.values("bead__repository__slug").annotate(n=Count("*"))
        for row in by_repo.order_by("bead__repository__slug"):
            claims.add_metric([row["bead__repository__slug"]], row["n"])
        yield claims

        ended = CounterMetricFamily(
            "corral_sessions_ended", "Sessions ended, by outcome", labels=["outcome"]
        )
        live = GaugeMetricFamily(
            "corral_sessions_in_flight",
            "Sessions not finished (live, or handed in and waiting for the lead), by status",
            labels=["status"],
        )
        counts = dict(Session.objects.values_list("status").annotate(n=Count("*")).order_by())
        for status in Session.Status.values:
            in_flight = status in Session.LIVE or status == Session.Status.SUBMITTED
            family = live if in_flight else ended
            family.add_metric([status], counts.get(status, 0))
        yield ended
        yield live

        yield histogram(
            "corral_session_duration_seconds",
            "Wall-clock time of ended sessions, from start to end",
            Session.objects.exclude(status__in=Session.LIVE),
            "started_at",
            "ended_at",
            SESSION_BUCKETS,
        )
        yield histogram(
            "corral_dispatch_latency_seconds",
            "From claim to a session worker starting the agent (Corral's own agents)",
            Session.objects.filter(agent__internal=True),
            "created_at",
            "started_at",
            LATENCY_BUCKETS,
        )
        yield histogram(
            "corral_submission_to_commit_seconds",
            "From hand-in to the lead's commit, for landed submissions",
            Submission.objects.filter(status=Submission.Status.COMMITTED),
            "queued_at",
            "finished_at",
            LATENCY_BUCKETS,
        )

        depth = GaugeMetricFamily(
            "corral_lead_queue_depth",
            "Submissions not finished, per repository and status",
            labels=["repository", "status"],
        )
        waiting = Submission.objects.filter(status__in=Submission.UNFINISHED)
        for row in (
            waiting.values("repository__slug", "status")
            .annotate(n=Count("*"))
            .order_by("repository__slug", "status")
        ):
            depth.add_metric([row["repository__slug"], row["status"]], row["n"])
        yield depth

        refusals = CounterMetricFamily(
            "corral_gate_refusals", "Gates that refused a submission", labels=["gate"]
        )
        failed = dict(
            GateResult.objects.filter(passed=False)
            .values_list("gate")
            .annotate(n=Count("*"))
            .order_by()
        )
        for gate in GateResult.Gate.values:
            refusals.add_metric([gate], failed.get(gate, 0))
        yield refusals

        tokens = CounterMetricFamily(
            "corral_tokens",
            "Tokens the agents reported, by kind and model",
            labels=["kind", "model"],
        )
        for model, kinds in TokenUsage.totals_by_model().items():
            for kind, n in kinds.items():
                tokens.add_metric([kind, model], n)
        yield tokens


REGISTRY = CollectorRegistry()
REGISTRY.register(DatabaseCollector())
HTTP_LATENCY = Histogram(
    "corral_http_request_duration_seconds",
    "Time to answer an HTTP request, in this web process",
    ["method", "view", "status"],
    buckets=HTTP_BUCKETS,
    registry=REGISTRY,
)


class HttpLatencyMiddleware:
    """Times every request, labelled by its URL pattern's name (never the raw path)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name if match else "") or "unmatched"
        HTTP_LATENCY.labels(request.method or "", view, f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started
        )
        return response


def allowed(request: HttpRequest) -> HttpResponse | None:
    """None when the scraper may read the metrics, else the answer that says why not."""
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOW
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return None
    ip = client_ip(request)
    if ip and networks:
        address = ipaddress.ip_address(ip)
        if any(address in ipaddress.ip_network(n) for n in networks):
            return None
    if token and not given:
        response = HttpResponse("Give the metrics token: Authorization: Bearer ...\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="corral-metrics"'
        return response
    if not token and not networks:
        why = "Metrics are off: set CORRAL_METRICS_TOKEN or CORRAL_METRICS_ALLOW.\n"
    else:
        why = "Not allowed: a wrong token, or an address outside CORRAL_METRICS_ALLOW.\n"
    return HttpResponse(why, status=403, content_type="text/plain")


def metrics(request: HttpRequest) -> HttpResponse:
    if refused := allowed(request):
        return refused
    return HttpResponse(
        generate_latest(REGISTRY), content_type=CONTENT_TYPE_PLAIN_0_0_4
    )  # every Prometheus reads it
