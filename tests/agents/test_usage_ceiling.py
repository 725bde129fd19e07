"""A usage report above a plausible ceiling is refused (it cannot spend a
repository's day for everyone), and claims through the API respect the daily
budgets as dispatch does."""

import pytest

from agents.models import Session
from agents.models.budgets import Budget
from agents.models.usage import Counts, TokenUsage
from agents.reports import budgets
from beads.models import Bead
from tests.agents.test_api import new_agent

pytestmark = pytest.mark.django_db(transaction=True)


def spent_today(agent, repo, tokens):
    bead = Bead.objects.create(repository=repo, title="Earlier", status="closed")
    session = Session.objects.create(agent=agent, bead=bead, status="succeeded")
    TokenUsage.put(session.pk, "codex", "gpt-5", Counts(input=tokens))


def live_session(repo):
    agent, client = new_agent("reporter")
    Bead.objects.create(repository=repo, title="Work", scope=["src/**"])
    session = client.post("claim", {"repo": repo.slug}).json()["session"]
    return agent, client, session


def test_a_report_of_a_trillion_tokens_is_422_and_spends_nothing(repo):
    Budget.objects.create(repository=repo, tokens=10_000_000)
    _, client, session = live_session(repo)

    response = client.post(f"sessions/{session}/usage", {"input": 10**12, "output": 5})

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "50,000,000" in detail and "CORRAL_USAGE_REPORT_MAX_TOKENS" in detail, detail
    assert not TokenUsage.objects.filter(session_id=session).exists()
    assert budgets.spent_repositories() == set()


def test_the_ceiling_is_a_setting_and_counts_each_kind_and_the_budgeted_sum(repo, settings):
    settings.USAGE_REPORT_MAX_TOKENS = 1000
    _, client, session = live_session(repo)
    url = f"sessions/{session}/usage"
    assert client.post(url, {"input": 400, "output": 300, "cache_write": 300}).status_code == 200
    assert client.post(url, {"input": 400, "output": 300, "cache_write": 301}).status_code == 422
    assert client.post(url, {"cache_read": 1001}).status_code == 422
    assert client.post(url, {"cache_read": 1000, "input": 1}).status_code == 200
    row = TokenUsage.objects.get(session_id=session)
    assert (row.input, row.output, row.cache_read, row.cache_write) == (401, 300, 1000, 300)


def test_a_claim_into_a_repository_whose_day_is_spent_is_refused_with_the_reason(repo, agent):
    Budget.objects.create(repository=repo, tokens=100)
    spent_today(agent, repo, 100)
    Bead.objects.create(repository=repo, title="Ready")
    _, client = new_agent("outside")

    response = client.post("claim", {"repo": repo.slug})

    assert response.status_code == 429
    assert "app" in response.json()["detail"] and "100 of 100" in response.json()["detail"]
    assert not Session.objects.filter(agent__name="outside").exists()


def test_a_claim_of_a_bead_in_a_spent_repository_is_refused(repo, agent):
    Budget.objects.create(repository=repo, tokens=100)
    spent_today(agent, repo, 150)
    bead = Bead.objects.create(repository=repo, title="Ready")
    _, client = new_agent("outside")

    response = client.post("claim", {"bead": bead.pk})

    assert response.status_code == 429 and "budget" in response.json()["detail"]
    bead.refresh_from_db()
    assert bead.status == "open"


def test_a_claim_by_an_agent_whose_day_is_spent_is_refused(repo):
    outside, client = new_agent("outside")
    Budget.objects.create(agent=outside, tokens=500)
    spent_today(outside, repo, 500)
    Bead.objects.create(repository=repo, title="Ready")

    response = client.post("claim", {})

    assert response.status_code == 429
    assert "outside" in response.json()["detail"] and "500 of 500" in response.json()["detail"]


def test_a_claim_anywhere_passes_over_spent_repositories(make_repo, agent):
    spent, other = make_repo("spent"), make_repo("other")
    Budget.objects.create(repository=spent, tokens=100)
    spent_today(agent, spent, 100)
    in_spent = Bead.objects.create(repository=spent, title="Over budget", priority=0)
    in_other = Bead.objects.create(repository=other, title="Fine", priority=4)
    _, client = new_agent("outside")

    first = client.post("claim", {})
    assert first.status_code == 200 and first.json()["bead"]["id"] == in_other.pk
    second = client.post("claim", {})
    assert second.status_code == 429 and "spent" in second.json()["detail"]
    in_spent.refresh_from_db()
    assert in_spent.status == "open"


def test_a_claim_within_the_budget_is_made(repo, agent):
    Budget.objects.create(repository=repo, tokens=1000)
    spent_today(agent, repo, 999)
    bead = Bead.objects.create(repository=repo, title="Ready")
    _, client = new_agent("outside")
    assert client.post("claim", {"repo": repo.slug}).json()["bead"]["id"] == bead.pk
