"""Token budgets: per bead, per repository per day, per agent per day. A session
over one is stopped like one at its time limit, its clone kept; dispatch starts
no session a spent budget forbids."""

import re
import time
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from rq import Worker

from agents import queues
from agents.jobs.dispatch import dispatch
from agents.jobs.runner import run_session
from agents.models import Agent, Budget, Session
from agents.models.usage import Counts, TokenUsage
from agents.moves import lifecycle
from agents.reports import budgets
from beads.models import Bead
from tests.factories import program_agent

CLAUDE_RUN = Path(__file__).parent / "usage" / "claude_stream.jsonl"
# What the recorded run spends, as budgets count it: input + output + cache writes.
RUN_TOKENS = (15 + 392 + 5530) + (212 + 18)


@pytest.fixture
def quick(settings):
    settings.WATCH_INTERVAL_SECONDS = 0.2
    settings.KILL_GRACE_SECONDS = 1


def run(agent, bead):
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    started = time.monotonic()
    run_session(session.pk)
    return Session.objects.get(pk=session.pk), time.monotonic() - started


@pytest.mark.django_db(transaction=True)
def test_a_session_over_its_beads_budget_is_stopped_and_its_work_kept(repo, quick, rq_redis):
    agent = program_agent("spender", str(CLAUDE_RUN), "60")
    bead = Bead.objects.create(repository=repo, title="Spend", scope=["src/**"])
    Budget.objects.create(bead=bead, tokens=5000)

    session, took = run(agent, bead)

    assert took < 30  # not the 60 s it meant to think
    assert session.status == "failed"
    # Stopped as soon as a usage record put it over: at a turn, or at the result.
    stopped = re.fullmatch(
        rf"Stopped at its bead's budget \({bead.pk}\): ([\d,]+) of 5,000 tokens used\.",
        session.error,
    )
    assert stopped, session.error
    assert 5000 <= int(stopped[1].replace(",", "")) <= RUN_TOKENS
    assert Path(session.workdir, "src/partial.py").read_text() == "PARTIAL = True\n"  # kept
    assert session.changed_files == ["src/partial.py"]
    bead.refresh_from_db()
    assert bead.status == "blocked"  # no agent spends more on it until a person says so
    assert "budget" in bead.last_failure


@pytest.mark.django_db(transaction=True)
def test_a_repositorys_spent_day_stops_a_session_and_sends_the_bead_back(repo, quick, rq_redis):
    agent = program_agent("spender", str(CLAUDE_RUN), "60")
    Budget.objects.create(repository=repo, tokens=RUN_TOKENS - 1)
    bead = Bead.objects.create(repository=repo, title="Spend", scope=["src/**"])

    session, _ = run(agent, bead)

    assert session.status == "failed"
    assert session.error.startswith("Stopped at its repository's budget for today")
    bead.refresh_from_db()
    assert bead.status == "open" and bead.attempts == 1


def test_a_session_within_its_budgets_is_not_stopped(repo, agent):
    bead = Bead.objects.create(repository=repo, title="Cheap")
    Budget.objects.create(bead=bead, tokens=1000)
    Budget.objects.create(repository=repo, tokens=1000)
    Budget.objects.create(agent=agent, tokens=1000)
    session = Session.objects.create(agent=agent, bead=bead, status="running")
    # Cache reads are not counted: a turn re-reads the whole conversation.
    TokenUsage.put(session.pk, "codex", "gpt-5", Counts(input=500, output=499, cache_read=10**6))
    assert budgets.spent_for(bead.pk, repo.pk, agent.pk) is None
    TokenUsage.report(session.pk, "gpt-5", Counts(cache_write=1))
    assert budgets.spent_for(bead.pk, repo.pk, agent.pk) == (
        f"Stopped at its bead's budget ({bead.pk}): 1,000 of 1,000 tokens used.",
        True,
    )


def test_a_budget_is_for_exactly_one_thing(repo, agent):
    with pytest.raises(ValidationError, match="one bead, one repository or one agent"):
        Budget(repository=repo, agent=agent, tokens=1).full_clean()
    with pytest.raises(ValidationError):
        Budget(tokens=1).full_clean()


@pytest.fixture
def a_session_worker(rq_redis):
    """A session worker registered in Redis (not working): one free slot for dispatch."""
    worker = Worker([queues.queue(queues.SESSIONS)], connection=queues.connection())
    worker.register_birth()
    yield worker
    worker.register_death()


def spent_today(agent, repo, tokens):
    bead = Bead.objects.create(repository=repo, title="Earlier", status="closed")
    session = Session.objects.create(agent=agent, bead=bead, status="succeeded")
    TokenUsage.put(session.pk, "codex", "gpt-5", Counts(input=tokens))


@pytest.mark.django_db(transaction=True)
def test_dispatch_starts_nothing_a_spent_daily_budget_forbids(make_repo, a_session_worker):
    spent_repo, other_repo = make_repo("spent"), make_repo("other")
    rich = Agent.objects.create(name="a-rich", command=["true"])
    poor = Agent.objects.create(name="b-poor", command=["true"])
    Budget.objects.create(repository=spent_repo, tokens=100)
    Budget.objects.create(agent=rich, tokens=100)
    spent_today(rich, spent_repo, 100)  # both spent today
    ready = Bead.objects.create(repository=spent_repo, title="Ready but over budget")

    assert dispatch() == 0  # the only ready bead is in a spent repository
    assert not Session.objects.filter(bead=ready).exists()

    elsewhere = Bead.objects.create(repository=other_repo, title="Ready elsewhere")
    assert dispatch() == 1
    session = Session.objects.get(bead=elsewhere)
    assert session.agent == poor  # rich is idle, but its day is spent

    Budget.objects.filter(repository=spent_repo).update(tokens=10_000)
    assert budgets.spent_repositories() == set() and budgets.spent_agents() == {rich.pk}


def test_the_hook_page_shows_what_is_left_of_each_budget(logged_in, repo, agent):
    Budget.objects.create(repository=repo, tokens=10_000)
    Budget.objects.create(agent=agent, tokens=500)
    spent_today(agent, repo, 2_500)
    ready = Bead.objects.create(repository=repo, title="Capped")
    Budget.objects.create(bead=ready, tokens=40_000)
    page = logged_in.get("/hook/").content.decode()
    assert "40,000 of 40,000 tokens left" in page
    assert "7,500 of 10,000 tokens left today" in page
    assert 'data-agent="agent-1"' in page and "budget spent (2,500 of 500)" in page
