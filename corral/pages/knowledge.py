"""The knowledge page: search and filter learnings, see where each came from,
where it went and what came of it, curate them (operators), and see what a
bead would be given and why."""

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from agents.reports.worth import worth
from beads.models import Bead
from corral.pages.knowledge_forms import BeadForm, FilterForm, LearningForm, MergeForm, ReasonForm
from knowledge import curate, feedback
from knowledge.inject import fit
from knowledge.models import Learning
from knowledge.rank import Work, full_text, rank, terms
from workspace import roles
from workspace.htmx import is_partial
from workspace.models import Workspace

SHOWN = 100
AGES = {"fresh": (0, 4), "fading": (4, 13), "stale": (13, None)}


@login_required
def learnings(request: HttpRequest) -> HttpResponse:
    form = FilterForm(request.GET)
    rows, total = filtered(form) if form.is_valid() else ([], 0)
    ctx = {"form": form, "learnings": rows, "more": total - len(rows)}
    if is_partial(request):
        return render(request, "knowledge/learnings.html#results", ctx)
    return render(request, "knowledge/learnings.html", ctx)


def filtered(form: FilterForm) -> tuple[list[Learning], int]:
    """The first SHOWN learnings the filters select (best match first for a
    search, else most recently confirmed), and how many there are."""
    data = form.cleaned_data
    found: QuerySet[Learning] = Learning.objects.select_related("repository")
    if data["repo"]:
        found = found.filter(repository=data["repo"])
    if data["status"]:
        found = found.filter(status=data["status"])
    if data["maturity"]:
        found = found.filter(maturity=data["maturity"])
    if data["tag"]:
        found = found.filter(tags__icontains=f'"{data["tag"]}"')
    if data["freshness"]:
        found = found.filter(confirmed_within(*AGES[data["freshness"]]))
    if not (words := terms(data["q"])):
        return list(found.order_by("-confirmed_at", "-pk")[:SHOWN]), found.count()
    workspace = data["repo"].workspace if data["repo"] else Workspace.default()
    order = [pk for pk, _ in full_text(workspace, words, Learning.Status.values)]
    by_pk = found.in_bulk(order)
    matches = [by_pk[pk] for pk in order if pk in by_pk]
    return matches[:SHOWN], len(matches)


def confirmed_within(newest_weeks: int, oldest_weeks: int | None) -> Q:
    now = timezone.now()
    q = Q(confirmed_at__lte=now - timedelta(weeks=newest_weeks))
    if oldest_weeks is not None:
        q &= Q(confirmed_at__gt=now - timedelta(weeks=oldest_weeks))
    return q


@login_required
def learning(request: HttpRequest, pk: int, form: LearningForm | None = None) -> HttpResponse:
    item = get_object_or_404(Learning.objects.select_related("repository", "source_bead"), pk=pk)
    injections = item.injections.select_related("session__agent", "session__bead").order_by(
        "-session__created_at"
    )
    ctx = {
        "learning": item,
        "injections": injections[:SHOWN],
        "outcomes": outcomes(item),
        "worth": worth(item),
        "form": form or LearningForm(instance=item),
        "merge_form": MergeForm(),
    }
    return render(request, "knowledge/learning.html", ctx)


def outcomes(item: Learning) -> dict[str, int]:
    """How the sessions it went into ended: landed, refused, pending."""
    counted = item.injections.values_list("outcome").annotate(n=Count("pk")).order_by()
    by_outcome = {outcome or "pending": n for outcome, n in counted}
    return {k: by_outcome.get(k, 0) for k in ("landed", "refused", "pending")}


@roles.requires(roles.CURATE_LEARNINGS)
@require_POST
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Learning, pk=pk)
    form = LearningForm(request.POST, instance=item)
    if not form.is_valid():
        return learning(request, pk, form=form)
    form.save()
    messages.success(request, "Saved.")
    return redirect(item)


@roles.requires(roles.CURATE_LEARNINGS)
@require_POST
def approve(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Learning, pk=pk)
    approval = curate.approve(item, by=request.user)
    if not approval.approved:
        messages.error(request, f"Only a candidate can be approved; this one is {item.status}.")
        return redirect(item)
    messages.success(
        request, f"Approved: it is injected where relevant from now on.{retried(approval)}"
    )
    return redirect(item)


def retried(approval: curate.Approval) -> str:
    ids = [bead.pk for bead in approval.retried]
    if not ids:
        return ""
    if len(ids) == 1:
        return f" {ids[0]}, blocked after its failed attempts, gets another try with it."
    names = f"{', '.join(ids[:-1])} and {ids[-1]}"
    return f" {names}, blocked after their failed attempts, get another try with it."


@roles.requires(roles.CURATE_LEARNINGS)
@require_POST
def retire(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Learning, pk=pk)
    form = ReasonForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    if item.retire(reason or f"Retired by {request.user}."):
        messages.success(request, "Retired: it is no longer injected.")
    else:
        messages.error(request, "It is retired already.")
    return redirect(item)


@roles.requires(roles.CURATE_LEARNINGS)
@require_POST
def mark(request: HttpRequest, pk: int, verdict: str) -> HttpResponse:
    item = get_object_or_404(Learning, pk=pk)
    form = ReasonForm(request.POST)
    why = (form.cleaned_data["reason"] if form.is_valid() else "") or f"marked by {request.user}"
    retired = feedback.mark(item, helpful=verdict == "helpful", why=why, person=request.user)
    messages.success(
        request, f"Marked {verdict}." + (" It kept hurting: retired." if retired else "")
    )
    return redirect(item)


@roles.requires(roles.CURATE_LEARNINGS)
@require_POST
def merge(request: HttpRequest, pk: int) -> HttpResponse:
    keep = get_object_or_404(Learning, pk=pk)
    form = MergeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the number of the learning to merge into this one.")
        return redirect(keep)
    other = Learning.objects.filter(pk=form.cleaned_data["other"]).first()
    if other is None:
        messages.error(request, f"There is no learning #{form.cleaned_data['other']}.")
        return redirect(keep)
    try:
        curate.merge(keep, other, str(request.user))
    except curate.CannotMerge as e:
        messages.error(request, str(e))
    else:
        messages.success(request, f"Merged #{other.pk} into this learning; #{other.pk} is retired.")
    return redirect(keep)


@login_required
def why(request: HttpRequest) -> HttpResponse:
    """What a bead would be given, and each learning's score in parts."""
    form = BeadForm(request.GET or None)
    ctx: dict[str, Any] = {"form": form, "budget": 40_000}
    if form.is_valid():
        bead = Bead.objects.select_related("repository").filter(pk=form.cleaned_data["bead"])
        if not (found := bead.first()):
            form.add_error("bead", "There is no such bead.")
        else:
            ranked = rank(found.repository.workspace, Work.of(found))
            fits = {r.learning.pk for r in fit(ranked, ctx["budget"])}
            ctx.update(bead=found, ranked=ranked, fits=fits)
    return render(request, "knowledge/why.html", ctx)
