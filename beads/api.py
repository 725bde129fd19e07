import json
from datetime import datetime
from typing import Annotated, Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import QuerySet
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
    updated_at: str = Field(
        ..., description="the bead's version, to its microsecond: give it back to PATCH"
    )
    dependencies: list[DependencyOut] = Field(..., alias="dependency_list")
    not_before: datetime | None = Field(
        ..., description="refused again and again for the same reason: not offered before then"
    )
    waiting: str = Field(..., description="why the hook holds it back now; empty if it does not")

    @staticmethod
    def resolve_waiting(bead: Bead) -> str:
        return bead.waiting()

    @staticmethod
    def resolve_updated_at(bead: Bead) -> str:
        # As text: a JSON datetime keeps milliseconds only, and an edit is
        # conditional on the exact version.
        return bead.updated_at.isoformat()


class WaitingOut(Schema):
    id: str
    repo: str = Field(..., validation_alias=AliasChoices("repo", "repository.slug"))
    title: str
    not_before: datetime | None = Field(
        ..., description="when its back-off ends; null when its repository is held back"
    )
    waiting: str

    @staticmethod
    def resolve_waiting(bead: Bead | dict[str, Any]) -> str:
        return bead["waiting"] if isinstance(bead, dict) else bead.waiting()


# Text an agent or a person writes: no C0 control character (a NUL cannot be
# stored in PostgreSQL nor put in a commit message); multi-line text keeps tab,
# newline and carriage return. A single line refuses what beads.models.CONTROL
# does: DEL, C1, bidirectional controls and Unicode line breaks. Declared as
# patterns, so the OpenAPI document says so and a violation is a 422 naming the field.
Line = Annotated[
    str, Field(pattern=r"^[^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]*$")
]
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


@router.get(
    "ready",
    response=list[BeadOut],
    summary="Ready beads, in hook order",
    description="Beads waiting out a back-off after repeated refusals are not ready: "
    "`GET ready/waiting` lists them, with why and until when.",
)
def ready(request: HttpRequest, repo: str | None = None, limit: int = 50) -> HttpResponse:
    repository = repository_in_reach(request, repo)
    rows = hook.ready_raw(limit_of(limit), repository=repository)
    response = rendered_raw(rows)
    # Nothing ready in a repository held back (too many submissions await review): why.
    if not rows and repository is not None and (why := hook.held_back(repository)):
        response[HELD_HEADER] = why
    return response


HELD_HEADER = "X-Corral-Held"


@router.get(
    "ready/waiting",
    response=list[WaitingOut],
    summary="Beads held back after repeated refusals",
    description="Open beads the hook does not offer yet: refused twice or more in a row for "
    "the same reason, each waits until `not_before` (sooner if someone comments on it, edits "
    "it, approves a learning, or a dependency lands). Soonest first. Then the beads that "
    'would be ready but for their repository being held back ("waiting for review '
    'capacity": more submissions await a person than its limit), `not_before` null.',
)
def waiting(request: HttpRequest, repo: str | None = None, limit: int = 50) -> list[Any]:
    repository = repository_in_reach(request, repo)
    limit = limit_of(limit)
    beads = hook.waiting(repository=repository).select_related("repository")
    found: list[Any] = list(in_reach(request, beads)[:limit])
    return found + held_rows(request, repository, limit - len(found))


def held_rows(request: HttpRequest, repository: Repository | None, limit: int) -> list[Any]:
    """The first beads of the repositories in reach that a hold keeps back, with why."""
    if limit <= 0:
        return []
    repos = Repository.objects.filter(active=True)
    if repository is not None:
        repos = repos.filter(pk=repository.pk)
    if (only := only_repository(request)) is not None:
        repos = repos.filter(pk=only)
    held = hook.held_repositories(list(repos))
    if not held:
        return []
    rows = hook.ready_rows(limit, repositories=list(held), holds=False)
    by_slug = {r.slug: r.pk for r in repos if r.pk in held}
    return [{**row, "not_before": None, "waiting": held[by_slug[row["repo"]]]} for row in rows]


ENCODE = NinjaJSONEncoder().default  # a datetime as ninja writes it
JSON_FIELDS = {"labels", "scope"}


def rendered_raw(rows: list[Any]) -> HttpResponse:
    """The hook's raw rows (hook.ready_raw) as ninja would render them as BeadOut.
    They are BeadOut's fields already, in order and typed, read by our own SQL:
    validating each again was half of the hook's Python, and parsing the JSON
    columns to write them again most of the rest, so each field is written
    here, the JSON columns' text as the database keeps it (Django's and
    PostgreSQL's is what json.dumps writes, for ASCII). tests/beads/
    test_ready_api.py holds the bytes to ninja's own rendering."""
    items = []
    for row in rows:
        fields = []
        for key, value in zip(hook.READY_FIELDS, row, strict=True):
            if key in JSON_FIELDS:
                text = value if isinstance(value, str) and value.isascii() else None
                if text is None:
                    text = json.dumps(json.loads(value) if isinstance(value, str) else value)
            elif key == "created_at":
                text = json.dumps(ENCODE(hook.aware(value)))
            else:
                text = json.dumps(value)
            fields.append(f'"{key}": {text}')
        items.append("{" + ", ".join(fields) + "}")
    body = "[" + ", ".join(items) + "]"
    return HttpResponse(body, content_type="application/json; charset=utf-8")


# `GET beads`, `GET beads/{id}` and `POST beads` are agents/api/beads.py's routes:
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


# What a token reaches. agents/auth.py (a layer above) sets `request.agent`;
# a session token's agent carries `only_repository`, its session's: it reaches
# that repository only, and anything of another is a 404, as if not there.


def only_repository(request: HttpRequest) -> int | None:
    """The one repository a session token reaches; None for an agent token or a person."""
    return getattr(getattr(request, "agent", None), "only_repository", None)


def in_reach(request: HttpRequest, beads: QuerySet[Bead]) -> QuerySet[Bead]:
    """The beads the caller may see: a session token, its repository's only."""
    if (only := only_repository(request)) is not None:
        return beads.filter(repository_id=only)
    return beads


def repository_in_reach(request: HttpRequest, slug: str | None) -> Repository | None:
    """The repository named (404 if there is none, or if it is not a session
    token's own); none named: a session token's own, else None (any)."""
    only = only_repository(request)
    if only is None:
        return repository_or_404(slug)
    if slug is None:
        return Repository.objects.get(pk=only)
    return get_object_or_404(Repository, slug=slug, pk=only)
