"""Plans for people's scripts: start one (the planner proposes the waves over
the beads named, or the waves are given), show it, activate it. The same
moves as the plan pages (beads/plans.py, Plan.activate)."""

from collections import Counter
from datetime import datetime

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict

from agents.api.auth import the_person
from beads import plans
from beads.api import Line
from beads.models import Bead, Plan
from workspace import audit, roles
from workspace.models import Workspace

router = Router(tags=["plans"])
MAX_BEADS = 500


class PlanIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: Line = Field(..., min_length=1, max_length=200)
    max_agents_per_wave: int = Field(4, ge=1, le=50)
    beads: list[Line] = Field(
        [],
        max_length=MAX_BEADS,
        description="bead ids: Corral proposes the waves (closed beads and epics left out)",
    )
    waves: list[list[Line]] = Field(
        [], max_length=MAX_BEADS, description="instead of beads: the waves, each a list of bead ids"
    )


class PlanOut(Schema):
    id: int
    name: str
    status: str
    version: int
    max_agents_per_wave: int
    created_at: datetime
    waves: list[list[str]]

    @staticmethod
    def resolve_waves(plan: Plan) -> list[list[str]]:
        return plans.waves_of(plan)


@router.post("plans", response={201: PlanOut}, summary="Start a draft plan (people)")
def start_plan(request: HttpRequest, data: PlanIn) -> Status[Plan]:
    the_person(request, roles.PLAN)
    if bool(data.beads) == bool(data.waves):
        raise HttpError(422, "Give beads (Corral proposes the waves) or waves, not both.")
    workspace, cap = Workspace.default(), data.max_agents_per_wave
    if data.waves:
        plan = plans.start_with(workspace, data.name, checked_waves(data.waves), cap)
    else:
        plan = plans.start(workspace, data.name, selection(data.beads), cap)
    audit.record(audit.Action.PLAN_EDIT, plan, detail="started through the API", request=request)
    return Status(201, plan)


def found(ids: list[str]) -> dict[str, Bead]:
    beads = Bead.objects.in_bulk(ids)
    if missing := sorted(set(ids) - set(beads)):
        raise HttpError(422, f"No such bead: {', '.join(missing)}.")
    return beads


def selection(ids: list[str]) -> list[Bead]:
    """The beads named still to do, as the plan page's selection has them."""
    beads = found(ids)
    todo = [b for b in beads.values() if b.status != Bead.Status.CLOSED]
    todo = [b for b in todo if b.issue_type != Bead.Type.EPIC]
    if not todo:
        raise HttpError(422, "None of these beads is left to do (closed beads and epics are not).")
    return sorted(todo, key=lambda b: (b.priority, b.created_at))


def checked_waves(waves: list[list[str]]) -> list[list[str]]:
    """The waves given, if each bead is there once, still to do and not an epic."""
    ids = [b for wave in waves for b in wave]
    if len(ids) > MAX_BEADS:
        raise HttpError(422, f"A plan holds at most {MAX_BEADS} beads.")
    if repeated := sorted(b for b, n in Counter(ids).items() if n > 1):
        raise HttpError(422, f"A bead is in one wave only: {', '.join(repeated)}.")
    beads = found(ids)
    if done := sorted(b for b, bead in beads.items() if bead.status == Bead.Status.CLOSED):
        raise HttpError(422, f"Closed beads are not planned: {', '.join(done)}.")
    if epics := sorted(b for b, bead in beads.items() if bead.issue_type == Bead.Type.EPIC):
        raise HttpError(422, f"Plan an epic's children, not the epic: {', '.join(epics)}.")
    if not ids:
        raise HttpError(422, "The waves hold no bead.")
    return waves


@router.get("plans/{plan_id}", response=PlanOut, summary="Show a plan")
def show_plan(request: HttpRequest, plan_id: int) -> Plan:
    return get_object_or_404(Plan, pk=plan_id)


@router.post("plans/{plan_id}/activate", response=PlanOut, summary="Activate a plan (people)")
def activate_plan(request: HttpRequest, plan_id: int) -> Plan:
    """Draft → active: its first wave is ready. 409 if it is not a draft, or
    one of its beads is in another active plan."""
    the_person(request, roles.PLAN)
    plan = get_object_or_404(Plan, pk=plan_id)
    try:
        activated = plan.activate()
    except ValidationError as e:
        raise HttpError(409, f"Not activated: {' '.join(e.messages)}") from None
    if not activated:
        raise HttpError(409, f"Plan {plan.name} is {plan.status} already.")
    audit.record(audit.Action.PLAN_EDIT, plan, detail="activated through the API", request=request)
    return plan
