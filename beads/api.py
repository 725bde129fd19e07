import json
from datetime import datetime
from typing import Annotated, Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema
from ninja.errors import HttpError
from ninja.responses import NinjaJSONEncoder
from pydantic import AliasChoices, ConfigDict

from beads import hook
from beads.models import Bead
from workspace.models import Repository

router = Router(tags=["beads"])
MAX_LIMIT = 500


class BeadOut(Schema):
    id: str
    # A bead's repository's slug; the hook's rows (hook.ready_rows) carry it as `repo`.
    repo: str = Field(..., validation_alias=AliasChoices("repo", "repository.slug"))
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


# Text an agent or a person writes: no C0 control character (a NUL cannot be
# stored in PostgreSQL nor put in a commit message); multi-line text keeps tab,
# newline and carriage return. Declared as patterns, so the OpenAPI document
# says so and a violation is a 422 naming the field.
Line = Annotated[str, Field(pattern=r"^[^\x00-\x1f]*$")]
Text = Annotated[str, Field(pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f]*$")]


class BeadIn(Schema):
    model_config = ConfigDict(extra="forbid")

    repo: str | None = Field(None, description="repository slug; defaults to discovered_from's")
    title: Line = Field(..., min_length=1, max_length=500)
    description: Text = ""
    design: Text = ""
    acceptance_criteria: Text = ""
    notes: Text = ""
    priority: int = Field(2, ge=0, le=4)
    issue_type: Bead.Type = Bead.Type.TASK
    labels: list[Line] = []
    scope: list[Line] = Field(
        [],
        description="gitignore-style patterns; an agent's must lie within discovered_from's scope",
    )
    discovered_from: str | None = Field(
        None,
        description="the bead whose work found this one (an agent: a bead it holds a live "
        "session on; the new bead goes to that bead's repository)",
    )


def repository_or_404(slug: str | None) -> Repository | None:
    if slug is None:
        return None
    return get_object_or_404(Repository, slug=slug)


def limit_of(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise HttpError(422, f"limit must be between 1 and {MAX_LIMIT}")
    return limit


@router.get("ready", response=list[BeadOut], summary="Ready beads, in hook order")
def ready(request: HttpRequest, repo: str | None = None, limit: int = 50) -> HttpResponse:
    repository = repository_or_404(repo)
    return rendered(hook.ready_rows(limit_of(limit), repository=repository))


def rendered(rows: list[dict[str, Any]]) -> HttpResponse:
    """The hook's rows as ninja would render them as BeadOut. They are BeadOut's
    fields already, in order and typed, read by our own SQL: validating each
    again was half of the hook's Python (tests/beads/test_ready_api.py holds
    the two the same)."""
    body = json.dumps(rows, cls=NinjaJSONEncoder)
    return HttpResponse(body, content_type="application/json; charset=utf-8")


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


# `GET beads/{id}` and `POST beads` are declared on this router in agents/api.py:
# what a bead shows and who may file one depend on the caller's sessions.


def with_dependencies(bead: Bead) -> Bead:
    """The bead with what BeadDetail lists of its dependencies."""
    dependencies = bead.dependencies.select_related("depends_on")
    # Only DependencyOut's columns, not every column of every bead depended on.
    bead.dependency_list = list(dependencies.only("type", "depends_on", "depends_on__status"))
    return bead


def field_errors(error: ValidationError) -> str:
    """A model's validation errors as one line naming each field."""
    if not hasattr(error, "error_dict"):
        return "; ".join(error.messages)
    return "; ".join(
        f"{name}: {' '.join(messages)}" if name != NON_FIELD_ERRORS else " ".join(messages)
        for name, messages in error.message_dict.items()
    )
