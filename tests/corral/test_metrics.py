"""/metrics: Prometheus's text format, counted from the database after a real
run (a session, the lead's gates and commit, a refusal, a cancel), and closed
to anyone without the token or an allowed address."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from agents.jobs.runner import run_session
from agents.models import Session
from agents.models.usage import Counts, TokenUsage
from agents.moves import lifecycle
from beads.models import Bead
from corral import metrics
from tests.factories import make_patch, program_agent, run_lead, submit

TOKEN = "s3cret-scraper-token"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOW = []


def scrape(client, **headers):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}", **headers})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.content.decode()


def samples(text):
    """{(name, frozenset(labels)): value} of every sample, as Prometheus would parse them."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found, name, **labels):
    return found[(name, frozenset(labels.items()))]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_metrics_count_a_real_run(client, repo, settings, rq_redis, metrics_on):
    settings.WATCH_INTERVAL_SECONDS = 0.2
    agent = program_agent("editor", "src/feature.py=FEATURE = 1")
    landed = Bead.objects.create(repository=repo, title="Land it", scope=["src/**"])
    session = lifecycle.claim(agent, bead=landed)
    lifecycle.queue_session(session)
    run_session(session.pk)
    TokenUsage.report(session.pk, "gpt-5", Counts(input=1000, output=200))
    run_lead(repo)  # gates and commits it
    assert Bead.objects.get(pk=landed.pk).status == "closed"

    outside = Bead.objects.create(repository=repo, title="Stay inside", scope=["docs/**"])
    base, patch = make_patch(repo, {"src/elsewhere.py": "X = 1\n"})
    submit(outside, agent, patch, base)
    run_lead(repo)  # the scope gate refuses it

    cancelled = Bead.objects.create(repository=repo, title="Stop it")
    lifecycle.cancel(lifecycle.claim(agent, bead=cancelled), by="alice")
    live = lifecycle.claim(agent, bead=Bead.objects.create(repository=repo, title="Still going"))

    waiting = Bead.objects.create(repository=repo, title="In the queue", scope=["src/**"])
    base, patch = make_patch(repo, {"src/queued.py": "Q = 1\n"})
    submit(waiting, agent, patch, base)  # handed in, the lead not run yet

    client.get("/")  # one answered request, in this process: to the login page
    found = samples(scrape(client))

    # Three claims, and the two sessions the submit() helper opens for its patches.
    assert value(found, "corral_claims_total", repository=repo.slug) == 5
    assert value(found, "corral_sessions_ended_total", outcome="succeeded") == 1
    assert value(found, "corral_sessions_ended_total", outcome="failed") == 1  # refused
    assert value(found, "corral_sessions_ended_total", outcome="cancelled") == 1
    assert value(found, "corral_sessions_in_flight", status="claimed") == 1
    assert value(found, "corral_sessions_in_flight", status="running") == 0
    assert value(found, "corral_sessions_in_flight", status="submitted") == 1  # in the queue
    assert value(found, "corral_gate_refusals_total", gate="scope") == 1
    assert value(found, "corral_gate_refusals_total", gate="check") == 0
    assert value(found, "corral_lead_queue_depth", repository=repo.slug, status="queued") == 1
    assert value(found, "corral_submission_to_commit_seconds_count") == 1
    assert value(found, "corral_submission_to_commit_seconds_bucket", le="+Inf") == 1
    assert value(found, "corral_dispatch_latency_seconds_count") == 1  # the one a worker ran
    duration = value(found, "corral_session_duration_seconds_count")
    assert duration == 1  # the one that ran: the helper's and the cancelled one never started
    assert value(found, "corral_session_duration_seconds_sum") > 0
    assert value(found, "corral_tokens_total", kind="input", model="gpt-5") == 1000
    assert value(found, "corral_tokens_total", kind="output", model="gpt-5") == 200
    http = "corral_http_request_duration_seconds_count"
    assert value(found, http, method="GET", view="overview", status="3xx") >= 1
    assert Session.objects.get(pk=live.pk).status == "claimed"


