"""The beads routes whose answer depends on who asks: list, show (a check's
output only to the bead's own sessions and to people) and file; and people's
edit and close (the same moves as the dashboard's, beads/moves.py).
"""

from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict

from agents.api.auth import the_person
from agents.models import ReviewComment
from agents.moves import filing
from beads import moves
from beads.api import (
    BeadDetail,
    BeadIn,
    BeadOut,
    Line,
    Text,
    field_errors,
    in_reach,
    limit_of,
    repository_in_reach,
    with_dependencies,
)
from beads.models import Bead
from workspace import audit, roles
from workspace.scrub import scrub

router = Router(tags=["beads"])


class ReviewCommentOut(Schema):
    submission: int = Field(..., alias="submission_id")
    path: str
    line: int
    side: str = Field(..., description="new: a line of the candidate; old: a removed line")
    line_text: str = Field(..., description="the line commented on, as the diff showed it")
    text: str
    author: str = Field(..., alias="author_name")
    created_at: datetime


class BeadWithReview(BeadDetail):
    review_comments: list[ReviewCommentOut] = Field(
        ...,
        description="a reviewer's comments on the lines of the last submission, when they "
        "requested changes: what the next session must address (empty otherwise)",
    )


@router.get(
    "beads", response=list[BeadOut], summary="List beads", operation_id="beads_api_list_beads"
)
def list_beads(
    request: HttpRequest,
    repo: str | None = None,
    status: Bead.Status | None = None,
    limit: int = 100,
) -> list[Bead]:
    beads = in_reach(request, Bead.objects.select_related("repository").order_by("-created_at"))
    if repo is not None:
        beads = beads.filter(repository=repository_in_reach(request, repo))
    if status is not None:
        beads = beads.filter(status=status)
    return list(beads[: limit_of(limit)])


def may_see_failure(request: HttpRequest, bead: Bead) -> bool:
    """Why a bead's last attempt failed quotes gate output, which may hold what
    the agent's code printed: only people and the agents working on the bead
    see it."""
    agent = getattr(request, "agent", None)
    if agent is None:
        return bool(request.user.is_authenticated)
    return filing.holds_live_session(agent, bead)


@router.get(
    "beads/{bead_id}",
    response=BeadWithReview,
    summary="Show one bead",
    operation_id="beads_api_show_bead",
)
def show_bead(request: HttpRequest, bead_id: str) -> Bead:
    bead = get_object_or_404(
        in_reach(request, Bead.objects.select_related("repository")), pk=bead_id
    )
    # Scrubbed when stored; again here for rows stored before scrubbing was.
    may_see = may_see_failure(request, bead)
    bead.last_failure = scrub(bead.last_failure) if may_see else ""
    # Like the last failure: what the bead's own sessions are to address.
    bead.review_comments = ReviewComment.pending_for(bead.pk) if may_see else []  # type: ignore[attr-defined]
    return with_dependencies(bead)


@router.post(
    "beads",
    response={201: BeadDetail},
    summary="Create a bead",
    description="A person's bead is open. An agent's must be discovered_from a bead it holds "
    "a live session on; it goes to that bead's repository, its scope must lie within that "
    "bead's, and it is proposed (not ready) until a person accepts it, unless the repository "
    "lets agents file ready beads.",
    operation_id="beads_api_create_bead",
)
def create_bead(request: HttpRequest, data: BeadIn) -> Status[Bead]:
    beads = in_reach(request, Bead.objects.all())
    parent = get_object_or_404(beads, pk=data.discovered_from) if data.discovered_from else None
    repo = repository_in_reach(request, data.repo) or (parent.repository if parent else None)
    if repo is None:
        raise HttpError(422, "Give repo, or discovered_from to file it beside that bead.")
    bead = Bead(repository=repo, **data.dict(exclude={"repo", "discovered_from"}))
    try:
        bead.full_clean(exclude=["id"])
        filing.file_bead(bead, parent, agent=getattr(request, "agent", None), person=request.user)
    except filing.FilingRefused as e:
        raise HttpError(403, str(e)) from None
    except ValidationError as e:
        raise HttpError(422, field_errors(e)) from None
    return Status(201, with_dependencies(bead))


