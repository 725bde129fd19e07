"""Lessons are captured where they appear (a gate's refusal, a reviewer's
reason, an agent's handoff) and one seen again is folded, not duplicated."""

import pytest

from agents.models import Session
from agents.moves import lifecycle, outcomes
from beads.models import Bead
from knowledge import capture
from knowledge.models import Learning
from tests.factories import land, make_patch, run_lead

pytestmark = pytest.mark.django_db(transaction=True)

HEADER_CHECK = (
    "python3 -c \"import sys; print('Exit code 1 follows'); "
    "print('src/new.py: every module starts with the line # Licence: MIT'); sys.exit(1)\""
)


def refused_once(repo, agent, name):
    bead, sub = land(repo, agent, {f"src/{name}.py": "x = 1\n"}, title=f"Add {name}")
    run_lead(repo)
    sub.refresh_from_db()
    assert sub.status == "rejected"
    return bead


def test_a_check_refusal_becomes_a_candidate_tied_to_the_bead_and_files(repo, agent, rq_redis):
    repo.check_command = HEADER_CHECK
    repo.save()
    bead = refused_once(repo, agent, "alpha")
    learning = Learning.objects.get()
    assert learning.status == "candidate" and learning.repository == repo
    assert (
        learning.title == "check gate: src/new.py: every module starts with the line # Licence: MIT"
    )
    assert "# Licence: MIT" in learning.body and bead.pk in learning.body
    assert learning.files == ["src/alpha.py"] and learning.tags == ["gate:check"]
    assert learning.source_bead == bead and learning.source_session.bead == bead
    assert learning.sources[0]["kind"] == "refusal" and learning.sources[0]["bead"] == bead.pk


def test_the_same_refusal_again_is_folded_into_the_learning(repo, agent, rq_redis):
    repo.check_command = HEADER_CHECK
    repo.save()
    refused_once(repo, agent, "alpha")
    second = refused_once(repo, agent, "beta")
    learning = Learning.objects.get()
    assert learning.occurrences == 2
    assert [s["bead"] for s in learning.sources][1] == second.pk


def test_a_different_lesson_is_a_new_learning(repo, workspace):
    first = capture.propose(workspace, repo, "Money is Decimal", "Never float for amounts.")
    other = capture.propose(workspace, repo, "Stylesheets are SCSS", "Edit the SCSS sources.")
    assert first != other and Learning.objects.count() == 2


def test_a_conflict_is_not_a_lesson(repo, agent, rq_redis):
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    assert outcomes.refuse(sub, "failed", "The branch kept moving during the commit.")
    assert not Learning.objects.exists()


def test_a_reviewers_reason_becomes_a_candidate(repo, agent, user, rq_redis):
    repo.review_mode = "human"
    repo.save()
    bead, sub = land(repo, agent, {"a.txt": "1\n"})
    run_lead(repo)
    sub.refresh_from_db()
    assert outcomes.review(sub, user, approve=False, reason="Use the settings module for paths.")
    learning = Learning.objects.get()
    assert learning.title == "Review: Use the settings module for paths."
    assert learning.source_bead == bead and learning.sources[0]["reviewer"] == "alice"


def test_a_handoff_learning_that_repeats_an_approved_one_is_folded(repo, agent, rq_redis):
    known = Learning.objects.create(
        workspace=repo.workspace,
        repository=repo,
        title="Run makemigrations after model changes",
        body="Every model change needs its migration.",
        status="approved",
    )
    bead = Bead.objects.create(repository=repo, title="x", scope=["**"])
    base, patch = make_patch(repo, {"a.txt": "1\n"})
    bead.start(agent.name)
    session = Session.objects.create(agent=agent, bead=bead, status="running", base_sha=base)
    learnings = [
        {
            "title": "Run makemigrations after model changes",
            "body": "Every model change needs a migration.",
        }
    ]
    lifecycle.hand_in(session, patch, "done", learnings)
    known.refresh_from_db()
    assert Learning.objects.count() == 1 and known.occurrences == 2
    assert known.sources[-1] == {**known.sources[-1], "kind": "handoff", "bead": bead.pk}


UNITTEST_FAILURE = """Exit code 1.
======================================================================
FAIL: test_every_job_names_its_owner (tests.test_job_owners.JobOwnerTests)
----------------------------------------------------------------------
Traceback (most recent call last):
  File "tests/test_job_owners.py", line 17, in test_every_job_names_its_owner
AssertionError: jobs/a.py: every module in jobs/ must start with the line "# owner: x"
"""


def test_a_refusals_title_is_the_failures_message_not_the_rule_above_it():
    assert capture.headline(UNITTEST_FAILURE) == (
        'AssertionError: jobs/a.py: every module in jobs/ must start with the line "# owner: x"'
    )
    assert capture.headline("Exit code 2.\n=====\nmissing fixture db\n") == "missing fixture db"
