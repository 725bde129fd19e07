"""What `manage.py up` tells its terminal, read from the rows: each session's
start and end, each landing and refusal, each review and lesson waiting for a
person, told once each; and the sum of it all when it stops."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Session, Submission
from agents.moves import outcomes
from agents.reports.events import LOOKBACK, Feed
from beads.models import Bead
from knowledge.models import Learning
from tests.factories import land, refused_by_check, run_lead

pytestmark = pytest.mark.django_db(transaction=True)

URL = "http://127.0.0.1:8000/"


def texts(feed):
    return [event.text for event in feed.poll()]


def test_a_session_is_told_as_it_starts_and_ends_and_its_work_as_it_lands(repo, agent, rq_redis):
    feed = Feed(URL)
    bead, sub = land(repo, agent, {"src/app.py": "print('hi')\n"}, title="Greet everyone")
    started = feed.since + (sub.session.ended_at - feed.since) / 2  # it ran in between
    Session.objects.filter(pk=sub.session_id).update(started_at=started)
    assert texts(feed) == [
        f"session started: agent-1 on {bead.id} “Greet everyone”",
        f"session ended: agent-1 on {bead.id}, handed in its work",
    ]
    assert texts(feed) == []  # told once
    run_lead(repo)
    bead.refresh_from_db()
    assert texts(feed) == [f"landed {bead.id} as {bead.commit_sha[:10]} in app: “Greet everyone”"]
    assert texts(feed) == []
    assert feed.summary() == "1 bead landed, 0 refused, 0 waiting for review, 1 session run"


def test_a_refusal_is_told_by_the_line_that_says_most_and_its_lesson_as_it_waits(
    repo, agent, rq_redis
):
    feed = Feed(URL)
    bead = Bead.objects.create(repository=repo, title="Report the items", scope=["**"])
    refused_by_check(bead, agent, times=2)
    learning = Learning.objects.get()
    refused = (
        f"refused {bead.id}: check gate: Exit code 1. AssertionError: jobs/report.py: every "
        'module in jobs/ must start with the line "# owner: ops"'
    )
    assert texts(feed) == [
        refused,
        refused,
        f"lesson waiting for approval, learned from {bead.id}'s refusal: {learning.title}: "
        f"http://127.0.0.1:8000/knowledge/{learning.pk}/",
    ]
    assert texts(feed) == []  # still waiting: not told again
    assert feed.summary() == "0 beads landed, 2 refused, 0 waiting for review, 0 sessions run"


def test_a_review_is_told_once_while_it_waits(repo, agent, user, rq_redis):
    repo.review_mode = "human"
    repo.save()
    feed = Feed(URL)
    bead, sub = land(repo, agent, {"a.txt": "1\n"}, title="Change a")
    run_lead(repo)
    waiting = (
        f"review waiting: {bead.id} “Change a” in app: http://127.0.0.1:8000/submissions/{sub.pk}/"
    )
    assert waiting in texts(feed)
    assert texts(feed) == []
    assert "1 waiting for review" in feed.summary()
    assert outcomes.review(sub, user, approve=True)
    run_lead(repo)
    assert [text for text in texts(feed) if text.startswith("landed")] == [
        f"landed {bead.id} as {Bead.objects.get().commit_sha[:10]} in app: “Change a”"
    ]
    assert "0 waiting for review" in feed.summary()


def test_what_happened_before_the_feed_started_is_not_told(repo, agent, rq_redis):
    bead, sub = land(repo, agent, {"a.txt": "1\n"})
    run_lead(repo)
    assert Submission.objects.get().status == "committed"
    feed = Feed(URL)
    assert texts(feed) == []


def test_a_row_committed_late_within_the_lookback_is_still_told(repo, agent, rq_redis):
    feed = Feed(URL, since=timezone.now() - LOOKBACK)
    assert texts(feed) == []
    bead, sub = land(repo, agent, {"a.txt": "1\n"})
    run_lead(repo)
    # Its time is before the last look: a transaction that committed after it.
    Submission.objects.filter(pk=sub.pk).update(finished_at=feed.polled - timedelta(seconds=5))
    assert [text.split(" as ")[0] for text in texts(feed)] == [f"landed {bead.id}"]