def test_metrics_are_closed_to_anonymous_scrapers_by_default(client, db):
    response = client.get("/metrics")
    assert response.status_code == 403
    assert b"CORRAL_METRICS_TOKEN" in response.content


def test_a_missing_token_is_401_and_a_wrong_one_403(client, db, metrics_on):
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 403
    assert b"corral_claims" not in wrong.content
    assert "corral_claims_total" in scrape(client)


def test_an_allowed_address_reads_without_a_token(client, db, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOW = ["10.0.0.0/8", "127.0.0.1/32"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 403


def test_the_sample_grafana_dashboard_reads_only_metrics_corral_serves(client, db, metrics_on):
    served = {f.name for f in text_string_to_metric_families(scrape(client))}
    dashboard = json.loads((ROOT / "ops" / "grafana" / "corral.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"corral_[a-z_]+", target["expr"])
    }
    assert queried
    for name in queried:
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert base in served, name


@pytest.mark.django_db(transaction=True)  # the lead's drain is enqueued on commit
def test_the_moves_that_end_a_duration_write_it_in_their_own_update(repo, agent, rq_redis):
    session = lifecycle.claim(agent, bead=Bead.objects.create(repository=repo, title="Timed"))
    assert session.start(worker="here:1")
    session.refresh_from_db()
    assert session.start_delay == session.started_at - session.created_at
    assert lifecycle.cancel(session, by="alice")
    session.refresh_from_db()
    assert session.run_time == session.ended_at - session.started_at > timedelta(0)

    landed = Bead.objects.create(repository=repo, title="Land", scope=["src/**"])
    base, patch = make_patch(repo, {"src/timed.py": "T = 1\n"})
    submission = submit(landed, agent, patch, base)
    run_lead(repo)
    submission.refresh_from_db()
    assert submission.status == "committed"
    assert submission.landing_time == submission.finished_at - submission.queued_at


def test_a_histogram_counts_each_duration_in_its_buckets(client, repo, agent, metrics_on):
    start = timezone.now() - timedelta(hours=3)
    for seconds in (10, 45, 4000):
        bead = Bead.objects.create(repository=repo, title=f"took {seconds}")
        Session.objects.create(
            agent=agent,
            bead=bead,
            status="succeeded",
            started_at=start,
            ended_at=start + timedelta(seconds=seconds),
        )
    found = samples(scrape(client))
    name = "corral_session_duration_seconds"
    for le, count in (("30.0", 1), ("60.0", 2), ("3600.0", 2), ("7200.0", 3), ("+Inf", 3)):
        assert value(found, f"{name}_bucket", le=le) == count, le
    assert value(found, f"{name}_sum") == 4055
    assert value(found, f"{name}_count") == 3


def test_durations_to_the_microsecond_fall_in_the_buckets_python_would_put_them(
    client, repo, agent, metrics_on
):
    """The database works the durations out (on SQLite from the stored text):
    a bucket's edge, a microsecond either side of it, whole and fractional
    starts, must count as Python's own subtraction of the datetimes says."""
    start = timezone.now().replace(microsecond=0) - timedelta(hours=5)
    tooks = [
        timedelta(seconds=30),
        timedelta(seconds=30, microseconds=1),
        timedelta(seconds=29, microseconds=999_999),
        timedelta(seconds=299, microseconds=500_000),
        timedelta(seconds=3600),
        timedelta(hours=4, seconds=1),
        timedelta(microseconds=3),
    ]
    for n, took in enumerate(tooks):
        began = start + timedelta(microseconds=n * 123_457 if n % 2 else 0)
        bead = Bead.objects.create(repository=repo, title=f"took {took}")
        Session.objects.create(
            agent=agent, bead=bead, status="failed", started_at=began, ended_at=began + took
        )
    found = samples(scrape(client))
    name = "corral_session_duration_seconds"
    seconds = [t.total_seconds() for t in tooks]
    for le in metrics.SESSION_BUCKETS:
        expected = sum(s <= le for s in seconds)
        assert value(found, f"{name}_bucket", le=str(float(le))) == expected, le
    assert value(found, f"{name}_count") == len(tooks)
    assert value(found, f"{name}_sum") == sum(tooks, timedelta()).total_seconds()
