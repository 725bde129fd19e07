"""Review for people's scripts: the submissions awaiting a person, and the
decision on one (agents.moves.outcomes.review, as the submission page makes
it: 403 when the repository wants another reviewer, 409 when the
submission is no longer waiting)."""

from datetime import datetime

from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema
from ninja.errors import HttpError
from pydantic import ConfigDict

from agents.api.auth import the_person
from agents.models import Submission
from agents.moves import outcomes
from beads.api import Text, limit_of, repository_or_404
from workspace import audit, roles

router = Router(tags=["reviews"])
VIEW = "agents.view_submission"


class ReviewOut(Schema):
    id: int
    status: str
    bead: str = Field(..., alias="bead_id")
    title: str = Field(..., alias="bead.title")
    repo: str = Field(..., alias="repository.slug")
    agent: str = Field(..., alias="session.agent.name")
    summary: str = Field(..., alias="session.summary")
    changed_files: list[str] = Field(..., alias="session.changed_files")
    queued_at: datetime
    reason: str
    reviewed_by: str

    @staticmethod
    def resolve_reviewed_by(submission: Submission) -> str:
        reviewer = submission.reviewed_by
        return reviewer.get_username() if reviewer is not None else ""


class DecisionIn(Schema):
    model_config = ConfigDict(extra="forbid")

    reason: Text = Field("", max_length=2000, description="why (a rejection's goes to the agent)")


def submissions() -> QuerySet[Submission]:
    return Submission.objects.select_related("bead", "repository", "session__agent", "reviewed_by")


@router.get("reviews", response=list[ReviewOut], summary="Submissions awaiting review")
def awaiting(request: HttpRequest, repo: str | None = None, limit: int = 100) -> list[Submission]:
    """People's: an agent has no business with other agents' submissions."""
    the_person(request, VIEW)
    waiting = submissions().filter(status=Submission.Status.AWAITING_REVIEW)
    if repo is not None:
        waiting = waiting.filter(repository=repository_or_404(repo))
    return list(waiting.order_by("queued_at", "pk")[: limit_of(limit)])


@router.post("reviews/{submission_id}/approve", response=ReviewOut, summary="Approve (people)")
def approve(request: HttpRequest, submission_id: int, data: DecisionIn) -> Submission:
    return decide(request, submission_id, data.reason, approve=True)


@router.post("reviews/{submission_id}/reject", response=ReviewOut, summary="Reject (people)")
def reject(request: HttpRequest, submission_id: int, data: DecisionIn) -> Submission:
    return decide(request, submission_id, data.reason, approve=False)


def decide(request: HttpRequest, submission_id: int, reason: str, approve: bool) -> Submission:
    person = the_person(request, roles.REVIEW)
    submission = get_object_or_404(submissions(), pk=submission_id)
    reason = reason.strip()
    try:
        decided = outcomes.review(submission, person, approve=approve, reason=reason)
    except outcomes.ReviewRefused as refused:
        raise HttpError(403, str(refused)) from None
    if not decided:
        raise HttpError(
            409,
            f"Submission {submission.pk} is no longer waiting for review: it is "
            f"{submission.get_status_display().lower()}.",
        )
    audit.record(
        audit.Action.APPROVE if approve else audit.Action.REJECT,
        submission.bead_id,
        repository=submission.repository,
        detail=f"submission {submission.pk} through the API" + (f": {reason}" if reason else ""),
        actor=person,
    )
    return get_object_or_404(submissions(), pk=submission_id)
