"""The context pack stays within the agent's budget and 40% of its context
window, and says which learnings were cut and why."""

import pytest

from agents.models import Session
from beads.models import Bead
from knowledge import inject
from knowledge.models import Injection, Learning

pytestmark = pytest.mark.django_db


def many_learnings(repo, n, size):
    Learning.objects.bulk_create(
        [
            Learning(
                workspace=repo.workspace,
                repository=repo,
                title=f"Parser rule {i}",
                body=f"parser grammar {i} " + "x" * size,
                status="approved",
            )
            for i in range(n)
        ]
    )


def session_for(repo, agent):
    bead = Bead.objects.create(repository=repo, title="Fix the parser grammar", scope=["src/**"])
    return Session.objects.create(agent=agent, bead=bead, status="running")


def test_the_pack_never_takes_more_than_40_percent_of_the_window(repo, agent):
    agent.context_budget_chars = 1_000_000  # more than a shell agent's 32,000-token window
    agent.save()
    many_learnings(repo, 40, 3000)
    text = inject.render_context(session_for(repo, agent), agent.context_budget_chars)
    assert len(text) <= 0.4 * 32_000 * 4
    assert "left out by the limit (40% of a 32,000-token context window" in text


def test_the_pack_keeps_the_agents_budget_and_names_what_it_cut(repo, agent):
    many_learnings(repo, 10, 400)
    session = session_for(repo, agent)
    text = inject.render_context(session, 2000)
    assert len(text) <= 2000
    given = list(Injection.objects.filter(session=session))
    assert given and all(f"### {i.learning.title}\n" in text for i in given)
    cut = Learning.objects.exclude(injections__session=session)
    assert "left out by the limit (the agent's budget of 2,000 characters)" in text
    assert f"#{cut.order_by('-pk').first().pk} " in text or " more]" in text
    assert all(i.score > 0 for i in given)


def test_a_pack_with_room_for_everything_cuts_nothing(repo, agent):
    many_learnings(repo, 3, 10)
    text = inject.render_context(session_for(repo, agent), 40_000)
    assert "left out" not in text and text.count("### Parser rule") == 3
