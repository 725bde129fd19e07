"""A page per bead: every field, its dependencies both ways, why the hook
would or would not hand it out, its timeline, its plans, the work its stopped
sessions left (salvages) and its comments."""

from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from agents.reports import budgets, salvages, timeline, usage
from beads import hook
from beads.models import Bead, Comment, WaveBead
from workspace import audit, roles

# What a person may do to the bead from its page (the bead list's actions).
MOVES = [("accept", "Accept"), ("close", "Close"), ("block", "Block"), ("defer", "Defer")]
MOVES += [("reopen", "Reopen")]


class CommentForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=Comment.MAX_CHARS)


def bead_context(bead: Bead) -> dict[str, Any]:
    ready, why = hook.readiness(bead)
    return {
        "bead": bead,
        "depends_on": bead.dependencies.select_related("depends_on__repository"),
        "dependents": bead.dependents.select_related("issue__repository"),
        "ready": ready,
        "why": why,
        "timeline": timeline.for_bead(bead),
        "usage": usage.for_bead(bead.pk),
        "budget": budgets.for_bead(bead.pk),
        "salvages": salvages.for_bead(bead),
        "comments": bead.comments.select_related("person"),
        "plans": WaveBead.objects.filter(bead=bead).select_related("plan", "wave"),
        "moves": [(key, label) for key, label in MOVES if bead.status in Bead.MOVES[key].sources],
    }


def the_bead(bead_id: str) -> Bead:
    beads = Bead.objects.select_related("repository", "filed_by")
    return get_object_or_404(beads, pk=bead_id)


@login_required
def bead_page(request: HttpRequest, bead_id: str) -> HttpResponse:
    ctx = bead_context(the_bead(bead_id)) | {"form": CommentForm()}
    return render(request, "corral/bead.html", ctx)


@roles.requires(roles.COMMENT)
@require_POST
def add_comment(request: HttpRequest, bead_id: str) -> HttpResponse:
    bead = the_bead(bead_id)
    form = CommentForm(request.POST)
    if form.is_valid():
        try:
            made = Comment.add(bead, form.cleaned_data["text"], person=request.user)
            audit.record(
                audit.Action.COMMENT,
                bead,
                repository=bead.repository,
                detail=made.text[:200],
                request=request,
            )
            return redirect(bead.get_absolute_url() + "#comments")
        except ValidationError as e:
            form.add_error(None, e)
    ctx = bead_context(bead) | {"form": form}
    return render(request, "corral/bead.html", ctx, status=400)
