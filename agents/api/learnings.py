"""Learnings through the API: an agent proposes one, and marks what it was given
helpful or harmful.
"""

from uuid import UUID

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

from agents.api.auth import may_act_on, the_agent
from agents.api.sessions import Strict, own_session
from agents.models import Session
from beads.api import (
    Line,
    Text,
)
from knowledge import capture, feedback
from knowledge.api import working_repository
from knowledge.models import Learning

router = Router(tags=["knowledge"])


class LearningIn(Strict):
    title: Line = Field(..., min_length=1, max_length=200)
    body: Text = Field(..., min_length=1)
    tags: list[Line] = []
    repo: str | None = None
    session: UUID | None = Field(None, description="the session it came from, if any")


class LearningOut(Schema):
    id: int
    title: str
    status: str


@router.post(
    "learnings",
    response={201: LearningOut},
    summary="Propose a learning",
    tags=["knowledge"],
    operation_id="knowledge_api_propose",  # its id from before it moved here
)
def propose(request: HttpRequest, data: LearningIn) -> Status[Learning]:
    agent = the_agent(request)
    session = None
    if data.session:
        session = get_object_or_404(Session, pk=data.session)
        if not may_act_on(agent, session):
            raise HttpError(403, "This session belongs to another agent.")
    # An agent proposes only where it works: a learning reaches other agents' context.
    named = data.repo or (session.bead.repository.slug if session else None)
    repository = working_repository(request, agent, named)
    learning = capture.propose(
        repository.workspace,
        repository,
        data.title,
        data.body,
        tags=data.tags,
        source={"kind": "api", "agent": agent.name},
        session=session,
    )
    return Status(201, learning)


class MarkIn(Strict):
    helpful: bool
    reason: Text = Field("", max_length=2000)
    session: UUID | None = Field(None, description="the session it was given in, if any")


class MarkOut(Schema):
    id: int
    status: str
    utility: float
    helpful: int
    harmful: int
    retired_reason: str


@router.post(
    "learnings/{learning_id}/feedback",
    response=MarkOut,
    summary="Mark a learning you were given helpful or harmful",
    tags=["knowledge"],
)
def mark_learning(request: HttpRequest, learning_id: int, data: MarkIn) -> Learning:
    agent = the_agent(request)
    learning = get_object_or_404(Learning, pk=learning_id)
    session_id = data.session or getattr(agent, "only_session", None)
    session = own_session(request, session_id) if session_id else None
    try:
        feedback.mark_by_agent(learning, agent, data.helpful, data.reason, session)
    except feedback.NotGiven as e:
        raise HttpError(403, str(e)) from None
    except feedback.MarkedAlready as e:
        raise HttpError(409, str(e)) from None
    learning.refresh_from_db()
    return learning
