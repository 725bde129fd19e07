"""Tokens per session, by kind and model: parsed from the CLIs' own output
(recorded in their documented formats, tests/agents/usage/), reported by an
agent through the API and `corral usage`, priced from the admin's table."""

import os
import random
import subprocess
import sys
from datetime import UTC, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from agents.jobs.runner import run_session
from agents.jobs.usage_reader import UsageReader, model_from_argv
from agents.models import Agent, Session
from agents.models.usage import Counts, Price, PriceTable, TokenUsage
from agents.moves import lifecycle
from agents.reports import usage
from beads.models import Bead
from tests.factories import program_agent
from tests.races import race

FIXTURES = Path(__file__).parent / "usage"
ROOT = Path(__file__).resolve().parents[2]
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"


def read(name, model="unknown", piece=None):
    reader = UsageReader(model=model)
    text = (FIXTURES / name).read_text()
    step = piece or len(text)
    for i in range(0, len(text), step):  # output arrives in any pieces
        reader.feed(text[i : i + step])
    reader.finish()
    return {key: total.as_dict() for key, total in reader.totals.items()}


def test_claude_stream_json_takes_the_results_totals_per_model():
    totals = read("claude_stream.jsonl")
    assert totals == {
        ("claude-code", SONNET): {
            "input": 15,
            "output": 392,
            "cache_read": 49686,
            "cache_write": 5530,
        },
        ("claude-code", HAIKU): {"input": 212, "output": 18, "cache_read": 0, "cache_write": 0},
    }
    assert read("claude_stream.jsonl", piece=7) == totals


def test_claude_stream_json_without_a_result_adds_up_each_message_once():
    # Stopped before the result: the turns, each message id counted once
    # though it repeats for each content block.
    assert read("claude_stream_killed.jsonl") == {
        ("claude-code", SONNET): {
            "input": 4 + 6,
            "output": 2 + 160,
            "cache_read": 13012 + 18132,
            "cache_write": 5120 + 410,
        }
    }


def test_codex_exec_json_adds_up_its_turns_with_cached_input_apart():
    assert read("codex_exec.jsonl", model="gpt-5-codex") == {
        ("codex", "gpt-5-codex"): {
            "input": (24763 - 24448) + (1200 - 1024),
            "output": 122 + 30,
            "cache_read": 24448 + 1024,
            "cache_write": 0,
        }
    }


def test_codex_token_count_events_keep_the_latest_total():
    assert read("codex_token_count.jsonl") == {
        ("codex", "unknown"): {
            "input": 24763 - 24448,
            "output": 122,
            "cache_read": 24448,
            "cache_write": 0,
        }
    }


@pytest.mark.parametrize(
    "line",
    [
        '{"type":"turn.completed","usage":{"input_tokens":-5,"output_tokens":1e30}}',
        '{"type":"turn.completed","usage":{"input_tokens":"900","output_tokens":true}}',
        '{"type":"turn.completed","usage":[1,2]}',
        '{"type":"assistant","message":"hi"}',
        '{"type":"result","modelUsage":{"x":{"inputTokens":99999999999999999}}}',
        "[1, 2, 3]",
        "{not json",
        "plain text with {braces}",
    ],
)
def test_output_that_is_not_a_usage_record_counts_for_nothing(line):
    reader = UsageReader()
    reader.feed(line + "\n")
    assert all(not total.total() for total in reader.totals.values())


def test_the_model_comes_from_the_command_when_the_output_names_none():
    assert model_from_argv(["codex", "exec", "-m", "gpt-5-codex", "x"]) == "gpt-5-codex"
    assert model_from_argv(["codex", "exec", "--model=o4-mini"]) == "o4-mini"
    assert model_from_argv(["codex", "exec", "--model"]) == "unknown"


def test_cost_is_derived_from_the_price_table_by_model_prefix(db):
    Price.objects.create(
        model="claude-sonnet-4",
        input_per_mtok=Decimal(3),
        output_per_mtok=Decimal(15),
        cache_read_per_mtok=Decimal("0.3"),
        cache_write_per_mtok=Decimal("3.75"),
    )
    Price.objects.create(model="claude", input_per_mtok=Decimal(100))
    used = {SONNET: {"input": 1_000_000, "output": 0, "cache_read": 1_000_000, "cache_write": 0}}
    assert PriceTable().cost(used) == Decimal("3.3")  # the longest prefix wins
    assert PriceTable().cost({"gpt-5": {"input": 10, "output": 0}}) is None  # no price: unknown
    assert PriceTable().cost({"gpt-5": {"input": 0, "output": 0}}) == 0


@pytest.fixture
def live_session(repo):
    agent = Agent.objects.create(name="outside", internal=False)
    bead = Bead.objects.create(repository=repo, title="Count me")
    session = lifecycle.claim(agent, bead=bead)
    session.heartbeat()
    return agent, session


