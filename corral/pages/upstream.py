"""A repository's upstream, from its page: push (following the upstream) on
and off, "rebuild on the upstream" after its history was rewritten, and a new
secret for the upstream's push webhook (shown once)."""

import secrets

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from agents.moves import upstream
from corral.pages.overview import render_repository
from workspace import audit, roles
from workspace.models import Repository


def set_push(request: HttpRequest, slug: str, on: bool) -> HttpResponse:
    repo = get_object_or_404(Repository, slug=slug)
    if on and not repo.upstream:
        messages.error(request, f"{repo.name} has no upstream to push to.")
    elif upstream.set_push(repo, on, request):
        messages.success(
            request,
            f"Push on: {repo.name} follows its upstream and pushes each landing to it."
            if on
            else f"Push off: {repo.name}'s branch is Corral's own; the upstream is left alone.",
        )
    else:
        messages.info(request, f"Push was already {'on' if on else 'off'} in {repo.name}.")
    return redirect(repo)


@roles.requires(roles.FOLLOW_UPSTREAM)
@require_POST
def push_on(request: HttpRequest, slug: str) -> HttpResponse:
    return set_push(request, slug, on=True)


@roles.requires(roles.FOLLOW_UPSTREAM)
@require_POST
def push_off(request: HttpRequest, slug: str) -> HttpResponse:
    return set_push(request, slug, on=False)


@roles.requires(roles.FOLLOW_UPSTREAM)
@require_POST
def rebuild(request: HttpRequest, slug: str) -> HttpResponse:
    repo = get_object_or_404(Repository, slug=slug)
    if upstream.request_rebuild(repo, request):
        messages.success(
            request,
            f"Rebuilding {repo.name} on the upstream: its branch starts again from the "
            "upstream's head, Corral's unpushed commits are made again on it, "
            "then landing resumes.",
        )
    else:
        messages.info(request, f"{repo.name} is not stopped: there is nothing to rebuild.")
    return redirect(repo)


@roles.requires(roles.WEBHOOK_SECRET)
@require_POST
def webhook_secret(request: HttpRequest, slug: str) -> HttpResponse:
    """A new secret for the upstream's push webhook, shown this once."""
    repo = get_object_or_404(Repository, slug=slug)
    secret = secrets.token_urlsafe(32)
    Repository.objects.filter(pk=repo.pk).update(webhook_secret=secret)
    audit.record(audit.Action.WEBHOOK_SECRET, repo.slug, repository=repo, request=request)
    repo.refresh_from_db()
    return render_repository(request, repo, new_webhook_secret=secret)
