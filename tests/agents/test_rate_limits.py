"""Rate limits pause, not fail: a preset's CLI saying it hit its quota (or an
HTTP 429) ends the session `paused` with the reset time, counts no attempt,
and dispatch passes the agent over until the reset, or until a person
resumes it (auto-resume off, or past the day's cap). External agents say the
same through `release`."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from agents import presets
from agents.jobs import limit_reader, reconcile
from agents.jobs.dispatch import BUSY, dispatch, free_slots, least_busy_agent
from agents.jobs.runner import run_session
from agents.models import Agent, Session
from agents.moves import dispatching, lifecycle
from beads.models import Bead
from tests.factories import PROGRAMS, program_agent
from tests.procs import Running, wait_until
from tests.races import race
from workspace.audit import AuditEntry

LINES = Path(__file__).parent / "limits" / "lines.jsonl"
ROOT = Path(__file__).resolve().parents[2]
PRESETS = ["claude-code", "codex", "shell", "demo", "aider"]
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def quick_limits(settings):
    settings.KILL_GRACE_SECONDS = 1
    settings.WATCH_INTERVAL_SECONDS = 0.2


def recorded_lines():
    for row in map(json.loads, LINES.read_text().splitlines()):
        output = row["output"]
        yield pytest.param(
            output if isinstance(output, str) else json.dumps(output),
            row["paused_by"],
            id=row["why"],
        )


# Reading the CLIs' output.


@pytest.mark.parametrize(("line", "paused_by"), recorded_lines())
def test_each_preset_reads_its_own_clis_limit_messages_and_nothing_a_tool_printed(line, paused_by):
    for preset in PRESETS:
        reader = limit_reader.LimitReader(presets.rate_limits(preset))
        found = reader.feed(line[:17]) or reader.feed(line[17:] + "\n")  # any split
        assert (found is not None) == (preset in paused_by), preset


def test_the_last_line_counts_without_its_newline():
    reader = limit_reader.LimitReader(presets.rate_limits("claude-code"))
    assert reader.feed("working\nClaude AI usage limit reached|1750000000") is None
    found = reader.finish()
    assert found is not None and found.message == "Claude AI usage limit reached|1750000000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Claude AI usage limit reached|1772449200", datetime(2026, 3, 2, 11, 0, tzinfo=UTC)),
        ("limit reached, resets at 2026-03-02T12:30:00Z", NOW + timedelta(hours=2.5)),
        ("resets 2026-03-02T14:00:00+02:00", datetime(2026, 3, 2, 12, 0, tzinfo=UTC)),
        ("try again in 2h 5m.", NOW + timedelta(hours=2, minutes=5)),
        ("Try again in 2 hours 5 minutes", NOW + timedelta(hours=2, minutes=5)),
        ("Try again in 1 day 3 hours", NOW + timedelta(days=1, hours=3)),
        ("Please try again in 90s.", NOW + timedelta(seconds=90)),
        (
            "Your limit will reset at 3pm (Europe/Paris).",
            datetime(2026, 3, 2, 15, 0, tzinfo=ZoneInfo("Europe/Paris")),
        ),
        (
            "5-hour limit reached ∙ resets 9:30am (America/New_York)",
            datetime(2026, 3, 2, 9, 30, tzinfo=ZoneInfo("America/New_York")),
        ),
        # Passed already today: tomorrow's.
        ("resets 8am (UTC)", datetime(2026, 3, 3, 8, 0, tzinfo=UTC)),
        ("resets at 10:45 (Etc/UTC)", datetime(2026, 3, 2, 10, 45, tzinfo=UTC)),
    ],
)
def test_the_reset_time_the_message_names_is_read(text, expected):
    assert limit_reader.reset_time(text, NOW) == expected


def test_without_a_reset_time_the_default_wait_is_taken(settings):
    settings.RATE_LIMIT_WAIT_SECONDS = 1800
    for text in ["You've hit your usage limit.", "resets 5 times", "resets at noon"]:
        assert limit_reader.reset_time(text, NOW) == NOW + timedelta(minutes=30), text


def test_a_reset_in_the_past_or_beyond_a_week_is_held_within_bounds():
    past = "Claude AI usage limit reached|1000000000"
    assert limit_reader.reset_time(past, NOW) == NOW + limit_reader.SHORTEST_WAIT
    far = "Claude AI usage limit reached|4000000000"
    assert limit_reader.reset_time(far, NOW) == NOW + limit_reader.LONGEST_WAIT
    assert limit_reader.reset_time("try again in 400 days", NOW) == NOW + timedelta(days=7)


def test_a_zone_name_that_is_no_zone_is_read_as_this_machines():
    got = limit_reader.reset_time("resets 3pm (../../../etc/passwd)", NOW)
    local = NOW.astimezone(limit_reader.local_zone())
    expected = local.replace(hour=15, minute=0, second=0, microsecond=0)
    assert got == (expected if expected > local else expected + timedelta(days=1))


# A session that hits its limit.


def run(repo, agent, **fields):
    bead = Bead.objects.create(repository=repo, title="Do it", scope=["src/**"], **fields)
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    run_session(session.pk)
    session.refresh_from_db()
    bead.refresh_from_db()
    agent.refresh_from_db()
    return session, bead


def near(at, expected, slack=10):
    return abs((at - expected).total_seconds()) <= slack


@pytest.mark.django_db(transaction=True)
def test_claude_codes_usage_limit_pauses_the_session_and_counts_no_attempt(repo, rq_redis):
    agent = program_agent("rate_limited", "claude-json", "600", preset="claude-code")
    before = timezone.now()
    session, bead = run(repo, agent, last_failure="an earlier refusal")
    assert session.status == "paused", session.error
    assert near(session.resets_at, before + timedelta(seconds=600))
    assert "Claude AI usage limit reached" in session.error
    assert (bead.status, bead.attempts, bead.assignee) == ("open", 0, "")
    assert bead.last_failure == "an earlier refusal"  # not the bead's fault: nothing of it
    assert agent.paused_until == session.resets_at and not agent.paused_for_person
    assert agent.is_paused()
    assert Path(session.workdir, "src/partial.py").exists()  # its work stays, as at a time limit


@pytest.mark.django_db(transaction=True)
def test_codexs_usage_limit_stops_a_cli_that_waits_and_pauses_it(repo, rq_redis):
    agent = program_agent("rate_limited", "codex-json", "300", "--hang", preset="codex")
    started = timezone.now()
    session, bead = run(repo, agent)
    assert session.status == "paused", session.error
    assert (session.ended_at - started).total_seconds() < 30  # stopped, not waited for
    assert near(session.resets_at, started + timedelta(seconds=300))
    assert "You've hit your usage limit" in session.error
    assert (bead.status, bead.attempts) == ("open", 0)


@pytest.mark.django_db(transaction=True)
def test_a_plain_codex_line_on_stderr_pauses_too(repo, rq_redis):
    agent = program_agent("rate_limited", "codex", "120", preset="codex")
    session, bead = run(repo, agent)
    assert session.status == "paused" and bead.attempts == 0
    assert near(session.resets_at, session.ended_at + timedelta(seconds=120))


@pytest.mark.django_db(transaction=True)
def test_a_shell_agent_printing_the_same_words_fails_as_any_failure(repo, rq_redis):
    agent = program_agent("rate_limited", "claude", "120", preset="shell")
    session, bead = run(repo, agent)
    assert session.status == "failed" and session.resets_at is None
    assert (bead.status, bead.attempts) == ("open", 1)
    agent.refresh_from_db()
    assert not agent.is_paused()


# Who takes work after a pause.


def paused_session(agent, repo, until, title="b"):
    bead = Bead.objects.create(repository=repo, title=title)
    session = lifecycle.claim(agent, bead=bead)
    assert lifecycle.pause(session, "Rate limited: test", until)
    return session


@pytest.mark.django_db(transaction=True)
def test_dispatch_passes_a_paused_agent_over_until_its_reset(repo, rq_redis):
    agent = Agent.objects.create(name="limited", preset="shell", command=["true"])
    paused_session(agent, repo, timezone.now() + timedelta(minutes=5))
    with pytest.raises(lifecycle.AgentPaused, match="limited is paused until"):
        lifecycle.claim(agent, repository=repo)
    assert least_busy_agent() is None
    Agent.objects.filter(pk=agent.pk).update(paused_until=timezone.now() - timedelta(seconds=1))
    assert least_busy_agent() == agent  # the reset passed: it goes on by itself


@pytest.mark.django_db(transaction=True)
def test_with_auto_resume_off_the_agent_waits_for_a_person(repo, rq_redis):
    agent = Agent.objects.create(name="careful", preset="shell", command=["true"])
    agent.auto_resume = False
    agent.save()
    paused_session(agent, repo, timezone.now() + timedelta(seconds=31))
    Agent.objects.filter(pk=agent.pk).update(paused_until=timezone.now() - timedelta(hours=1))
    agent.refresh_from_db()
    assert agent.paused_for_person and agent.is_paused()
    assert "until a person resumes it" in agent.pause_text()
    assert least_busy_agent() is None  # its reset is long past
    assert dispatching.resume_agent(agent)
    assert not dispatching.resume_agent(agent)  # once
    assert least_busy_agent() == agent


@pytest.mark.django_db(transaction=True)
def test_past_the_days_cap_of_pauses_the_agent_waits_for_a_person(repo, rq_redis, settings):
    settings.PAUSES_PER_DAY = 2
    agent = Agent.objects.create(name="busy", preset="shell", command=["true"])
    sessions = [
        lifecycle.claim(agent, bead=Bead.objects.create(repository=repo, title=f"b{n}"))
        for n in range(3)
    ]
    soon = timezone.now() + timedelta(minutes=1)
    for session in sessions[:2]:
        assert lifecycle.pause(session, "Rate limited", soon)
        agent.refresh_from_db()
        assert not agent.paused_for_person
    assert lifecycle.pause(sessions[2], "Rate limited", soon)
    agent.refresh_from_db()
    assert agent.paused_for_person
    assert lifecycle.pauses_today(agent) == 3


@pytest.mark.django_db(transaction=True)
def test_the_ready_bead_of_a_paused_session_goes_to_another_agent(repo, rq_redis):
    limited = Agent.objects.create(name="a-limited", preset="shell", command=["true"])
    other = Agent.objects.create(name="b-other", preset="shell", command=["true"])
    session = paused_session(limited, repo, timezone.now() + timedelta(hours=1))
    assert least_busy_agent() == other
    assert lifecycle.claim(other, repository=repo).bead == session.bead  # ready at once


@pytest.mark.django_db(transaction=True)
def test_dispatch_waits_for_the_reset_then_goes_on(repo, subprocess_env, rq_redis):
    sleeper = [sys.executable, str(PROGRAMS / "sleeper.py"), "30"]
    agent = Agent.objects.create(name="sleepy", preset="shell", command=sleeper)
    worker = Running(["manage.py", "rqworker", "sessions"], subprocess_env)
    try:
        wait_until(lambda: free_slots() == 1, timeout=60, what="a session worker")
        paused_session(agent, repo, timezone.now() + timedelta(minutes=10))
        assert dispatch() == 0  # its bead is ready, its only agent paused
        Agent.objects.filter(pk=agent.pk).update(paused_until=timezone.now())
        assert dispatch() == 1
        assert Session.objects.filter(agent=agent, status__in=BUSY).exists()
    finally:
        worker.kill_group()
        for session in Session.objects.exclude(pid=None):
            reconcile.kill_local_agent(session)


# Races.


def pause_one(session_id, minutes):
    session = Session.objects.select_related("agent", "bead").get(pk=session_id)
    until = timezone.now() + timedelta(minutes=minutes)
    return lifecycle.pause(session, f"limited {minutes}", until)


@pytest.mark.django_db(transaction=True)
def test_sessions_of_one_agent_pausing_at_once_keep_the_latest_reset(repo):
    repo.max_agents = 6
    repo.save()
    agent = Agent.objects.create(name="many", preset="shell", command=["true"])
    sessions = [
        lifecycle.claim(agent, bead=Bead.objects.create(repository=repo, title=f"b{n}"))
        for n in range(6)
    ]
    minutes = [30, 90, 10, 60, 75, 20]
    before = timezone.now()
    assert (
        race(pause_one, [(s.pk, m) for s, m in zip(sessions, minutes, strict=True)]) == [True] * 6
    )
    agent.refresh_from_db()
    assert near(agent.paused_until, before + timedelta(minutes=90))
    assert set(Bead.objects.values_list("status", "attempts")) == {("open", 0)}


def pause_or_cancel(session_id, pause):
    session = Session.objects.select_related("agent", "bead").get(pk=session_id)
    if pause:
        return lifecycle.pause(session, "limited", timezone.now() + timedelta(minutes=5))
    return lifecycle.cancel(session, "alice")


@pytest.mark.django_db(transaction=True)
def test_a_pause_and_a_cancel_racing_on_a_session_one_wins(repo):
    agent = Agent.objects.create(name="racer", preset="shell", command=["true"])
    session = lifecycle.claim(agent, bead=Bead.objects.create(repository=repo, title="x"))
    results = race(pause_or_cancel, [(session.pk, n % 2 == 0) for n in range(6)])
    assert results.count(True) == 1
    session.refresh_from_db()
    bead = Bead.objects.get(pk=session.bead_id)
    paused = results.index(True) % 2 == 0
    assert session.status == ("paused" if paused else "cancelled")
    assert bead.attempts == (0 if paused else 1)  # the loser counted nothing


def resume(agent_id):
    return dispatching.resume_agent(Agent.objects.get(pk=agent_id))


@pytest.mark.django_db(transaction=True)
def test_people_resuming_one_agent_at_once_resume_it_once(repo):
    agent = Agent.objects.create(name="resumed", preset="shell", command=["true"])
    paused_session(agent, repo, timezone.now() + timedelta(hours=1))
    assert race(resume, [(agent.pk,)] * 6).count(True) == 1
    agent.refresh_from_db()
    assert not agent.is_paused() and agent.paused_until is None


# External agents.


@pytest.fixture
def external(db, repo):
    agent = Agent.objects.create(name="outside", preset="shell", internal=False)
    bead = Bead.objects.create(repository=repo, title="External work")
    client = Client(headers={"Authorization": f"Bearer {agent.plain_token}"})
    return agent, bead, client


def release(client, session_id, **body):
    return client.post(
        f"/api/v1/sessions/{session_id}/release",
        json.dumps({"reason": "my quota is spent", **body}),
        content_type="application/json",
    )


@pytest.mark.django_db(transaction=True)
def test_an_external_agent_releasing_on_a_rate_limit_is_paused_as_an_internal_one(external):
    agent, bead, client = external
    session = client.post("/api/v1/claim", {}, content_type="application/json").json()["session"]
    until = (timezone.now() + timedelta(hours=2)).replace(microsecond=0)
    answer = release(client, session, rate_limited_until=until.isoformat())
    assert answer.status_code == 200, answer.content
    assert answer.json()["status"] == "paused"
    stored = Session.objects.get(pk=session)
    assert stored.resets_at == until and "my quota is spent" in stored.error
    bead.refresh_from_db()
    assert (bead.status, bead.attempts) == ("open", 0)
    refused = client.post("/api/v1/claim", {}, content_type="application/json")
    assert refused.status_code == 409 and "paused until" in refused.json()["detail"]


@pytest.mark.django_db(transaction=True)
def test_a_naive_reset_is_utc_and_one_past_is_now(external):
    agent, _, client = external
    session = client.post("/api/v1/claim", {}, content_type="application/json").json()["session"]
    answer = release(client, session, rate_limited_until="2000-01-01T00:00:00")
    assert answer.status_code == 200 and answer.json()["status"] == "paused"
    stored = Session.objects.get(pk=session)
    assert near(stored.resets_at, timezone.now())
    agent.refresh_from_db()
    assert not agent.is_paused()  # its reset has passed: it claims again
    assert client.post("/api/v1/claim", {}, content_type="application/json").status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("until", "says"),
    [("next tuesday", "rate_limited_until"), ("2999-01-01T00:00:00Z", "more than 7 days")],
)
def test_a_bad_reset_time_is_refused_and_the_session_goes_on(external, until, says):
    _, _, client = external
    session = client.post("/api/v1/claim", {}, content_type="application/json").json()["session"]
    answer = release(client, session, rate_limited_until=until)
    assert answer.status_code == 422 and says in answer.content.decode()
    assert Session.objects.get(pk=session).status == "claimed"


@pytest.mark.django_db(transaction=True)
def test_a_release_without_a_reset_counts_an_attempt_as_before(external):
    _, bead, client = external
    session = client.post("/api/v1/claim", {}, content_type="application/json").json()["session"]
    assert release(client, session).json()["status"] == "cancelled"
    bead.refresh_from_db()
    assert bead.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_the_cli_releases_on_a_rate_limit(repo, live_server, tmp_path):
    agent = Agent.objects.create(name="cli-agent", preset="shell", internal=False)
    Bead.objects.create(repository=repo, title="x")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env |= {"PYTHONPATH": str(ROOT), "CORRAL_URL": live_server.url}
    env["CORRAL_TOKEN"] = agent.plain_token

    def corral(*args, cwd=tmp_path):
        argv = [sys.executable, "-m", "corral_client.cli", *args]
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)

    assert corral("claim", "--dir", str(tmp_path / "w")).returncode == 0
    until = (timezone.now() + timedelta(hours=1)).isoformat()
    done = corral("release", "--reason", "quota", "--rate-limited-until", until, cwd=tmp_path / "w")
    assert done.returncode == 0 and "(paused)" in done.stdout, done.stderr
    bad = corral("release", "--reason", "q", "--rate-limited-until", "soon", cwd=tmp_path / "w")
    assert bad.returncode == 1 and bad.stderr.startswith("corral: ") and "422" in bad.stderr


# People.


@pytest.mark.django_db(transaction=True)
def test_the_hook_page_shows_paused_agents_and_an_operator_resumes_one(repo, logged_in, viewer):
    agent = Agent.objects.create(name="quota", preset="shell", command=["true"])
    paused_session(agent, repo, timezone.now() + timedelta(hours=1))
    page = logged_in.get("/hook/").content.decode()
    assert 'data-agent="quota"' in page and "paused until" in page
    assert "/agents/quota/resume" in page
    client = Client()
    client.force_login(viewer)
    assert "/agents/quota/resume" not in client.get("/hook/").content.decode()
    assert client.post("/agents/quota/resume").status_code == 403
    agent.refresh_from_db()
    assert agent.is_paused()
    answer = logged_in.post("/agents/quota/resume")
    assert answer.status_code == 302
    agent.refresh_from_db()
    assert not agent.is_paused()
    assert AuditEntry.objects.filter(action="resume", target="agent quota").count() == 1
    assert 'data-agent="quota"' not in logged_in.get("/hook/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_admin_shows_a_pause_and_resumes_paused_agents(repo, client):
    admin = get_user_model().objects.create_superuser("root", password="x")
    client.force_login(admin)
    agent = Agent.objects.create(name="adm", preset="shell", command=["true"])
    paused_session(agent, repo, timezone.now() + timedelta(hours=1))
    form = client.get(f"/admin/agents/agent/{agent.pk}/change/")
    assert form.status_code == 200 and "paused" in form.content.decode().lower()
    answer = client.post(
        "/admin/agents/agent/",
        {"action": "resume", "_selected_action": [agent.pk]},
    )
    assert answer.status_code == 302
    agent.refresh_from_db()
    assert not agent.is_paused()
