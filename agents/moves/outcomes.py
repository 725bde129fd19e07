"""What the lead's and the reviewers' verdicts do across tables: a landing
(submission, session, bead, parent epics, plans, learnings' credit), a
refusal, a person's review, a bead's revert. Each is one transaction whose
follow-up jobs are enqueued once it commits.
"""

from collections.abc import Sequence
from typing import Any

from django.db import transaction

from agents import queues
from agents.models import (
    AlreadyApproved,
    GateResult,
    RevertRequest,
    ReviewComment,
    Session,
    Submission,
)
from beads import moves
from beads.models import Bead
from knowledge import capture, feedback
from workspace.scrub import scrub


def land(submission: Submission, sha: str) -> None:
    """The lead committed `sha`: the submission, session and bead are done,
    the learnings it was given get credit, a parent epic whose last child this
    was closes, and its dependents may now be ready."""
    land_many([(submission, sha)])


def land_many(landed: Sequence[tuple[Submission, str]], results: Sequence[GateResult] = ()) -> None:
    """The lead moved the branch once for these commits (a train, one commit per
    bead): each lands as land() says, all in one transaction with the gate
    results that let them through, with one ask for a push and one for a
    dispatch. The rows move together, a fixed number of queries for the whole
    train (see land_rows)."""
    if not landed:
        return
    repo = landed[0][0].repository
    with transaction.atomic():
        GateResult.objects.bulk_create(results)
        if not land_rows(landed):
            return
        if repo.push and repo.upstream and not repo.lands_via_pr:  # pr: it follows the upstream
            queues.after_commit(lambda: queues.enqueue_push(repo))
        queues.enqueue_dispatch()


def land_rows(landed: Sequence[tuple[Submission, str]]) -> list[Submission]:
    """The submissions committed, their sessions succeeded, their beads closed,
    and what follows from that; the submissions that moved (a submission
    done with meanwhile does not). Each step is one move or query for all."""
    shas = {submission.pk: sha for submission, sha in landed}
    committed = Submission.commit_all([submission for submission, _ in landed], shas)
    if not committed:
        return []
    beads = [submission.bead for submission in committed]
    Bead.land_all(beads, {s.bead_id: shas[s.pk] for s in committed})
    sessions = [submission.session for submission in committed]
    Session.move_many("succeed", sessions)
    feedback.settle_all(sessions, landed=True)
    moves.closed_after(beads)
    return committed


def refuse(submission: Submission, status: str, reason: str) -> bool:
    """The lead turns a submission down (a gate, a conflict, a failure): the
    session failed after all and the bead goes back to the hook. The reason
    quotes gate output (a check's, from the agent's code): its secrets are
    scrubbed before it is stored where the next session and pages read it."""
    reason = scrub(reason)
    with transaction.atomic():
        if not submission.refuse(status, reason):
            return False
        failed_after_all(submission, reason)
    return True


def propose(submission: Submission, sha: str, results: Sequence[GateResult] = ()) -> bool:
    """Pull-request mode: the lead pushed the bead's commit `sha` to `corral/<bead>`
    on the upstream; the submission waits on the forge (its request opened, its
    checks and merge followed by agents/jobs/forge.py's poll)."""
    with transaction.atomic():
        GateResult.objects.bulk_create(results)
        if not submission.propose(sha):
            return False
        queues.enqueue_forge_poll_on_commit(submission.repository)
    return True


def withdraw(submission: Submission, reason: str) -> bool:
    """Its request was closed without a merge (the reviewers' words in `reason`),
    or the forge's checks failed: the bead goes back to the hook with the
    reason, which the next session's context pack carries."""
    reason = scrub(reason)
    with transaction.atomic():
        if not submission.withdraw(reason):
            return False
        failed_after_all(submission, reason)
    return True


def failed_after_all(submission: Submission, reason: str) -> None:
    """A refused or withdrawn submission, in its move's transaction: its session
    failed, its bead goes back to the hook with `reason` (a lesson may be
    learned from it), and the hook is dispatched again."""
    submission.session.fail_submission(reason)
    submission.bead.fail_attempt(reason)
    feedback.settle(submission.session, landed=False)
    capture.from_refusal(submission.session, reason)
    queues.enqueue_dispatch()


class ReviewRefused(Exception):
    """This person may not decide on this submission; the message says why."""


def reviews_own_bead(submission: Submission, user: Any) -> bool:
    """The repository wants review by another person, and `user` filed the bead."""
    filed_by = submission.bead.filed_by_id
    return (
        submission.repository.review_by_other
        and filed_by is not None
        and filed_by == getattr(user, "pk", None)
    )


