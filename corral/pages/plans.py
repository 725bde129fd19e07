"""Plans in the browser: start one from a selection, edit the planner's
proposal (move a bead, split or merge waves, agents per wave, the two fixes
for a shared file), activate it, and watch it run."""

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from agents.moves import changesets, filing
from agents.reports import plan_status, trends
from beads import planner, plans
from beads.models import Bead, Dependency, Plan, Wave
from corral.pages import charts
from corral.pages.bead_list import Filters
from workspace import audit, roles
from workspace.htmx import is_partial
from workspace.models import Workspace

# The board's geometry, in px: the stylesheet sizes cards the same, so the
# server can draw the dependency arrows in SVG where the cards will be.
CARD_W, CARD_H, GAP_X, GAP_Y, HEAD_H = 220, 76, 36, 10, 34


class StartForm(forms.Form):
    name = forms.CharField(max_length=200)
    max_agents_per_wave = forms.IntegerField(min_value=1, max_value=50, initial=4)
    epic = forms.CharField(required=False, help_text="an epic's ID: its children")
    label = forms.CharField(required=False, help_text="the open beads with this label")
    beads = forms.CharField(required=False, help_text="bead IDs, space-separated")
    filter = forms.CharField(required=False, help_text="a bead list's filter (its query string)")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            data["selection"] = list(self.selection(data))
            if not data["selection"]:
                raise ValidationError(
                    "The selection holds no open bead: pick an epic, a label, beads or a filter."
                )
        return data

    def selection(self, data: dict[str, Any]) -> QuerySet[Bead]:
        beads = Bead.objects.none()
        if epic := data["epic"].strip():
            parent = Bead.objects.filter(pk=epic).first()
            if parent is None:
                raise ValidationError({"epic": f"No such bead: {epic}."})
            beads |= parent.children()
        if label := data["label"].strip():
            beads |= Filters({"label": label}).beads()
        if ids := data["beads"].split():
            if missing := set(ids) - set(
                Bead.objects.filter(pk__in=ids).values_list("pk", flat=True)
            ):
                raise ValidationError({"beads": f"No such bead: {', '.join(sorted(missing))}."})
            beads |= Bead.objects.filter(pk__in=ids)
        if query := data["filter"].strip().lstrip("?"):
            beads |= Filters(QueryDict(query)).beads()
        unfinished = Bead.objects.filter(pk__in=beads.values("pk")).exclude(
            status=Bead.Status.CLOSED
        )
        return unfinished.exclude(issue_type=Bead.Type.EPIC).order_by("priority", "created_at")


@login_required
def plan_index(request: HttpRequest) -> HttpResponse:
    ctx = {"plans": Plan.objects.order_by("-created_at"), "form": StartForm(initial=request.GET)}
    return render(request, "corral/plans.html", ctx)


@roles.requires(roles.PLAN)
@require_POST
def plan_start(request: HttpRequest) -> HttpResponse:
    form = StartForm(request.POST)
    if not form.is_valid():
        ctx = {"plans": Plan.objects.order_by("-created_at"), "form": form}
        return render(request, "corral/plans.html", ctx, status=400)
    data = form.cleaned_data
    plan = plans.start(
        Workspace.default(), data["name"], data["selection"], data["max_agents_per_wave"]
    )
    audit.record(audit.Action.PLAN_EDIT, plan, detail="started", request=request)
    return redirect(plan)


def board(plan: Plan) -> dict[str, Any]:
    """What the board shows: waves of beads, overlaps, shared files, arrows."""
    waves_ids = plans.waves_of(plan)
    ids = [b for wave in waves_ids for b in wave]
    beads = {b.id: b for b in Bead.objects.filter(pk__in=ids).select_related("repository")}
    waves = [[beads[i] for i in wave] for wave in waves_ids]
    proposal = planner.propose_for(list(beads.values()), plan.max_agents_per_wave)
    clashes = planner.clashes(waves_ids, proposal.pairs)
    shared_by: dict[str, list[str]] = {}
    for shared in proposal.shared:
        for bead_id in shared.beads:
            shared_by.setdefault(bead_id, []).append(shared.path)
    wave_of = {b: n for n, wave in enumerate(waves_ids) for b in wave}
    report = [(s, len({wave_of.get(b) for b in s.beads}) == len(s.beads)) for s in proposal.shared]
    return {
        "plan": plan,
        "waves": waves,
        "clashes": clashes,
        "clashing": {bead for _, a, b, _ in clashes for bead in (a, b)},
        "out_of_order": planner.out_of_order(waves_ids, proposal.items),
        "over_cap": [n + 1 for n, w in enumerate(waves) if len(w) > plan.max_agents_per_wave],
        "shared_by": shared_by,
        "shared": report,
        "hot": proposal.hot,
        "arrows": arrows(waves_ids),
        "size": (
            len(waves) * (CARD_W + GAP_X),
            HEAD_H + max((len(w) for w in waves), default=0) * (CARD_H + GAP_Y),
        ),
    }


