"""The bead list, per repository and workspace-wide: filters, pages, and the
admin's bulk actions for people whose role may edit beads."""

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from beads import moves
from beads.admin import with_label
from beads.models import Bead
from workspace import audit, roles
from workspace.models import Repository

PER_PAGE = 50
LIST_FIELDS = ["id", "title", "status", "priority", "issue_type", "labels", "scope", "assignee"]
LIST_FIELDS += ["created_at", "updated_at", "repository__slug", "repository__name"]


class Filters(forms.Form):
    q = forms.CharField(required=False, label="Text")
    repo = forms.ModelChoiceField(
        Repository.objects.order_by("name"), required=False, to_field_name="slug"
    )
    status = forms.ChoiceField(choices=[("", "any status"), *Bead.Status.choices], required=False)
    priority = forms.TypedChoiceField(
        choices=[("", "any priority"), *((p, f"P{p}") for p in range(5))],
        coerce=int,
        required=False,
        empty_value=None,
    )
    issue_type = forms.ChoiceField(choices=[("", "any type"), *Bead.Type.choices], required=False)
    label = forms.CharField(required=False)
    assignee = forms.CharField(required=False)

    def beads(self) -> QuerySet[Bead]:
        beads = Bead.objects.select_related("repository").order_by("priority", "-created_at", "id")
        if not self.is_valid():
            return beads.none()
        data = self.cleaned_data
        if q := data["q"].strip():
            beads = beads.filter(Q(id__icontains=q) | Q(title__icontains=q))
        for name in ("repo", "status", "issue_type", "assignee"):
            if data[name]:
                beads = beads.filter(**{"repository" if name == "repo" else name: data[name]})
        if data["priority"] is not None:
            beads = beads.filter(priority=data["priority"])
        if data["label"]:
            beads = with_label(beads, data["label"].strip())
        return beads


@login_required
def bead_list(request: HttpRequest) -> HttpResponse:
    filters = Filters(request.GET)
    page = Paginator(filters.beads().only(*LIST_FIELDS), PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    ctx = {"filters": filters, "page": page, "query": query.urlencode(), "actions": ACTIONS}
    return render(request, "corral/bead_list.html", ctx)


def priority_setter(priority: int) -> Callable[[Bead, Any], bool]:
    label = f"Set P{priority}"
    return lambda bead, by: recorded(bead.set_priority(priority), bead, label, by)


# Bulk actions: each a conditional move per selected bead; closing, reopening,
# deferring and blocking are beads.moves', as from every other entry point.
VIA = "the bead list"
ACTIONS: dict[str, tuple[str, Callable[[Bead, Any], bool]]] = {
    "accept": ("Accept", lambda bead, by: recorded(bead.accept(), bead, "Accept", by)),
    "close": ("Close", lambda bead, by: moves.close(bead, "closed from the bead list", by, VIA)),
    "reopen": ("Reopen", lambda bead, by: moves.reopen(bead, by, VIA)),
    "defer": ("Defer", lambda bead, by: moves.defer(bead, by, VIA)),
    "block": ("Block", lambda bead, by: moves.block(bead, "", by, VIA)),
    **{f"p{p}": (f"Set P{p}", priority_setter(p)) for p in range(5)},
}


def back_to(request: HttpRequest) -> str:
    """Where to go after an action: the page it came from (a bead's, or the
    list with its filters), never another site."""
    after = request.POST.get("next", "")
    if after and url_has_allowed_host_and_scheme(after, {request.get_host()}):
        return after
    back = request.POST.get("back", "")
    return reverse("bead-list") + ("?" + back if back else "")


def recorded(moved: bool, bead: Bead, label: str, by: Any) -> bool:
    if moved:
        audit.record(
            audit.Action.BEAD_EDIT, bead, repository=bead.repository, detail=label, actor=by
        )
    return moved


@roles.requires(roles.EDIT_BEADS)
@require_POST
def bulk_action(request: HttpRequest) -> HttpResponse:
    action = ACTIONS.get(request.POST.get("action", ""))
    ids = request.POST.getlist("bead")
    if action is None or not ids:
        messages.error(request, "Pick an action and at least one bead.")
        return redirect(back_to(request))
    label, move = action
    beads = list(Bead.objects.filter(pk__in=ids).select_related("repository"))
    moved = len([bead for bead in beads if move(bead, request.user)])
    messages.success(request, f"{label}: {moved} of {len(ids)} bead(s) changed.")
    if skipped := len(beads) - moved:
        messages.warning(request, f"{skipped} bead(s) whose status does not allow it were left.")
    return redirect(back_to(request))