class BeadEdit(Schema):
    """The fields to change; a field left out (or null) keeps its value."""

    model_config = ConfigDict(extra="forbid")

    title: Line | None = Field(None, min_length=1, max_length=500)
    description: Text | None = None
    design: Text | None = None
    acceptance_criteria: Text | None = None
    notes: Text | None = None
    priority: int | None = Field(None, ge=0, le=4)
    issue_type: Bead.Type | None = None
    labels: list[Line] | None = None
    scope: list[Line] | None = None
    waits_for: list[Line] | None = Field(
        None, description="the beads it waits for (blocks), all of them: [] for none"
    )
    parent: Line | None = Field(None, description='the epic it is part of; "" for none')
    updated_at: datetime | None = Field(
        None,
        description="the version you read (a bead's updated_at): refused with 409 if the bead "
        "changed since; left out, the version read now",
    )


LINKS = ("waits_for", "parent", "updated_at")


@router.patch(
    "beads/{bead_id}",
    response=BeadDetail,
    summary="Edit a bead (people)",
    operation_id="beads_api_edit_bead",
)
def edit_bead(request: HttpRequest, bead_id: str, data: BeadEdit) -> Bead:
    person = the_person(request, roles.EDIT_BEADS)
    bead = get_object_or_404(Bead.objects.select_related("repository"), pk=bead_id)
    values = {k: v for k, v in data.dict(exclude=set(LINKS)).items() if v is not None}
    links = links_of(bead, data)
    for name, value in values.items():
        setattr(bead, name, value)
    try:
        bead.full_clean(exclude=["id"])
        saved = moves.edit(bead, data.updated_at or bead.updated_at, values, **links)
    except ValidationError as e:
        raise HttpError(422, field_errors(e)) from None
    except IntegrityError:  # a blocker it already depends on another way (related, …)
        raise HttpError(422, "waits_for: one dependency per pair of beads.") from None
    if not saved:
        now = Bead.objects.get(pk=bead.pk).updated_at.isoformat()
        raise HttpError(409, f"{bead.pk} changed since the version you read (now {now}).")
    changed = ", ".join([*values, *(k for k in LINKS[:2] if k in links)]) or "nothing"
    audit.record(
        audit.Action.BEAD_EDIT,
        bead,
        repository=bead.repository,
        detail=f"edited {changed} through the API",
        actor=person,
    )
    return with_dependencies(Bead.objects.select_related("repository").get(pk=bead.pk))


def links_of(bead: Bead, data: BeadEdit) -> dict[str, Any]:
    """The blockers and parent the edit names, checked (422 naming the field)."""
    links: dict[str, Any] = {}
    if data.waits_for is not None:
        found = Bead.objects.in_bulk(data.waits_for)
        if missing := [b for b in data.waits_for if b not in found]:
            raise HttpError(422, f"waits_for: No such bead: {', '.join(missing)}.")
        if bead.pk in found:
            raise HttpError(422, "waits_for: A bead cannot wait for itself.")
        links["waits_for"] = list(found.values())
    if data.parent is not None:
        parent = Bead.objects.filter(pk=data.parent).first() if data.parent else None
        if data.parent and parent is None:
            raise HttpError(422, f"parent: No such bead: {data.parent}.")
        if parent is not None and parent.pk == bead.pk:
            raise HttpError(422, "parent: A bead cannot be its own parent.")
        if parent is not None and parent.pk in (data.waits_for or []):
            raise HttpError(422, "parent: One dependency per pair: it cannot also be waited for.")
        links["parent"] = parent
    return links


class CloseIn(Schema):
    model_config = ConfigDict(extra="forbid")

    reason: Text = Field("closed through the API", min_length=1, max_length=2000)


@router.post(
    "beads/{bead_id}/close",
    response=BeadDetail,
    summary="Close a bead by hand (people)",
    description="As the dashboard closes one: its epics close up the chain when their last "
    "child has, plans finish, webhooks hear of it. 409 if a session holds it or it is closed.",
)
def close_bead(request: HttpRequest, bead_id: str, data: CloseIn) -> Bead:
    person = the_person(request, roles.EDIT_BEADS)
    bead = get_object_or_404(Bead.objects.select_related("repository"), pk=bead_id)
    if not moves.close(bead, data.reason, by=person, via="the API"):
        raise HttpError(
            409, f"{bead.pk} is {bead.get_status_display().lower()}: it cannot be closed."
        )
    return with_dependencies(bead)
