"""Outcomes and marks flow back into the learnings that were used: utility,
freshness, maturity, and retirement of one that keeps hurting."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Agent, Submission
from agents.moves import outcomes
from knowledge import feedback
from knowledge.models import Injection, Learning
from tests.agents.test_api import new_agent
from tests.factories import land, run_lead
from tests.races import race

FAILING_CHECK = "python3 -c \"import sys; print('3 tests failed'); sys.exit(1)\""


def a_learning(workspace, **fields):
    fields.setdefault("status", "approved")
    return Learning.objects.create(workspace=workspace, title="Tip", body="Do it so.", **fields)


def given(learning, session, rank=1):
    return Injection.objects.create(learning=learning, session=session, rank=rank, chars=10)


@pytest.mark.django_db(transaction=True)
def test_a_landing_confirms_the_learnings_it_was_given(repo, agent, workspace, rq_redis):
    old = timezone.now() - timedelta(weeks=5)
    learning = a_learning(workspace, confirmed_at=old)
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    given(learning, sub.session)
    run_lead(repo)
    sub.refresh_from_db()
    learning.refresh_from_db()
    assert sub.status == "committed"
    assert learning.utility == pytest.approx(0.55)  # 0.9 × 0.5 + 0.1 × 1
    assert learning.helpful == 1 and learning.confirmed_at > old + timedelta(weeks=4)
    assert Injection.objects.get().outcome == "landed"


@pytest.mark.django_db(transaction=True)
def test_a_refused_submission_pulls_utility_toward_zero(repo, agent, workspace, rq_redis):
    repo.check_command = FAILING_CHECK
    repo.save()
    learning = a_learning(workspace)
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    given(learning, sub.session)
    run_lead(repo)
    learning.refresh_from_db()
    assert learning.utility == pytest.approx(0.45)  # 0.9 × 0.5 + 0.1 × 0
    assert learning.helpful == 0 and learning.harmful == 0
    assert Injection.objects.get().outcome == "refused"


@pytest.mark.django_db(transaction=True)
def test_a_persons_rejection_counts_as_a_bad_outcome(repo, agent, workspace, user, rq_redis):
    repo.review_mode = "human"
    repo.save()
    learning = a_learning(workspace)
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    given(learning, sub.session)
    run_lead(repo)
    sub.refresh_from_db()
    assert outcomes.review(sub, user, approve=False, reason="Wrong approach.")
    learning.refresh_from_db()
    assert learning.utility == pytest.approx(0.45)


@pytest.mark.django_db
def test_an_outcome_counts_once(repo, agent, workspace, rq_redis):
    learning = a_learning(workspace)
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    given(learning, sub.session)
    assert feedback.settle(sub.session, landed=True) == 1
    assert feedback.settle(sub.session, landed=True) == 0
    learning.refresh_from_db()
    assert learning.helpful == 1 and learning.utility == pytest.approx(0.55)


def refuse(submission_pk):
    return outcomes.refuse(Submission.objects.get(pk=submission_pk), "rejected", "check failed")


@pytest.mark.django_db(transaction=True)
def test_two_sessions_refused_at_once_both_count(repo, agent, workspace, rq_redis):
    learning = a_learning(workspace)
    subs = [land(repo, agent, {f"{n}.txt": "1\n"}, title=f"b{n}")[1] for n in range(2)]
    for sub in subs:
        given(learning, sub.session)
    assert race(refuse, [(sub.pk,) for sub in subs]) == [True, True]
    learning.refresh_from_db()
    assert learning.utility == pytest.approx(0.5 * 0.9 * 0.9)
    assert set(Injection.objects.values_list("outcome", flat=True)) == {"refused"}


def mark_harmful(agent_pk, learning_pk):
    agent = Agent.objects.get(pk=agent_pk)
    return feedback.mark_by_agent(
        Learning.objects.get(pk=learning_pk), agent, helpful=False, why="it misled me"
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_marks_made_at_once_all_count_and_retire_it_exactly_once(repo, workspace, rq_redis):
    learning = a_learning(workspace)
    agents = [new_agent(f"agent-{n}")[0] for n in range(4)]
    for n, agent in enumerate(agents):
        _, sub = land(repo, agent, {f"{n}.txt": "1\n"}, title=f"b{n}")
        given(learning, sub.session)
    retired = race(mark_harmful, [(a.pk, learning.pk) for a in agents])
    learning.refresh_from_db()
    assert learning.harmful == 4 and learning.status == "retired"
    assert retired.count(True) == 1
    assert "marked harmful" in learning.retired_reason and "it misled me" in learning.retired_reason


@pytest.mark.django_db(transaction=True)
def test_an_agent_marks_only_a_learning_it_was_given_and_once(repo, workspace, rq_redis):
    agent, api = new_agent("marker")
    learning = a_learning(workspace)
    other = a_learning(workspace)
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    given(learning, sub.session)
    response = api.post(f"learnings/{other.pk}/feedback", {"helpful": True})
    assert response.status_code == 403 and "not injected" in response.json()["detail"]
    response = api.post(
        f"learnings/{learning.pk}/feedback", {"helpful": True, "reason": "saved me"}
    )
    assert response.status_code == 200, response.json()
    assert response.json()["helpful"] == 1 and response.json()["utility"] == pytest.approx(0.55)
    again = api.post(f"learnings/{learning.pk}/feedback", {"helpful": False})
    assert again.status_code == 409 and "marked it already" in again.json()["detail"]
    assert api.post("learnings/999999/feedback", {"helpful": True}).status_code == 404
    assert api.post(f"learnings/{learning.pk}/feedback", {"helpful": "x"}).status_code == 422


@pytest.mark.django_db
def test_harmful_marks_retire_only_when_they_outnumber_helpful_ones(workspace):
    learning = a_learning(workspace, helpful=5)
    for _ in range(3):
        assert feedback.mark(learning, helpful=False, why="wrong") is False
    learning.refresh_from_db()
    assert learning.status == "approved" and learning.harmful == 3
    for _ in range(2):
        feedback.mark(learning, helpful=False, why="still wrong")
    assert feedback.mark(learning, helpful=False, why="very wrong") is True
    learning.refresh_from_db()
    assert learning.status == "retired" and "very wrong" in learning.retired_reason


@pytest.mark.django_db
def test_confirmations_raise_maturity(workspace):
    learning = a_learning(workspace)
    for _ in range(3):
        feedback.mark(learning, helpful=True, why="")
    learning.refresh_from_db()
    assert learning.maturity == "established"
    for _ in range(7):
        feedback.mark(learning, helpful=True, why="")
    learning.refresh_from_db()
    assert learning.maturity == "proven"
