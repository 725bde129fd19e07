"""State transitions are conditional UPDATEs: of two racers, exactly one wins."""

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model

from agents.models import (
    Agent,
    ChangeSet,
    ChangeSetMember,
    Delivery,
    JournalStep,
    RevertRequest,
    Session,
    Submission,
)
from beads.models import Bead, Plan
from knowledge.models import Injection, Learning
from tests.races import race
from workspace.models import Repository
from workspace.states import Transitions


@pytest.fixture
def bead(repo):
    return Bead.objects.create(repository=repo, title="Add a feature")


@pytest.fixture
def agent(db):
    return Agent.objects.create(name="a1", preset="shell")


def test_bead_walks_the_happy_path(bead):
    assert bead.start("a1")
    assert bead.submit()
    assert bead.land("abc123")
    bead.refresh_from_db()
    assert (bead.status, bead.commit_sha, bead.assignee) == ("closed", "abc123", "a1")
    assert bead.closed_at is not None


def test_a_move_from_the_wrong_status_loses_and_changes_nothing(bead):
    assert not bead.submit()
    assert not bead.land("abc")
    bead.refresh_from_db()
    assert bead.status == "open" and bead.commit_sha == ""


def test_losing_a_move_reports_the_status_that_won(bead):
    stale = Bead.objects.get(pk=bead.pk)
    assert bead.start("a1")
    assert not stale.start("a2")
    assert stale.status == "in_progress"


def test_send_back_counts_an_attempt_and_keeps_the_reason(bead):
    bead.start("a1")
    assert bead.send_back("timed out after 30 minutes")
    assert (bead.status, bead.attempts, bead.assignee) == ("open", 1, "")
    bead.refresh_from_db()
    assert bead.last_failure == "timed out after 30 minutes"


def test_people_cannot_close_a_bead_a_session_holds(bead):
    bead.start("a1")
    assert not bead.close()
    assert Bead.objects.get(pk=bead.pk).status == "in_progress"


def test_close_reopen_defer_block(bead):
    assert bead.defer() and bead.status == "deferred"
    assert bead.reopen() and bead.status == "open"
    assert bead.block("waits on a vendor") and bead.status == "blocked"
    assert bead.close("won't fix") and bead.close_reason == "won't fix"
    assert bead.reopen()
    bead.refresh_from_db()
    assert bead.status == "open" and bead.closed_at is None


def test_transition_bumps_updated_at(bead):
    before = bead.updated_at
    bead.start("a1")
    bead.refresh_from_db()
    assert bead.updated_at > before


def test_session_lifecycle(bead, agent):
    session = Session.objects.create(agent=agent, bead=bead)
    assert session.queue()
    assert session.start(worker="w1", pid=123)
    assert session.submit("diff --git a/x b/x\nnew file mode 100644\n", "did x")
    assert session.succeed()
    session.refresh_from_db()
    assert session.status == "succeeded" and session.changed_files == ["x"]
    assert not session.end(Session.Status.LOST)


def test_a_finished_session_cannot_be_lost_or_extended(bead, agent):
    session = Session.objects.create(agent=agent, bead=bead)
    assert session.end(Session.Status.TIMED_OUT, "30 minutes")
    assert not session.extend_lease(None)
    assert not session.start()
    with pytest.raises(ValueError):
        session.end(Session.Status.SUCCEEDED)


def test_submission_review_flow(bead, agent, user):
    session = Session.objects.create(agent=agent, bead=bead)
    sub = Submission.objects.create(session=session, repository=bead.repository, bead=bead)
    assert sub.start_checking()
    assert sub.await_review()
    assert not sub.commit("abc")  # waiting for a person: nothing lands
    assert sub.approve(user)
    assert sub.reviewed_by == user and sub.reviewed_at
    assert sub.start_checking()
    assert sub.commit("abc")
    assert not sub.refuse(Submission.Status.CONFLICT, "too late")
    assert not sub.reject(user, "too late")


def test_a_person_can_reject_only_what_waits_for_review(bead, agent, user):
    session = Session.objects.create(agent=agent, bead=bead)
    sub = Submission.objects.create(session=session, repository=bead.repository, bead=bead)
    assert not sub.reject(user, "no")
    assert sub.start_checking() and sub.await_review()
    assert sub.reject(user, "scope is wrong")
    sub.refresh_from_db()
    assert (sub.status, sub.reason, sub.reviewed_by) == ("rejected", "scope is wrong", user)


def claim_bead(bead_id, name):
    return Bead.objects.get(pk=bead_id).start(name)


def end_session(session_id, status):
    return Session.objects.get(pk=session_id).end(status, f"ended as {status}")


