from typing import Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema
from ninja.errors import HttpError

from beads.api import in_reach, repository_in_reach, repository_or_404
from beads.models import Bead
from knowledge import inject
from workspace.models import Repository, Workspace

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
    agent = getattr(request, "agent", None)
    if bead:
        chosen, found = inject.for_bead(bead_to_read(request, agent, bead), budget)
    elif (repo or q) and agent is not None:
        # An agent searches where it works: that repository's learnings and the
        # workspace-wide ones, not every repository's.
        here = working_repository(request, agent, repo)
        chosen, found = inject.search(here.workspace, here, q, budget, only_here=True)
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


# Learnings cross repositories (a context pack ranks every repository's), so
# an agent reads them only for the work it holds: a bead it holds a live
# session on (what its context pack was given), or a search of a repository
# it holds one in. A person reads them all.
NOT_WORKING = (
    "An agent reads and proposes learnings only for the work it holds: you hold no live "
    "session {where}."
)


def bead_to_read(request: HttpRequest, agent: Any, pk: str) -> Bead:
    """The bead whose learnings the caller asks for: 404 if a session token's
    other repository holds it, 403 if an agent holds no live session on it."""
    bead = get_object_or_404(in_reach(request, Bead.objects.select_related("repository")), pk=pk)
    if agent is not None and not agent.live_sessions().filter(bead=bead).exists():
        raise HttpError(403, NOT_WORKING.format(where=f"on {bead.pk}"))
    return bead


def working_repository(request: HttpRequest, agent: Any, slug: str | None) -> Repository:
    """The repository an agent reads or proposes learnings for: the one named
    (404 if a session token's other one), else the only one it works in;
    403 unless it holds a live session there."""
    working = agent.live_repository_ids()
    repository = repository_in_reach(request, slug)
    if repository is None:  # an agent token, no repository named
        if len(working) > 1:
            raise HttpError(422, "You hold live sessions in several repositories: name one (repo).")
        if not working:
            raise HttpError(403, NOT_WORKING.format(where="in any repository"))
        return Repository.objects.get(pk=working[0])
    if repository.pk not in working:
        raise HttpError(403, NOT_WORKING.format(where=f"in {repository.slug}"))
    return repository