def review(submission: Submission, user: Any, approve: bool, reason: str = "") -> bool:
    """A person's decision on a submission awaiting review; False if it was not
    waiting. Raises ReviewRefused when the repository wants someone other than
    the bead's filer to review it and `user` filed it, or when `user` approved
    it already and its rules want a second person. An approval that leaves it
    waiting for another person returns True with its status still
    awaiting_review (`submission.approvals` counts them)."""
    if reviews_own_bead(submission, user):
        raise ReviewRefused(
            f"You filed {submission.bead_id}, and {submission.repository.name} wants its "
            "work reviewed by another person: ask another operator to approve or reject it."
        )
    with transaction.atomic():
        if approve:
            try:
                if not submission.approve(user):
                    return False
            except AlreadyApproved:
                raise ReviewRefused(
                    "You approved this submission already: its rules want a second person."
                ) from None
            if submission.status == Submission.Status.APPROVED:
                queues.enqueue_drain_on_commit(submission.repository)
            return True
        if not submission.reject(user, reason or f"Rejected by {user}."):
            return False
        submission.session.fail_submission(submission.reason)
        submission.bead.fail_attempt(submission.reason)
        feedback.settle(submission.session, landed=False)
        capture.from_rejection(submission.session, reason, str(user))
        queues.enqueue_dispatch()
    return True


def refuse_own_bead(submission: Submission, user: Any) -> None:
    """ReviewRefused when the repository wants another reviewer and `user` filed the bead."""
    if reviews_own_bead(submission, user):
        raise ReviewRefused(
            f"You filed {submission.bead_id}, and {submission.repository.name} wants its "
            "work reviewed by another person: ask another operator to review it."
        )


def comment(
    submission: Submission, user: Any, path: str, line: int, side: str, line_text: str, text: str
) -> ReviewComment | None:
    """A person's comment on a line of a submission awaiting review; None once it
    is decided on (a comment then would reach no one). The view checks the line
    is one the diff shows."""
    refuse_own_bead(submission, user)
    with transaction.atomic():
        # Locks the row against a decision made meanwhile: a comment is either in
        # before the verdict (and goes with it) or refused.
        waiting = Submission.objects.select_for_update().filter(
            pk=submission.pk, status=Submission.Status.AWAITING_REVIEW
        )
        if not waiting.exists():
            return None
        return ReviewComment.objects.create(
            submission=submission,
            path=path,
            line=line,
            side=side,
            line_text=line_text,
            text=text,
            author=user,
        )


def changes_reason(user: Any, note: str, comments: Sequence[ReviewComment]) -> str:
    head = f"Changes requested by {user}" + (f": {note}" if note else ".")
    if not comments:
        return head
    listed = "\n".join(f"- {c.path} line {c.line}: {c.text.strip()}" for c in comments)
    return f"{head}\n\n{listed}"


def request_changes(submission: Submission, user: Any, note: str = "") -> bool:
    """A person sends a submission awaiting review back for another try: the
    bead returns to the hook (an attempt counted, as a rejection does, but never
    blocked for it: a person asked for the next try), and its next session is
    given the line comments (ReviewComment.pending_for). False if it was not
    waiting; ReviewRefused for the bead's filer under review_by_other, or when
    there is nothing to say (no comment and no note)."""
    refuse_own_bead(submission, user)
    with transaction.atomic():
        # The row locked first: a comment being added waits, so the reason lists them all.
        locked = Submission.objects.select_for_update().filter(pk=submission.pk)
        if not locked.filter(status=Submission.Status.AWAITING_REVIEW).exists():
            submission.refresh_from_db(fields=["status"])
            return False
        comments = list(submission.review_comments.order_by("path", "line", "pk"))
        if not comments and not note:
            raise ReviewRefused("Say what to change: comment on a line, or give a note.")
        if not submission.request_changes(user, changes_reason(user, note, comments)):
            return False
        submission.session.fail_submission(submission.reason)
        submission.bead.send_back(submission.reason)
        feedback.settle(submission.session, landed=False)
        queues.enqueue_dispatch()
    return True


def request_bead_revert(bead: Bead) -> bool:
    """Ask the lead to revert a closed bead's commit; False if there is none.
    The request is written first and its job enqueued once it commits: a job
    lost with Redis, or with a lead killed holding it, is enqueued again by
    reconcile() while the request waits. Asked twice, it is one request."""
    if bead.status != Bead.Status.CLOSED or not bead.commit_sha:
        return False
    with transaction.atomic():
        RevertRequest.ask(bead=bead)
        queues.enqueue_revert(bead.repository, bead.pk)
    return True


def bead_reverted(bead: Bead, revert_sha: str) -> bool:
    """The lead landed the revert: the bead is open again and may be claimed,
    and its revert request is done (together: a crash leaves both or neither)."""
    with transaction.atomic():
        if not bead.revert_landed(revert_sha):
            return False
        RevertRequest.finish_for(bead=bead)
        queues.enqueue_dispatch()
    return True
