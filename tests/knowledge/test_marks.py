"""Marks: one per agent per learning (a second is a 409 with the reason), and
a learning is retired only on harmful marks from two different agents or from
a person, never by one agent alone however many sessions it was given it in."""

import pytest

from agents.models import Agent, Session
from beads.models import Bead
from knowledge import feedback
from knowledge.models import Injection, Learning
from tests.agents.test_api import new_agent
from tests.races import race


def a_learning(workspace, **fields):
    fields.setdefault("status", "approved")
    return Learning.objects.create(workspace=workspace, title="Tip", body="Do it so.", **fields)


def given_in_sessions(learning, agent, repo, count):
    """`count` sessions of the agent, each given the learning; their ids."""
    sessions = []
    for n in range(count):
        bead = Bead.objects.create(repository=repo, title=f"work {agent.name} {n}")
        session = Session.objects.create(
            agent=agent, bead=bead, status="running", base_sha="0" * 40
        )
        Injection.objects.create(learning=learning, session=session, rank=1, chars=10)
        sessions.append(str(session.pk))
    return sessions


def mark(api, learning, helpful, session):
    return api.post(
        f"learnings/{learning.pk}/feedback",
        {"helpful": helpful, "reason": "it misled me", "session": session},
    )


@pytest.mark.django_db(transaction=True)
def test_one_agent_cannot_retire_a_learning_by_marking_it_in_three_sessions(repo, workspace):
    agent, api = new_agent("hostile")
    learning = a_learning(workspace)
    sessions = given_in_sessions(learning, agent, repo, 3)
    assert mark(api, learning, False, sessions[0]).status_code == 200
    for session in sessions[1:]:
        again = mark(api, learning, False, session)
        assert again.status_code == 409
        assert "marked it already" in again.json()["detail"]
        assert "one mark per agent" in again.json()["detail"]
    learning.refresh_from_db()
    assert (learning.status, learning.harmful) == ("approved", 1)


@pytest.mark.django_db(transaction=True)
def test_a_helpful_mark_counts_once_per_agent_too(repo, workspace):
    agent, api = new_agent("booster")
    learning = a_learning(workspace)
    sessions = given_in_sessions(learning, agent, repo, 2)
    assert mark(api, learning, True, sessions[0]).json()["helpful"] == 1
    assert mark(api, learning, True, sessions[1]).status_code == 409
    learning.refresh_from_db()
    assert learning.helpful == 1


@pytest.mark.django_db(transaction=True)
def test_harmful_marks_from_two_agents_retire_it(repo, workspace):
    learning = a_learning(workspace)
    first, first_api = new_agent("first")
    second, second_api = new_agent("second")
    assert mark(first_api, learning, False, given_in_sessions(learning, first, repo, 1)[0])
    learning.refresh_from_db()
    assert learning.status == "approved"
    answer = mark(second_api, learning, False, given_in_sessions(learning, second, repo, 1)[0])
    assert answer.status_code == 200 and answer.json()["status"] == "retired"
    assert "2 agents" in answer.json()["retired_reason"]


@pytest.mark.django_db
def test_a_persons_harmful_mark_on_the_knowledge_page_retires_it(workspace, logged_in, user):
    learning = a_learning(workspace)
    page = logged_in.post(f"/knowledge/{learning.pk}/harmful", {"reason": "wrong"}, follow=True)
    assert "It kept hurting: retired." in page.content.decode()
    learning.refresh_from_db()
    assert learning.status == "retired" and "alice" in learning.retired_reason
    assert learning.marks.get().person == user


@pytest.mark.django_db
def test_one_agents_harmful_mark_and_a_helpful_outcome_keep_it(repo, workspace):
    agent, _ = new_agent("lonely")
    learning = a_learning(workspace, helpful=2)
    given_in_sessions(learning, agent, repo, 1)
    assert feedback.mark_by_agent(learning, agent, helpful=False, why="meh") is False
    learning.refresh_from_db()
    assert learning.status == "approved"


def mark_in(agent_pk, learning_pk, session_pk):
    agent = Agent.objects.get(pk=agent_pk)
    session = Session.objects.get(pk=session_pk)
    try:
        feedback.mark_by_agent(
            Learning.objects.get(pk=learning_pk), agent, False, "at once", session
        )
    except feedback.MarkedAlready:
        return "refused"
    return "counted"


@pytest.mark.django_db(transaction=True)
def test_one_agent_marking_from_two_sessions_at_once_counts_once(repo, workspace):
    agent, _ = new_agent("racer")
    learning = a_learning(workspace)
    sessions = given_in_sessions(learning, agent, repo, 2)
    results = race(mark_in, [(agent.pk, learning.pk, s) for s in sessions])
    assert sorted(results) == ["counted", "refused"]
    learning.refresh_from_db()
    assert (learning.harmful, learning.status) == (1, "approved")
    assert learning.marks.filter(agent=agent).count() == 1
