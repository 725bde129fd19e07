"""The change sets' pages: the list with a form to make one, and one change
set's page (members, their sessions, gates and held state, the integration
gate's output, the landing journal), whose status part polls every two seconds
while the change set is in flight. Review (in `human` mode) is once per change set."""

import shlex

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from agents.models import ChangeSet
from agents.moves import changesets
from corral.pages.changeset_forms import ChangeSetForm
from workspace import audit, roles
from workspace.htmx import is_partial

SHOWN = 50


@login_required
def changeset_list(request: HttpRequest) -> HttpResponse:
    form = ChangeSetForm(request.POST or None)
    if request.method == "POST":
        if not request.user.has_perm(roles.FILE_BEADS):
            messages.error(request, roles.refusal(roles.FILE_BEADS))
        elif form.is_valid():
            try:
                changeset = changesets.create(
                    form.cleaned_data["title"] or form.default_title(),
                    form.cleaned_data["members"],
                    form.workspace(),
                    request.user,
                    shlex.split(form.cleaned_data["integration_command"]),
                )
                changesets.audited(audit.Action.CHANGESET, changeset, request=request)
                return redirect(changeset)
            except (ValidationError, changesets.Taken) as e:
                form.add_error(None, e.messages if isinstance(e, ValidationError) else str(e))
    recent = ChangeSet.objects.prefetch_related("members__repository")[:SHOWN]
    return render(request, "agents/changesets.html", {"form": form, "changesets": recent})


def in_flight(changeset: ChangeSet) -> bool:
    pending_revert = changeset.journal.filter(kind="revert", state="planned").exists()
    return changeset.status in ChangeSet.ACTIVE or pending_revert


@login_required
@vary_on_headers("HX-Request")
def changeset_page(request: HttpRequest, pk: int) -> HttpResponse:
    changeset = get_object_or_404(ChangeSet.objects.select_related("reviewed_by"), pk=pk)
    ctx = {
        "changeset": changeset,
        "members": changeset.member_list(),
        "journal": changeset.journal.select_related("member__repository").order_by("seq"),
        "in_flight": in_flight(changeset),
    }
    template = "agents/changeset.html#status" if is_partial(request) else "agents/changeset.html"
    return render(request, template, ctx)


@roles.requires(roles.REVIEW)
@require_POST
def changeset_approve(request: HttpRequest, pk: int) -> HttpResponse:
    changeset = get_object_or_404(ChangeSet, pk=pk)
    if changesets.approve(changeset, request.user):
        changesets.audited(audit.Action.APPROVE, changeset, request=request)
        messages.success(request, "Approved: every member will land together.")
    else:
        messages.error(request, "This change set is no longer waiting for review.")
    return redirect(changeset)


@roles.requires(roles.REVIEW)
@require_POST
def changeset_reject(request: HttpRequest, pk: int) -> HttpResponse:
    changeset = get_object_or_404(ChangeSet, pk=pk)
    reason = request.POST.get("reason", "").strip()
    if changesets.reject(changeset, request.user, reason):
        changesets.audited(audit.Action.REJECT, changeset, reason, request=request)
        messages.success(request, "Rejected: every member is back on the hook.")
    else:
        messages.error(request, "This change set is no longer waiting for review.")
    return redirect(changeset)


@roles.requires(roles.REVERT)
@require_POST
def changeset_revert(request: HttpRequest, pk: int) -> HttpResponse:
    changeset = get_object_or_404(ChangeSet, pk=pk)
    if changesets.request_revert(changeset):
        changesets.audited(audit.Action.REVERT, changeset, request=request)
        messages.success(request, "Revert queued: every member will be reverted together.")
    else:
        messages.error(request, "Only a landed change set can be reverted.")
    return redirect(changeset)
