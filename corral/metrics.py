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
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import (
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Sum,
)
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

from agents.models import Approval, GateResult, Session, Submission, UsageDay
from agents.reports import reviews
from workspace.audit import client_ip

# Seconds: a session runs minutes to hours; a landing and a dispatch take seconds.
SESSION_BUCKETS = (30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
# Seconds from a submission waiting for people to a person's first decision.
REVIEW_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def histogram(
    name: str, doc: str, rows: QuerySet[Any], took: str, buckets: tuple[float, ...]
) -> HistogramMetricFamily:
    """A histogram of the duration column `took` over `rows`, in one query: each
    bucket a range count of the column, which the move that ended the duration
    wrote (agents/models: Session.start_delay and run_time, Submission.landing_time)."""
    rows = rows.filter(**{f"{took}__isnull": False}).order_by()
    per_bucket = {
        f"le_{i}": Count(took, filter=Q(**{f"{took}__lte": timedelta(seconds=b)}))
        for i, b in enumerate(buckets)
    }
    found = rows.aggregate(n=Count("*"), total=Sum(took), **per_bucket)
    total = found["total"] or timedelta(0)
    series = [(str(float(b)), found[f"le_{i}"]) for i, b in enumerate(buckets)]
    return HistogramMetricFamily(
        name, doc, buckets=[*series, ("+Inf", found["n"])], sum_value=total.total_seconds()
    )


def review_families() -> Iterator[Metric]:
    """The review figures (agents/reports/reviews.py): time to first review,
    decisions by kind and by person, each agent's first-pass approval rate."""
    # Few rows (reviewed submissions), so the wait is worked out in the query.
    waited = ExpressionWrapper(
        F("first_review_at") - F("review_requested_at"), output_field=DurationField()
    )
    yield histogram(
        "corral_review_first_seconds",
        "From a submission waiting for people to a person's first decision on it",
        Submission.objects.filter(review_requested_at__isnull=False).annotate(waited=waited),
        "waited",
        REVIEW_BUCKETS,
    )
    decisions = CounterMetricFamily(
        "corral_reviews", "People's decisions on submissions", labels=["person", "decision"]
    )
    approved = Approval.objects.values_list("person__username").annotate(n=Count("*"))
    for person, n in approved.order_by("person__username"):
        decisions.add_metric([person, "approved"], n)
    changes = Submission.objects.filter(
        status__in=reviews.CHANGES_REQUESTED, reviewed_by__isnull=False
    )
    for person, n in (
        changes.values_list("reviewed_by__username")
        .annotate(n=Count("*"))
        .order_by("reviewed_by__username")
    ):
        decisions.add_metric([person, "changes_requested"], n)
    yield decisions
    first_pass = GaugeMetricFamily(
        "corral_review_first_pass_ratio",
        f"Share of an agent's beads approved at first review, last {reviews.METRIC_DAYS} days",
        labels=["agent"],
    )
    for row in reviews.figures(reviews.METRIC_DAYS).per_agent:
        first_pass.add_metric([row["agent"]], row["rate"])
    yield first_pass


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
            Session.objects.all(),  # run_time: set when a started session ends
            "run_time",
            SESSION_BUCKETS,
        )
        yield histogram(
            "corral_dispatch_latency_seconds",
            "From claim to a session worker starting the agent (Corral's own agents)",
            Session.objects.all(),  # start_delay: set when a session worker starts one
            "start_delay",
            LATENCY_BUCKETS,
        )
        yield histogram(
            "corral_submission_to_commit_seconds",
            "From hand-in to the lead's commit, for landed submissions",
            Submission.objects.all(),  # landing_time: set by the commit
            "landing_time",
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
        for model, kinds in UsageDay.totals_by_model().items():  # the days' rollup
            for kind, n in kinds.items():
                tokens.add_metric([kind, model], n)
        yield tokens
        yield from review_families()


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
