"""Each learning's page shows what it is worth: the sessions it was given to
and how they ended, against comparable sessions without it (the same
repository and kind of bead), as first-try landing rates."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Session
from agents.reports.worth import worth
from beads.models import Bead
from knowledge.models import Injection, Learning

pytestmark = pytest.mark.django_db

START = timezone.now() - timedelta(days=1)


def tried(agent, bead, *statuses, given=None):
    """Sessions on `bead`, one after the other, ending as `statuses`; `given`
    the learning injected into each."""
    sessions = []
    for n, status in enumerate(statuses):
        session = Session.objects.create(
            agent=agent, bead=bead, status=status, created_at=START + timedelta(hours=n)
        )
        if given is not None:
            Injection.objects.create(learning=given, session=session, rank=1, chars=10)
        sessions.append(session)
    return sessions


@pytest.fixture
def evidence(make_repo, workspace, agent):
    app, other = make_repo("app"), make_repo("other")
    learning = Learning.objects.create(
        workspace=workspace, title="Jobs name their owner", body="b", status="approved"
    )

    def bead(repo=app, kind="task"):
        return Bead.objects.create(repository=repo, title="t", issue_type=kind)

    tried(agent, bead(), "succeeded", given=learning)  # first try, with it
    tried(agent, bead(), "failed", "succeeded", given=learning)  # landed on the second
    tried(agent, bead(), "running", given=learning)  # not ended: not counted
    tried(agent, bead(), "succeeded")  # comparable, first try
    tried(agent, bead(), "failed")  # comparable
    tried(agent, bead(), "cancelled")  # a person's cancel says nothing of the work
    tried(agent, bead(kind="bug"), "succeeded")  # another kind of bead
    tried(agent, bead(repo=other), "failed")  # another repository
    return learning


def test_first_try_landings_with_and_without_it_in_two_queries(evidence, django_assert_num_queries):
    with django_assert_num_queries(2):
        found = worth(evidence)
    assert (found.given.first_try, found.given.ended, found.given.percent) == (1, 3, 33)
    assert (found.without.first_try, found.without.ended, found.without.percent) == (1, 2, 50)
    assert found.kinds == [("app", "task")]


def test_the_learnings_page_shows_its_worth(evidence, client, viewer):
    client.force_login(viewer)
    page = client.get(evidence.get_absolute_url()).content.decode()
    given = page.split('id="worth-given"')[1].split("</tr>")[0]
    without = page.split('id="worth-without"')[1].split("</tr>")[0]
    assert '<td class="n">3</td>' in given and "1 (33%)" in given
    assert '<td class="n">2</td>' in without and "1 (50%)" in without
    assert "app task" in page


def test_a_learning_never_given_has_no_evidence_yet(client, viewer, workspace):
    learning = Learning.objects.create(workspace=workspace, title="Unused", body="b")
    assert worth(learning).given.percent is None
    client.force_login(viewer)
    page = client.get(learning.get_absolute_url()).content.decode()
    assert "No evidence yet: it has not been given to a session." in page
