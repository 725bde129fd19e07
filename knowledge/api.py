from uuid import UUID

from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict

from agents.models import Session
from beads.api import repository_or_404
from beads.models import Bead
from knowledge import inject
from knowledge.models import Learning
from workspace.api import may_act_on, the_agent
from workspace.models import Workspace

router = Router(tags=["knowledge"])


class Injected(Schema):
    id: int
    title: str
    body: str
    tags: list[str]
    repo: str | None
    score: float
    chars: int


class InjectOut(Schema):
    budget: int
    chars: int
    found: int
    learnings: list[Injected]


class LearningIn(Schema):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(..., min_length=1, max_length=200)
    body: str = Field(..., min_length=1)
    tags: list[str] = []
    repo: str | None = None
    session: UUID | None = Field(None, description="the session it came from, if any")


class LearningOut(Schema):
    id: int
    title: str
    status: str


@router.get("inject", response=InjectOut, summary="Ranked learnings within a budget")
def injected(
    request, bead: str | None = None, repo: str | None = None, q: str = "", budget: int = 8000
):
    if not 0 < budget <= 1_000_000:
        raise HttpError(422, "budget must be between 1 and 1000000 characters")
    if bead:
        chosen, found = inject.for_bead(get_object_or_404(Bead, pk=bead), budget)
    elif repo or q:
        repository = repository_or_404(repo)
        workspace = repository.workspace if repository else Workspace.default()
        chosen, found = inject.search(workspace, repository, q, budget)
    else:
        raise HttpError(422, "Give bead, or repo and/or q.")
    items = [
        {
            "id": i.learning.pk,
            "title": i.learning.title,
            "body": i.learning.body,
            "tags": i.learning.tags,
            "repo": getattr(i.learning.repository, "slug", None),
            "score": i.score,
            "chars": len(i.text),
        }
        for i in chosen
    ]
    return {
        "budget": budget,
        "chars": sum(i["chars"] for i in items),
        "found": found,
        "learnings": items,
    }


@router.post("learnings", response={201: LearningOut}, summary="Propose a learning")
def propose(request, data: LearningIn):
    agent = the_agent(request)
    session = None
    if data.session:
        session = get_object_or_404(Session, pk=data.session)
        if not may_act_on(agent, session):
            raise HttpError(403, "This session belongs to another agent.")
    repository = repository_or_404(data.repo) or (session.bead.repository if session else None)
    workspace = repository.workspace if repository else Workspace.default()
    learning = Learning.objects.create(
        workspace=workspace,
        repository=repository,
        title=data.title,
        body=data.body,
        tags=data.tags,
        source_session=session,
        source_bead=session.bead if session else None,
    )
    return Status(201, learning)
