"""The problems page: stalled sessions, stuck repositories and churning
beads, each with one action (cancel, retry, open the log)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from agents.moves import dispatching
from agents.reports import problems
from workspace import audit, roles
from workspace.htmx import is_partial
from workspace.models import Repository


@login_required
@vary_on_headers("HX-Request")
def problems_page(request: HttpRequest) -> HttpResponse:
    template = "corral/problems.html#problems" if is_partial(request) else "corral/problems.html"
    return render(request, template, {"problems": problems.find()})


@roles.requires(roles.RUN_DISPATCH)
@require_POST
def retry_lead(request: HttpRequest, slug: str) -> HttpResponse:
    """Ask the repository's lead to take up its queue again."""
    repo = get_object_or_404(Repository, slug=slug)
    dispatching.retry_lead(repo)
    audit.record(audit.Action.RETRY, repo.slug, repository=repo, request=request)
    messages.success(request, f"Asked {repo.name}'s lead to take up its queue again.")
    return redirect("problems")
