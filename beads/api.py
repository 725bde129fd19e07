from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict

from beads import hook
from beads.models import Bead, Dependency
from workspace.models import Repository

router = Router(tags=["beads"])
MAX_LIMIT = 500
# What BeadOut shows: a list need not fetch descriptions and notes.
LIST_FIELDS = [
    "id",
    "repository__slug",
    "title",
    "status",
    "priority",
    "issue_type",
    "labels",
    "scope",
    "assignee",
    "attempts",
    "created_at",
]


class BeadOut(Schema):
    id: str
    repo: str = Field(..., alias="repository.slug")
    title: str
    status: str
    priority: int
    issue_type: str
    labels: list[str]
    scope: list[str]
    assignee: str
    attempts: int
    created_at: datetime


class DependencyOut(Schema):
    depends_on: str = Field(..., alias="depends_on_id")
    type: str
    status: str = Field(..., alias="depends_on.status")


class BeadDetail(BeadOut):
    description: str
    design: str
    acceptance_criteria: str
    notes: str
    last_failure: str
    commit_sha: str
    closed_at: datetime | None
    close_reason: str
    dependencies: list[DependencyOut] = Field(..., alias="dependency_list")


class BeadIn(Schema):
    model_config = ConfigDict(extra="forbid")

    repo: str | None = Field(None, description="repository slug; defaults to discovered_from's")
    title: str = Field(..., min_length=1, max_length=500)
    description: str = ""
    design: str = ""
    acceptance_criteria: str = ""
    notes: str = ""
    priority: int = Field(2, ge=0, le=4)
    issue_type: Bead.Type = Bead.Type.TASK
    labels: list[str] = []
    scope: list[str] = []
    discovered_from: str | None = Field(None, description="the bead whose work found this one")


def repository_or_404(slug: str | None) -> Repository | None:
    if slug is None:
        return None
    return get_object_or_404(Repository, slug=slug)


def limit_of(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise HttpError(422, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


@router.get("ready", response=list[BeadOut], summary="Ready beads, in hook order")
def ready(request: HttpRequest, repo: str | None = None, limit: int = 50) -> list[Bead]:
    repository = repository_or_404(repo)
    return hook.first_ready(limit_of(limit), fields=LIST_FIELDS, repository=repository)


@router.get("beads", response=list[BeadOut], summary="List beads")
def list_beads(
    request: HttpRequest,
    repo: str | None = None,
    status: Bead.Status | None = None,
    limit: int = 100,
) -> list[Bead]:
    beads = Bead.objects.select_related("repository").order_by("-created_at")
    if repo is not None:
        beads = beads.filter(repository=repository_or_404(repo))
    if status is not None:
        beads = beads.filter(status=status)
    return list(beads[: limit_of(limit)])


@router.get("beads/{bead_id}", response=BeadDetail, summary="Show one bead")
def show_bead(request: HttpRequest, bead_id: str) -> Bead:
    bead = get_object_or_404(Bead.objects.select_related("repository"), pk=bead_id)
    bead.dependency_list = list(bead.dependencies.select_related("depends_on"))
    return bead


@router.post("beads", response={201: BeadDetail}, summary="Create a bead")
def create_bead(request: HttpRequest, data: BeadIn) -> Status[Bead]:
    found = get_object_or_404(Bead, pk=data.discovered_from) if data.discovered_from else None
    repo = repository_or_404(data.repo) or (found.repository if found else None)
    if repo is None:
        raise HttpError(422, "Give repo, or discovered_from to file it beside that bead.")
    fields = data.dict(exclude={"repo", "discovered_from"})
    bead = Bead(repository=repo, **fields)
    try:
        bead.full_clean(exclude=["id"])
    except ValidationError as e:
        raise HttpError(422, "; ".join(e.messages)) from None
    with transaction.atomic():
        bead.save()
        if found:
            Dependency.objects.create(issue=bead, depends_on=found, type="discovered-from")
    bead.dependency_list = list(bead.dependencies.select_related("depends_on"))
    return Status(201, bead)
