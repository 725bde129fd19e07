"""A bead blocked after its attempts ran out on one lesson gets another try
once a person approves that lesson: the lesson is what its tries were missing."""

import pytest

from beads.models import Bead
from knowledge.models import Learning
from tests.factories import CHECK_REFUSAL, refused_by_check
from workspace.audit import AuditEntry

pytestmark = pytest.mark.django_db


def blocked_on_its_lesson(repo, agent, title="Report the items", reason=CHECK_REFUSAL):
    bead = Bead.objects.create(repository=repo, title=title, scope=["**"])
    refused_by_check(bead, agent, times=3, reason=reason)
    assert (bead.status, bead.attempts) == ("blocked", 3)
    return bead


def approve(client, learning):
    response = client.post(f"/knowledge/{learning.pk}/approve", follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_approving_the_lesson_gives_the_bead_it_blocked_one_more_try(
    logged_in, repo, agent, rq_redis
):
    bead = blocked_on_its_lesson(repo, agent)
    learning = Learning.objects.get()
    page = approve(logged_in, learning)
    assert f"{bead.id}, blocked after its failed attempts, gets another try with it." in page
    bead.refresh_from_db()
    learning.refresh_from_db()
    assert (learning.status, bead.status, bead.attempts) == ("approved", "open", 3)
    entry = AuditEntry.objects.get(target__startswith=bead.id)
    assert entry.detail == f"Reopened through the approval of learning #{learning.pk}"
    assert entry.actor.username == "alice"
    # One more try, not three: refused again, it is blocked again.
    refused_by_check(bead, agent)
    assert (bead.status, bead.attempts) == ("blocked", 4)


def test_every_bead_the_lesson_was_folded_from_gets_its_try(logged_in, repo, agent, rq_redis):
    first = blocked_on_its_lesson(repo, agent, "Report the items")
    # The same output from another gate: the same lesson, folded, but not the
    # same refusal twice, which would approve itself (test_auto_approve.py).
    other_gate = CHECK_REFUSAL.replace("check gate:", "integration gate:", 1)
    second = blocked_on_its_lesson(repo, agent, "Prune the releases", other_gate)
    learning = Learning.objects.get()  # the same words again: one lesson
    assert learning.lesson_beads() == [first.id, second.id]
    page = approve(logged_in, learning)
    assert f"{first.id} and {second.id}, blocked after their failed attempts, get" in page
    assert set(Bead.objects.values_list("status", flat=True)) == {"open"}


def test_a_bead_a_person_blocked_stays_blocked(logged_in, repo, agent, rq_redis):
    bead = Bead.objects.create(repository=repo, title="Report the items", scope=["**"])
    refused_by_check(bead, agent)
    assert bead.block("Waiting for the ops team to name an owner.")
    page = approve(logged_in, Learning.objects.get())
    assert "another try" not in page
    bead.refresh_from_db()
    assert bead.status == "blocked" and bead.last_failure.startswith("Waiting for the ops team")


def test_approving_anything_but_a_candidate_changes_nothing(logged_in, repo, agent, rq_redis):
    bead = blocked_on_its_lesson(repo, agent)
    learning = Learning.objects.get()
    learning.retire("not true")
    page = approve(logged_in, learning)
    assert "Only a candidate can be approved; this one is retired." in page
    bead.refresh_from_db()
    assert bead.status == "blocked"
