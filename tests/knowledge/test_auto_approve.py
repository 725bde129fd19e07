"""A lesson Corral's own gate output taught that recurs on two beads approves
itself, audited; an agent's text, a person's rejection or one bead's retries
never do."""

import pytest

from beads.models import Bead
from knowledge import capture
from knowledge.models import Learning
from tests.factories import CHECK_REFUSAL, refused_by_check
from tests.races import race
from workspace.audit import AuditEntry

pytestmark = pytest.mark.django_db(transaction=True)


def bead(repo, title):
    return Bead.objects.create(repository=repo, title=title, scope=["**"])


def auto_approvals():
    return AuditEntry.objects.filter(action="learning_auto")


def test_the_same_gate_refusal_on_two_beads_approves_the_lesson_and_is_audited(
    repo, agent, rq_redis
):
    refused_by_check(bead(repo, "Report the items"), agent)
    lesson = Learning.objects.get()
    assert lesson.status == "candidate" and not auto_approvals().exists()
    refused_by_check(bead(repo, "Prune the releases"), agent)
    lesson.refresh_from_db()
    assert lesson.status == "approved" and lesson.occurrences == 2
    (entry,) = auto_approvals()
    assert (entry.actor, entry.actor_name, entry.target) == (
        None,
        "corral",
        f"learning #{lesson.pk}",
    )
    assert entry.repository == repo and "the same gate refusal on 2 beads" in entry.detail
    # A third time: already approved, nothing more is recorded.
    refused_by_check(bead(repo, "Rotate the logs"), agent)
    assert auto_approvals().count() == 1


def test_one_beads_own_retries_do_not_approve_its_lesson(repo, agent, rq_redis):
    refused_by_check(bead(repo, "Report the items"), agent, times=2)
    lesson = Learning.objects.get()
    assert lesson.occurrences == 2 and lesson.status == "candidate"
    assert not auto_approvals().exists()


def test_another_gates_refusal_folded_in_is_not_the_same_refusal(repo, agent, rq_redis):
    refused_by_check(bead(repo, "Report the items"), agent)
    other_gate = CHECK_REFUSAL.replace("check gate:", "integration gate:", 1)
    refused_by_check(bead(repo, "Prune the releases"), agent, reason=other_gate)
    lesson = Learning.objects.get()
    assert lesson.occurrences == 2 and lesson.status == "candidate"


def test_a_lesson_an_agent_wrote_first_is_never_approved_by_gates_repeating_it(repo, workspace):
    refusals = [
        {"kind": "refusal", "gate": "check", "fingerprint": "f", "bead": b, "session": s}
        for b, s in (("app-1", "s1"), ("app-2", "s2"))
    ]
    said = Learning.objects.create(
        workspace=workspace,
        repository=repo,
        title="check gate: every job names its owner",
        body="An agent's handoff, saying what the check says.",
        sources=[{"kind": "handoff", "agent": "someone"}, *refusals],
    )
    assert capture.approve_if_recurring(said, "f") is False
    said.refresh_from_db()
    assert said.status == "candidate" and not auto_approvals().exists()
    # The same sources, first seen as a refusal: it approves itself.
    gates = Learning.objects.create(
        workspace=workspace, repository=repo, title="check gate: x", body="x", sources=refusals
    )
    assert capture.approve_if_recurring(gates, "f") is True


def test_a_persons_rejections_are_not_approved_automatically(repo, agent, user, rq_redis):
    from agents.models import Session

    for title in ("Report the items", "Prune the releases"):
        work = bead(repo, title)
        session = Session.objects.create(agent=agent, bead=work)
        capture.from_rejection(session, "Every job must name its owner.", "alice")
    lesson = Learning.objects.get()
    assert lesson.occurrences == 2 and lesson.status == "candidate"


def test_the_fingerprint_blanks_what_varies_between_two_attempts():
    one = capture.fingerprint("check", "src/invoice.py:12: every module must start with MIT")
    two = capture.fingerprint("check", "src/rates.py:40: every module must start with MIT")
    assert one == two
    assert capture.fingerprint("check", "commit 3f9a2c1d failed") == capture.fingerprint(
        "check", "commit 77be01aa9 failed"
    )
    assert capture.fingerprint("lint", "src/a.py: bad") != capture.fingerprint(
        "check", "src/a.py: bad"
    )
    assert capture.fingerprint("check", "tests failed") != capture.fingerprint(
        "check", "build failed"
    )


def approve_if_recurring(pk, print_):
    return capture.approve_if_recurring(Learning.objects.get(pk=pk), print_)


def test_two_sessions_approving_at_once_approve_once_and_write_one_entry(repo, workspace):
    sources = [
        {"kind": "refusal", "gate": "check", "fingerprint": "f", "bead": b, "session": s}
        for b, s in (("app-1", "s1"), ("app-2", "s2"))
    ]
    lesson = Learning.objects.create(
        workspace=workspace, repository=repo, title="check gate: x", body="x", sources=sources
    )
    results = race(approve_if_recurring, [(lesson.pk, "f")] * 3)
    assert sorted(results) == [False, False, True]
    lesson.refresh_from_db()
    assert lesson.status == "approved" and auto_approvals().count() == 1
    assert approve_if_recurring(lesson.pk, "f") is False  # idempotent
    assert auto_approvals().count() == 1
