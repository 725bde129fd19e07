"""The change sets' API: `POST changesets` (people) and `GET changesets/{id}`."""

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict

from agents.models import ChangeSet, ChangeSetMember, JournalStep
from agents.moves import changesets, filing
from beads.api import Line, field_errors, only_repository
from beads.models import Bead, Wave
from workspace import audit
from workspace.models import Workspace

router = Router(tags=["changesets"])
MAX_MEMBERS = 50


class ChangeSetIn(Schema):
    model_config = ConfigDict(extra="forbid")

    title: Line = Field("", max_length=500, description="default: the epic's title")
    beads: list[Line] = Field([], max_length=MAX_MEMBERS, description="bead ids")
    epic: Line | None = Field(None, description="instead of beads: an epic's open children")
    wave: int | None = Field(None, description="instead of beads: a plan wave's open beads (id)")
    integration_command: list[Line] = Field(
        [], max_length=100, description="argv; empty: the workspace's integration command"
    )


class MemberOut(Schema):
    bead: str = Field(..., alias="bead_id")
    repo: str = Field(..., alias="repository.slug")
    held: bool


class StepOut(Schema):
    seq: int
    kind: str
    repo: str = Field(..., alias="member.repository.slug")
    old_sha: str
    new_sha: str
    state: str


class ChangeSetOut(Schema):
    id: int
    title: str
    status: str
    integration_command: list[str]
    integration_passed: bool | None
    integration_output: str
    attempts: int
    reason: str
    created_at: datetime
    landed_at: datetime | None
    members: list[MemberOut]
    journal: list[StepOut]

    @staticmethod
    def resolve_members(changeset: ChangeSet) -> list[ChangeSetMember]:
        return changeset.member_list()

    @staticmethod
    def resolve_journal(changeset: ChangeSet) -> list[JournalStep]:
        return list(changeset.journal.select_related("member__repository").order_by("seq"))


def may_see_output(request: HttpRequest, changeset: ChangeSet) -> bool:
    """The integration output quotes the members' code: people, and agents
    working on a member bead, see it (like a check's output on a bead)."""
    agent = getattr(request, "agent", None)
    if agent is None:
        return bool(request.user.is_authenticated)
    return any(filing.holds_live_session(agent, m.bead) for m in changeset.member_list())


@router.post("changesets", response={201: ChangeSetOut}, summary="Create a change set")
def create_changeset(request: HttpRequest, data: ChangeSetIn) -> Status[ChangeSet]:
    """Beads of two or more repositories that land together or not at all:
    name them, or an epic whose children span repositories, or a plan's wave.
    People only."""
    if getattr(request, "agent", None) is not None:
        raise HttpError(403, "People create change sets; an agent works on its own beads.")
    try:
        changeset = make(data, request.user)
    except changesets.Taken as e:
        raise HttpError(409, str(e)) from None
    except ValidationError as e:
        raise HttpError(422, field_errors(e)) from None
    changesets.audited(audit.Action.CHANGESET, changeset, "through the API", request=request)
    return Status(201, changeset)


def make(data: ChangeSetIn, user: object) -> ChangeSet:
    command = list(data.integration_command)
    if sum(map(bool, (data.beads, data.epic, data.wave))) != 1:
        raise ValidationError({"beads": "Give one of beads, epic or wave."})
    if data.wave:
        wave = get_object_or_404(Wave.objects.select_related("plan__workspace"), pk=data.wave)
        title = data.title or f"{wave.plan.name}, wave {wave.number}"
        members = changesets.open_wave_beads(wave)
        return changesets.create(title, members, wave.plan.workspace, user, command)
    if data.epic:
        epic = get_object_or_404(Bead.objects.select_related("repository"), pk=data.epic)
        return changesets.create(
            data.title or epic.title,
            changesets.open_children(epic),
            epic.repository.workspace,
            user,
            command,
        )
    found = Bead.objects.select_related("repository").in_bulk(data.beads)
    if missing := [b for b in data.beads if b not in found]:
        raise ValidationError({"beads": f"No such bead: {', '.join(missing)}."})
    workspace = next((b.repository.workspace for b in found.values()), Workspace.default())
    return changesets.create(data.title, found.values(), workspace, user, command)


@router.get("changesets/{changeset_id}", response=ChangeSetOut, summary="Show a change set")
def show_changeset(request: HttpRequest, changeset_id: int) -> ChangeSet:
    changeset = get_object_or_404(in_reach_changesets(request), pk=changeset_id)
    if not may_see_output(request, changeset):
        changeset.integration_output = changeset.reason = ""
    return changeset


def in_reach_changesets(request: HttpRequest) -> QuerySet[ChangeSet]:
    """The change sets the caller may see: a session token, those with a
    member in its repository (the others are 404, as if not there)."""
    if (only := only_repository(request)) is None:
        return ChangeSet.objects.all()
    return ChangeSet.objects.filter(members__repository_id=only).distinct()