def test_an_agent_reports_usage_through_the_api_and_it_adds_up(client, live_session):
    agent, session = live_session
    headers = {"Authorization": f"Bearer {agent.plain_token}"}
    url = f"/api/v1/sessions/{session.pk}/usage"
    body = {"input": 100, "output": 20, "cache_read": 5, "model": "gpt-5"}
    assert (
        client.post(url, body, content_type="application/json", headers=headers).status_code == 200
    )
    answer = client.post(url, body, content_type="application/json", headers=headers).json()
    assert answer["tokens"] == {
        "gpt-5": {"input": 200, "output": 40, "cache_read": 10, "cache_write": 0}
    }
    row = TokenUsage.objects.get(session=session)
    assert (row.channel, row.total()) == ("reported", 250)


@pytest.mark.parametrize(
    "body",
    [{"input": -1}, {"output": "many"}, {"input": 10**13}, {"model": ""}, {"tokens": 5}],
)
def test_bad_usage_reports_are_422_with_the_field(client, live_session, body):
    agent, session = live_session
    response = client.post(
        f"/api/v1/sessions/{session.pk}/usage",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {agent.plain_token}"},
    )
    assert response.status_code == 422
    assert not TokenUsage.objects.exists()


def test_another_agent_cannot_report_for_a_session_not_its_own(client, live_session):
    _, session = live_session
    other = Agent.objects.create(name="other", internal=False)
    response = client.post(
        f"/api/v1/sessions/{session.pk}/usage",
        {"input": 1, "output": 1},
        content_type="application/json",
        headers={"Authorization": f"Bearer {other.plain_token}"},
    )
    assert response.status_code == 403
    assert not TokenUsage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_corral_usage_reports_from_the_command_line(live_server, repo):
    agent = Agent.objects.create(name="outside", internal=False)
    session = lifecycle.claim(agent, bead=Bead.objects.create(repository=repo, title="CLI"))
    session.heartbeat()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(
        PYTHONPATH=str(ROOT),
        CORRAL_URL=live_server.url,
        CORRAL_TOKEN=agent.plain_token,
        CORRAL_SESSION=str(session.pk),
    )

    def corral(*args):
        argv = [sys.executable, "-m", "corral_client.cli", "usage", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

    done = corral("--input", "1200", "--output", "300", "--cache-read", "50", "--model", "o4-mini")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "o4-mini: input 1200, output 300, cache_read 50, cache_write 0"
    bad = corral("--input", "-3", "--output", "1")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    assert "input" in bad.stderr and "Traceback" not in bad.stderr
    assert TokenUsage.totals_by_model() == {
        "o4-mini": {"input": 1200, "output": 300, "cache_read": 50, "cache_write": 0}
    }


@pytest.mark.django_db(transaction=True)
def test_a_session_running_claude_code_stores_the_usage_it_printed(repo, settings, rq_redis):
    settings.WATCH_INTERVAL_SECONDS = 0.2
    agent = program_agent(
        "usage_printer", str(FIXTURES / "claude_stream.jsonl"), "src/greet.py=print('hi')"
    )
    bead = Bead.objects.create(repository=repo, title="Greet", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    run_session(session.pk)
    session = Session.objects.get(pk=session.pk)
    assert session.status == "submitted", session.error
    assert TokenUsage.totals_by_model(session.usage.all()) == {
        HAIKU: {"input": 212, "output": 18, "cache_read": 0, "cache_write": 0},
        SONNET: {"input": 15, "output": 392, "cache_read": 49686, "cache_write": 5530},
    }
    assert set(session.usage.values_list("channel", flat=True)) == {"claude-code"}
    assert Counts(1, 2, 3, 4).total() == 10


def test_usage_shows_on_the_session_repository_agent_and_usage_pages(
    logged_in, admin_client, repo, agent
):
    Price.objects.create(model="claude-sonnet-4", input_per_mtok=3, output_per_mtok=15)
    landed = Bead.objects.create(
        repository=repo, title="Landed", status="closed", commit_sha="a" * 40
    )
    failed_once = Bead.objects.create(
        repository=repo, title="Second try", status="closed", commit_sha="b" * 40, attempts=1
    )
    first = Session.objects.create(agent=agent, bead=landed, status="succeeded")
    second = Session.objects.create(agent=agent, bead=failed_once, status="succeeded")
    TokenUsage.put(first.pk, "claude-code", SONNET, Counts(input=1_000_000, output=100_000))
    TokenUsage.put(second.pk, "codex", "gpt-5", Counts(input=500))
    earlier = timezone.now() - timedelta(days=3)
    older = Session.objects.create(
        agent=agent, bead=failed_once, status="failed", created_at=earlier
    )
    TokenUsage.put(older.pk, "codex", "gpt-5", Counts(output=7))

    page = logged_in.get(first.get_absolute_url()).content.decode()
    assert f'data-model="{SONNET}"' in page and "1,000,000" in page and "$4.50" in page
    assert f"{landed.pk}, all its sessions: 1,100,000 tokens, $4.50" in page
    page = logged_in.get(repo.get_absolute_url()).content.decode()
    assert 'id="repository-usage"' in page and "unpriced model" in page  # gpt-5 has no price

    response = logged_in.get("/usage/")
    assert response.status_code == 200
    ctx = response.context
    assert ctx["first_try"] == {"landed": 2, "first": 1, "rate": 0.5}
    assert [row["agent"] for row in ctx["agents"]] == [agent.name]
    assert ctx["agents"][0]["summary"].total == 1_100_507
    costs = {row["bead"].pk: row["summary"].cost for row in ctx["landed"]["rows"]}
    assert costs == {landed.pk: Decimal("4.5"), failed_once.pk: None}
    html = response.content.decode()
    assert html.count('class="bar"') == 4  # two days, one segment each, in each chart
    titles = [bar["title"] for bar in ctx["by_repository"]["bars"]]
    assert titles == [
        f"{repo.name}, {earlier:%b %d}: 7 tokens",
        f"{repo.name}, {timezone.now():%b %d}: 1,100,500 tokens",
    ]
    assert "50%" in html
    agents = admin_client.get("/admin/agents/agent/").content.decode()
    assert 'class="field-tokens_used">1,100,507<' in agents
    assert 'class="field-cost">unpriced model<' in agents  # gpt-5 has no price


def usage_as_rows_say(days):
    """The usage page's figures worked out row by row in Python, the plain way:
    a session's tokens count on its UTC date, charts over the last `days` days."""
    today = timezone.now().date()
    shown = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    by_repository, by_agent, per_model = {}, {}, {}
    for row in TokenUsage.objects.select_related("session__agent", "session__bead__repository"):
        session, total = row.session, row.total()
        day = session.created_at.astimezone(UTC).date()
        if day >= shown[0]:
            for series in (
                by_repository.setdefault(session.bead.repository.name, {}),
                by_agent.setdefault(session.agent.name, {}),
            ):
                series[day] = series.get(day, 0) + total
        used = per_model.setdefault(session.agent.name, {}).setdefault(row.model, Counts())
        used.add(Counts(row.input, row.output, row.cache_read, row.cache_write))
    agents = {
        name: {model: counts.as_dict() for model, counts in models.items()}
        for name, models in per_model.items()
    }
    return by_repository, by_agent, agents


def test_the_usage_overview_adds_up_as_the_rows_do(make_repo, agent):
    """Per repository and agent per day (each day's edges to the microsecond,
    the oldest day shown and the one before it), and each agent's totals."""
    app, lib = make_repo("app"), make_repo("lib")
    other = Agent.objects.create(name="agent-2", preset="shell")
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    moments = [
        timezone.now(),
        midnight,
        midnight - timedelta(microseconds=1),
        midnight - timedelta(days=3, hours=5, microseconds=7),
        midnight - timedelta(days=13),  # the oldest day shown, its first instant
        midnight - timedelta(days=13, microseconds=1),  # the day before: not charted
        midnight - timedelta(days=40),
    ]
    rng = random.Random(5)
    for n, created in enumerate(moments * 2):
        bead = Bead.objects.create(repository=(app, lib)[n % 2], title=f"b{n}")
        session = Session.objects.create(
            agent=(agent, other)[n % 3 == 0], bead=bead, status="succeeded", created_at=created
        )
        for model in (SONNET, "gpt-5")[: 1 + n % 2]:
            counts = Counts(*(rng.randrange(1, 10_000) for _ in range(4)))
            TokenUsage.put(session.pk, "claude-code", model, counts)

    found = usage.overview(14)
    by_repository, by_agent, agents = usage_as_rows_say(14)
    assert found.by_repository == by_repository
    assert found.by_agent == by_agent
    assert {row["agent"]: row["summary"].by_model for row in found.agents} == agents
    assert len(by_repository["app"]) >= 4  # the moments fell on several days


def report_many(session_id, times):
    for _ in range(times):
        TokenUsage.report(session_id, "gpt-5", Counts(input=10, output=1))


@pytest.mark.django_db(transaction=True)
def test_reports_racing_from_many_processes_all_add_up(repo, agent):
    bead = Bead.objects.create(repository=repo, title="Busy")
    session = Session.objects.create(agent=agent, bead=bead, status="running")
    race(report_many, [(session.pk, 5)] * 6)
    row = TokenUsage.objects.get(session=session)  # one row, however they raced to make it
    assert (row.input, row.output) == (6 * 5 * 10, 6 * 5)


def test_a_usage_row_carries_its_sessions_agent_and_repository(live_session, repo):
    agent, session = live_session
    TokenUsage.put(session.pk, "claude-code", SONNET, Counts(input=5))
    TokenUsage.report(session.pk, "gpt-5", Counts(output=3))
    TokenUsage.put(session.pk, "claude-code", SONNET, Counts(input=9))  # an update keeps them
    rows = TokenUsage.objects.filter(session=session)
    assert set(rows.values_list("model", "agent_id", "repository_id")) == {
        ("gpt-5", agent.pk, repo.pk),
        (SONNET, agent.pk, repo.pk),
    }
