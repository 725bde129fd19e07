from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema
from ninja.errors import HttpError

from beads.api import repository_or_404
from beads.models import Bead
from knowledge import inject
from workspace.models import Workspace

router = Router(tags=["knowledge"])


class Injected(Schema):
    id: int
    title: str
    body: str
    tags: list[str]
    repo: str | None
    score: float
    parts: dict[str, float]
    chars: int


class InjectOut(Schema):
    budget: int
    chars: int
    found: int
    learnings: list[Injected]


@router.get("inject", response=InjectOut, summary="Ranked learnings within a budget")
def injected(
    request: HttpRequest,
    bead: str | None = None,
    repo: str | None = None,
    q: str = "",
    budget: int = 8000,
) -> dict[str, Any]:
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
            "parts": i.parts.as_dict(),
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
