"""UsageDay: the tokens per day, agent, repository and model that the usage
page and /metrics read, kept by every write of a usage row in its own
transaction, idempotent (the same totals again add nothing), by increments
(racing writers all count), and equal to a rebuild from the rows."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Session
from agents.models.usage import Counts, TokenUsage, UsageDay
from beads.models import Bead
from tests.races import race


def days():
    """{(day, agent, repository, model): (the four kinds)}, all-zero days left out."""
    rows = UsageDay.objects.values_list(
        "day", "agent_id", "repository_id", "model", "input", "output", "cache_read", "cache_write"
    )
    return {tuple(r[:4]): tuple(r[4:]) for r in rows if any(r[4:])}


def session_on(repo, agent, opened=None):
    bead = Bead.objects.create(repository=repo, title="Spend")
    return Session.objects.create(
        agent=agent, bead=bead, status="running", created_at=opened or timezone.now()
    )


def test_a_channels_running_total_counts_once_however_often_it_is_put(repo, agent):
    session = session_on(repo, agent)
    today = timezone.localdate(session.created_at)
    key = (today, agent.pk, repo.pk, "m1")
    TokenUsage.put(session.pk, "claude-code", "m1", Counts(input=100, output=10))
    TokenUsage.put(session.pk, "claude-code", "m1", Counts(input=100, output=10))  # again
    assert days() == {key: (100, 10, 0, 0)}
    TokenUsage.put(session.pk, "claude-code", "m1", Counts(input=250, output=30, cache_read=5))
    assert days() == {key: (250, 30, 5, 0)}  # the latest total, not the sum of the puts
    TokenUsage.report(session.pk, "m1", Counts(output=7))  # reported: added
    assert days() == {key: (250, 37, 5, 0)}


def test_tokens_count_on_the_day_their_session_opened(repo, agent):
    opened = timezone.now() - timedelta(days=3)
    session = session_on(repo, agent, opened)
    TokenUsage.put(session.pk, "codex", "m2", Counts(input=4))  # written today
    assert days() == {(timezone.localdate(opened), agent.pk, repo.pk, "m2"): (4, 0, 0, 0)}


def test_a_deleted_session_takes_its_tokens_out_of_its_day(repo, agent):
    kept, gone = session_on(repo, agent), session_on(repo, agent)
    TokenUsage.put(kept.pk, "claude-code", "m1", Counts(input=1))
    TokenUsage.put(gone.pk, "claude-code", "m1", Counts(input=10))
    gone.delete()
    assert list(days().values()) == [(1, 0, 0, 0)]


def test_a_rebuild_from_the_rows_gives_what_the_writes_kept(make_repo, agent):
    app, lib = make_repo("app"), make_repo("lib")
    for n in range(6):
        session = session_on((app, lib)[n % 2], agent, timezone.now() - timedelta(days=n % 3))
        TokenUsage.put(session.pk, "claude-code", f"m{n % 2}", Counts(n, 2 * n, 3, n))
        TokenUsage.report(session.pk, "m9", Counts(input=n + 1))
    kept = days()
    assert len(kept) >= 6
    UsageDay.objects.update(input=0)  # spoilt: rebuild() must not add to what is there
    assert UsageDay.rebuild() >= 6
    assert days() == kept


def report_many(session_id, times):
    for _ in range(times):
        TokenUsage.report(session_id, "gpt-5", Counts(input=10, output=1))


@pytest.mark.django_db(transaction=True)
def test_reports_racing_from_many_processes_all_reach_the_day(repo, agent):
    session = session_on(repo, agent)
    race(report_many, [(session.pk, 5)] * 6)
    assert list(days().values()) == [(6 * 5 * 10, 6 * 5, 0, 0)]
    assert UsageDay.totals_by_model() == TokenUsage.totals_by_model()


def test_deleting_a_repository_with_its_sessions_leaves_no_day_behind(repo, agent):
    session = session_on(repo, agent)
    TokenUsage.put(session.pk, "claude-code", "m1", Counts(input=3))
    repo.delete()  # its beads, their sessions, their usage rows and its days go together
    assert not UsageDay.objects.exists()
