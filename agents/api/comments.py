"""Comments through the API: an agent comments on the bead of its own live
session; anyone who may read the API reads a bead's comments."""

from datetime import datetime
from uuid import UUID

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

from agents.api.sessions import Strict, own_session
from agents.models import Session
from beads.api import Text, field_errors, in_reach
from beads.models import Bead, Comment

router = Router(tags=["comments"])


class CommentIn(Strict):
    text: Text = Field(..., min_length=1, max_length=Comment.MAX_CHARS)


class CommentOut(Schema):
    id: int
    bead: str = Field(..., alias="bead_id")
    author: str
    text: str
    created_at: datetime


@router.post(
    "sessions/{session_id}/comments",
    response={201: CommentOut},
    summary="Comment on the session's bead",
)
def comment(request: HttpRequest, session_id: UUID, data: CommentIn) -> Status[Comment]:
    session = own_session(request, session_id)
    if session.status not in Session.LIVE:
        raise HttpError(409, f"The session is {session.status}.")
    try:
        made = Comment.add(session.bead, data.text, agent=session.agent.name)
    except ValidationError as e:
        raise HttpError(422, field_errors(e)) from None
    return Status(201, made)


@router.get("beads/{bead_id}/comments", response=list[CommentOut], summary="A bead's comments")
def comments(request: HttpRequest, bead_id: str) -> list[Comment]:
    bead = get_object_or_404(in_reach(request, Bead.objects.all()), pk=bead_id)
    return list(bead.comments.select_related("person"))