def approve_or_reject(submission_id, approve):
    sub = Submission.objects.get(pk=submission_id)
    if approve:
        return sub.approve(get_user_model().objects.get(username="alice"))
    return sub.reject(get_user_model().objects.get(username="alice"), "not like this")


@pytest.mark.django_db(transaction=True)
def test_eight_processes_starting_one_bead_exactly_one_wins(bead):
    results = race(claim_bead, [(bead.pk, f"agent-{i}") for i in range(8)])
    assert sorted(results) == [False] * 7 + [True]
    bead.refresh_from_db()
    assert bead.assignee == f"agent-{results.index(True)}"


@pytest.mark.django_db(transaction=True)
def test_timeout_and_cancel_racing_on_a_session_one_wins(bead, agent):
    session = Session.objects.create(agent=agent, bead=bead, status="running")
    endings = [Session.Status.TIMED_OUT, Session.Status.CANCELLED] * 3
    results = race(end_session, [(session.pk, status) for status in endings])
    assert results.count(True) == 1
    session.refresh_from_db()
    assert session.status == endings[results.index(True)]
    assert session.error == f"ended as {session.status}"


@pytest.mark.django_db(transaction=True)
def test_approve_and_reject_racing_one_wins(bead, agent, user):
    session = Session.objects.create(agent=agent, bead=bead)
    sub = Submission.objects.create(
        session=session, repository=bead.repository, bead=bead, status="awaiting_review"
    )
    results = race(approve_or_reject, [(sub.pk, i % 2 == 0) for i in range(6)])
    assert results.count(True) == 1
    sub.refresh_from_db()
    assert sub.status == ("approved" if results.index(True) % 2 == 0 else "rejected")


# The state machines as DESIGN.md draws them, edge by edge.
DESIGNED = {
    Bead: {
        ("proposed", "open"),  # accept
        ("open", "in_progress"),  # claim
        ("in_progress", "review"),  # submit
        ("review", "closed"),  # commit
        ("in_progress", "open"),  # release, lost, timeout, out of scope
        ("review", "open"),  # rejected, conflict
        ("closed", "open"),  # a revert
    },
    Session: {
        ("claimed", "queued"),
        ("queued", "running"),
        ("claimed", "running"),  # an external agent's first heartbeat or log
        ("running", "submitted"),
        ("submitted", "succeeded"),
        *{(live, end) for live in ("claimed", "queued", "running") for end in Session.ENDINGS},
        # its agent hit a rate limit (an external agent may say so before its first heartbeat)
        *{(live, "paused") for live in ("claimed", "queued", "running")},
    },
    Submission: {
        ("queued", "checking"),
        ("checking", "awaiting_review"),
        ("awaiting_review", "approved"),
        ("awaiting_review", "changes_requested"),  # a person asks for another try
        ("approved", "checking"),  # the lead gates it again after the approval
        ("checking", "committed"),
        ("approved", "committed"),
        *{("checking", end) for end in ("rejected", "conflict", "failed")},
        ("checking", "proposed"),  # pull-request mode: waits on the forge
        ("proposed", "committed"),
        ("proposed", "rejected"),
        ("checking", "held"),  # a change set member waits for its siblings
        ("held", "committed"),
        ("held", "rejected"),  # its change set was refused
        ("held", "queued"),  # its head moved: gated again
        ("committed", "conflict"),  # not pushed yet, it no longer applies on the upstream
    },
    ChangeSet: {
        ("open", "gating"),
        ("gating", "awaiting_review"),
        ("awaiting_review", "gating"),
        ("gating", "landing"),
        ("landing", "landed"),
        *{(s, "open") for s in ("gating", "awaiting_review", "landing")},
        ("open", "refused"),
        ("landed", "reverted"),
    },
    Plan: {("draft", "active"), ("active", "done")},
    Repository: {
        ("following", "diverged"),  # the upstream's history was rewritten
        ("diverged", "rebuilding"),  # an operator chose to rebuild on the upstream
        ("rebuilding", "following"),
    },
    Delivery: {
        ("pending", "sending"),
        ("sending", "delivered"),
        ("sending", "pending"),  # tried again after a wait, or its sender died
        ("sending", "failed"),
    },
    JournalStep: {("planned", "advanced"), ("planned", "undone"), ("advanced", "undone")},
    Injection: {("", "landed"), ("", "refused")},
    ChangeSetMember: {(True, False)},
    RevertRequest: {("pending", "done")},
    Learning: {
        ("candidate", "approved"),
        ("candidate", "retired"),
        ("approved", "retired"),
        ("approved", "candidate"),  # a re-import changed its text: a person looks again
    },
}
# Moves the table allows beyond the drawing, each for a stated reason.
PEOPLE = {("open", "closed"), ("blocked", "closed"), ("deferred", "closed")}
PEOPLE |= {("proposed", "closed")}  # a person declines an agent's proposal
PEOPLE |= {(s, "open") for s in ("blocked", "deferred")}
PEOPLE |= {("open", "deferred"), ("blocked", "deferred"), ("open", "blocked")}
PEOPLE |= {("deferred", "blocked")}
EXTRA = {
    Bead: PEOPLE,
    Session: {
        ("claimed", "submitted"),  # an external agent may submit before any heartbeat
        ("queued", "submitted"),
        ("submitted", "failed"),  # its submission was refused
    },
    Submission: {
        ("awaiting_review", "rejected"),  # a person turns it down
        *{("queued", end) for end in ("rejected", "conflict", "failed")},  # refused unopened
    },
    ChangeSet: set(),
    Plan: set(),
    Repository: set(),
    Delivery: set(),
    JournalStep: set(),
    Injection: set(),
    ChangeSetMember: set(),
    RevertRequest: set(),
    Learning: set(),
}