def arrows(waves: list[list[str]]) -> list[str]:
    """An SVG path from each blocker's card to the card of the bead it blocks.
    One that skips waves bows upward by a lane per wave skipped, so that it
    is told apart from the cards it passes over."""
    place = {b: (n, i) for n, wave in enumerate(waves) for i, b in enumerate(wave)}
    edges = Dependency.objects.filter(
        issue_id__in=place, depends_on_id__in=place, type=Dependency.Type.BLOCKS
    ).values_list("depends_on_id", "issue_id")
    paths = []
    for blocker, bead in sorted(edges):
        (c1, r1), (c2, r2) = place[blocker], place[bead]
        x1, y1 = c1 * (CARD_W + GAP_X) + CARD_W, card_middle(r1)
        x2, y2 = c2 * (CARD_W + GAP_X), card_middle(r2)
        bow = max(0, c2 - c1 - 1) * (CARD_H // 2 + GAP_Y)
        paths.append(f"M{x1},{y1} C{x1 + GAP_X},{y1 - bow} {x2 - GAP_X},{y2 - bow} {x2},{y2}")
    return paths


def card_middle(row: int) -> int:
    return HEAD_H + row * (CARD_H + GAP_Y) + CARD_H // 2


def plan_context(plan: Plan, request: HttpRequest) -> dict[str, Any]:
    ctx = board(plan)
    ctx["editable"] = plan.status == Plan.Status.DRAFT and request.user.has_perm(roles.PLAN)
    may_make = request.user.has_perm(roles.FILE_BEADS)  # operators make change sets
    ctx["spanning"] = spanning_waves(ctx["waves"]) if may_make else set()
    ctx |= {"new_wave": len(ctx["waves"]) + 1, "beads_url": reverse("bead-list")}
    status = plan_status.status_of(plan, ctx["waves"])
    for bead in (b for wave in ctx["waves"] for b in wave):  # what each card shows
        bead.session = status.working.get(bead.id)
        bead.running_s = status.running_s.get(bead.id)
        bead.shared_paths = ctx["shared_by"].get(bead.id, [])
    if plan.status != Plan.Status.DRAFT:  # a draft has nothing done yet
        ctx["burndown"] = charts.over_time(trends.burndown(plan), ["done", "left"], "beads")
    return ctx | {"status": status, "eta": plan_status.eta_text(status.eta_s), "caps": range(1, 9)}


def spanning_waves(waves: list[list[Bead]]) -> set[int]:
    """The numbers of the waves whose beads still to land are in two or more
    repositories: those a change set could land together."""
    spanning = set()
    for number, wave in enumerate(waves, start=1):
        still = [
            b for b in wave if b.status != Bead.Status.CLOSED and b.issue_type != Bead.Type.EPIC
        ]
        if len({b.repository_id for b in still}) >= changesets.MIN_REPOSITORIES:
            spanning.add(number)
    return spanning


@login_required
@vary_on_headers("HX-Request")
def plan_page(request: HttpRequest, pk: int) -> HttpResponse:
    plan = get_object_or_404(Plan, pk=pk)
    template = "corral/plan.html#board" if is_partial(request) else "corral/plan.html"
    return render(request, template, plan_context(plan, request))


def number(request: HttpRequest, name: str) -> int:
    value = request.POST.get(name, "")
    if not value.isdigit():
        raise ValueError(f"give {name.replace('_', ' ')} as a number")
    return int(value)


def edited(request: HttpRequest, plan: Plan, op: str) -> list[list[str]]:
    """The waves after the edit `op` asks for (indexes in the form are 1-based)."""
    waves = plans.waves_of(plan)
    if op == "serialize":
        return planner.serialize(waves, request.POST.getlist("bead"))
    index = number(request, "wave") - 1
    if not 0 <= index <= len(waves) - (op != "move"):  # a move may open a new last wave
        raise ValueError(f"there is no wave {index + 1}")
    if op == "move":
        bead = request.POST.get("bead", "")
        if not any(bead in wave for wave in waves):
            raise ValueError(f"{bead or 'no bead'} is not in this plan")
        return plans.moved(waves, bead, index)
    if op == "split":
        return plans.split(waves, index)
    if op == "merge":
        return plans.merged(waves, index)
    raise ValueError(f"unknown edit {op!r}")


@roles.requires(roles.PLAN)
@require_POST
def plan_edit(request: HttpRequest, pk: int, op: str) -> HttpResponse:
    plan = get_object_or_404(Plan, pk=pk)
    status = 200
    try:
        version = number(request, "version")
        if op == "agents":
            cap = number(request, "max_agents_per_wave")
            if not 1 <= cap <= 50:
                raise ValueError("agents per wave must be between 1 and 50")
            plans.save_waves(plan, plans.waves_of(plan), version, max_agents_per_wave=cap)
        elif op == "repropose":
            plans.repropose(plan, version)
        else:
            plans.save_waves(plan, edited(request, plan, op), version)
        audit.record(audit.Action.PLAN_EDIT, plan, detail=op, request=request)
    except plans.PlanChanged as e:
        messages.error(request, str(e))
        status = 409
    except (ValueError, IndexError, KeyError) as e:
        messages.error(request, f"Cannot do that: {e}.")
        status = 400
    plan.refresh_from_db()
    if is_partial(request):
        return render(
            request,
            "corral/plan.html#board",
            plan_context(plan, request) | {"edit_messages": True},
            status=status,
        )
    return (
        redirect(plan)
        if status == 200
        else render(request, "corral/plan.html", plan_context(plan, request), status=status)
    )


@roles.requires(roles.PLAN)
@require_POST
def plan_prepare(request: HttpRequest, pk: int) -> HttpResponse:
    """The second fix for a shared file: a bead in a new first wave that changes
    it first; the beads that share it wait for that bead."""
    plan = get_object_or_404(Plan, pk=pk)
    path, ids = request.POST.get("path", ""), request.POST.getlist("bead")
    sharing = list(plans.plan_beads(plan).filter(pk__in=ids).select_related("repository"))
    if not path or not sharing or len(sharing) != len(set(ids)):
        messages.error(request, "Name the shared file and the plan's beads that share it.")
        return redirect(plan)
    try:
        first = filing.file_first_for(plan, path, sharing, request.user, number(request, "version"))
    except plans.PlanChanged as e:
        messages.error(request, str(e))
    except (ValidationError, ValueError, filing.FilingRefused) as e:
        messages.error(request, f"Cannot add the bead: {e}")
    else:
        audit.record(audit.Action.PLAN_EDIT, plan, detail=first.title, request=request)
        messages.success(
            request, f"Filed {first.id} in a new first wave; {len(sharing)} bead(s) wait for it."
        )
    return redirect(plan)


@roles.requires(roles.PLAN)
@require_POST
def plan_activate(request: HttpRequest, pk: int) -> HttpResponse:
    plan = get_object_or_404(Plan, pk=pk)
    try:
        if plan.activate():
            audit.record(audit.Action.PLAN_EDIT, plan, detail="activated", request=request)
            messages.success(request, f"Plan {plan.name} is active: its first wave is ready.")
        else:
            messages.info(request, f"Plan {plan.name} is {plan.get_status_display()} already.")
    except ValidationError as e:
        messages.error(request, f"Not activated: {' '.join(e.messages)}")
    return redirect(plan)


@roles.requires(roles.FILE_BEADS)
@require_POST
def plan_wave_changeset(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    """A change set of a wave's beads still to land, so that they land together."""
    wave = get_object_or_404(Wave.objects.select_related("plan__workspace"), plan=pk, number=number)
    title = f"{wave.plan.name}, wave {wave.number}"
    try:
        members = changesets.open_wave_beads(wave)
        changeset = changesets.create(title, members, wave.plan.workspace, request.user)
    except (ValidationError, changesets.Taken) as e:
        why = " ".join(e.messages) if isinstance(e, ValidationError) else str(e)
        messages.error(request, f"No change set: {why}")
        return redirect(wave.plan)
    changesets.audited(audit.Action.CHANGESET, changeset, request=request)
    messages.success(request, f"Change set {changeset.pk}: {len(members)} beads land together.")
    return redirect(changeset)