def states(model):
    field = model._meta.get_field(model.STATE)
    return (
        {True, False}
        if field.get_internal_type() == "BooleanField"
        else set(field.choices and dict(field.choices))
    )


@pytest.mark.parametrize("model", list(DESIGNED), ids=lambda m: m.__name__)
def test_each_moves_table_is_the_designed_state_machine(model):
    edges = model.edges()
    assert DESIGNED[model] <= edges, "a designed move is missing from MOVES"
    assert edges - DESIGNED[model] == EXTRA[model], "MOVES allows an undocumented move"
    assert {s for edge in edges for s in edge} <= states(model)


# The columns that hold where a row is in its life; each has a MOVES table.
STATE_COLUMNS = {"status", "state", "outcome"}
STATE_FLAGS = {(ChangeSetMember, "active")}  # a yes/no state, moved only by its table


def test_every_state_column_is_moved_only_through_a_moves_table():
    for model in apps.get_models():
        for field in model._meta.fields:
            if field.name in STATE_COLUMNS and field.choices or (model, field.name) in STATE_FLAGS:
                assert issubclass(model, Transitions), f"{model.__name__}.{field.name}"
                assert model.STATE == field.name and model.MOVES, f"{model.__name__}.{field.name}"
                assert model in DESIGNED, f"{model.__name__}'s machine is not drawn here"


def take(delivery_id):
    return Delivery.objects.get(pk=delivery_id).take()


@pytest.mark.django_db(transaction=True)
def test_of_senders_racing_for_one_delivery_exactly_one_sends():
    hook = apps.get_model("agents", "Webhook").objects.create(name="h", url="http://127.0.0.1:9/")
    delivery = Delivery.objects.create(webhook=hook, event="plan_done")
    results = race(take, [(delivery.pk,)] * 6)
    assert results.count(True) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("sending", 1)


def test_a_move_not_in_the_table_is_refused(bead):
    assert bead.submit() is False  # open → review is not a move
    bead.refresh_from_db()
    assert bead.status == "open"


def test_a_move_of_many_rows_moves_those_that_may_with_a_value_each(repo):
    beads = [Bead.objects.create(repository=repo, title=f"b{i}") for i in range(3)]
    for bead in beads:
        assert bead.start("a1") and bead.submit()
    stale = Bead.objects.get(pk=beads[1].pk)
    assert stale.send_back("meanwhile")
    shas = {bead.pk: f"sha-{i}" for i, bead in enumerate(beads)}
    won = Bead.move_many("land", beads, each={"commit_sha": shas}, close_reason="committed")
    assert won == [beads[0], beads[2]]
    assert [bead.status for bead in beads] == ["closed", "open", "closed"]  # the loser's read
    assert [b.commit_sha for b in won] == ["sha-0", "sha-2"]
    stored = Bead.objects.in_bulk([bead.pk for bead in beads])
    assert [stored[b.pk].status for b in beads] == ["closed", "open", "closed"]
    assert [stored[b.pk].commit_sha for b in beads] == ["sha-0", "", "sha-2"]
    assert stored[beads[0].pk].close_reason == "committed"


def succeed_many(pks):
    return [s.pk for s in Session.move_many("succeed", list(Session.objects.filter(pk__in=pks)))]


@pytest.mark.django_db(transaction=True)
def test_moves_of_many_rows_racing_move_each_row_once(repo, agent):
    beads = [Bead.objects.create(repository=repo, title=f"b{i}") for i in range(4)]
    pks = [Session.objects.create(agent=agent, bead=b, status="submitted").pk for b in beads]
    results = race(succeed_many, [(pks,), (pks[::-1],), (pks[1:3],), (pks[2:],)])
    assert sorted(pk for won in results for pk in won) == sorted(pks)
    assert set(Session.objects.values_list("status", flat=True)) == {"succeeded"}
