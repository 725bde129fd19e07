"""The overview, a repository's page and the hook page; dispatch paused and
resumed per repository; the login page's lock-out answer.
"""

import math
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from agents.models import Agent, ChangeSetMember, Session
from agents.moves import dispatching
from agents.reports import budgets, decisions, problems, review_capacity, trends, usage
from beads import hook
from beads.models import Bead, Dependency, Plan, with_bead_counts
from corral.pages import charts
from corral.pages.display import session_clock
from workspace import audit, reviewrules, roles
from workspace.htmx import is_partial
from workspace.models import Repository, Workspace

READY_SHOWN = 5  # ready beads shown per repository on the hook page (a polled partial)
WAITING_SHOWN = 50  # beads waiting out a back-off shown on the hook page, soonest free first
GROUP_SHOWN = 25  # beads of each status shown on a repository's page
LANDING_DAYS = 14  # days of landings the overview charts (its caption says so)
CLAIM_FIELDS = ["status", "lease_expires_at", "agent__name", "bead__title", "bead__repository"]
WAITING_FIELDS = ["id", "repository", "title", "not_before", "repeats"]


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    workspace = Workspace.default()
    repositories = with_bead_counts(workspace.repositories.all())
    ctx = {"workspace": workspace, "repositories": repositories, "statuses": Bead.Status}
    ctx["problem_count"] = problems.count()
    ctx |= {"plans": workspace.plans.exclude(status=Plan.Status.DONE).order_by("-created_at")}
    ctx |= {"decisions": decisions.next_decisions(workspace)}
    landings = trends.landings_per_day(workspace, LANDING_DAYS)
    ctx["landings"] = charts.stacked_bars(usage.last_days(LANDING_DAYS), landings, "landings")
    return render(request, "corral/overview.html", ctx)


def running_sessions(repo: Repository) -> list[Session]:
    """The repository's live sessions with their time left, in one query."""
    # Every live session, this repository's kept here: they are few (the
    # agents' slots), and asked by repository SQLite, which has no statistics,
    # walks each of the repository's beads for their sessions.
    live = Session.objects.filter(status__in=Session.LIVE).select_related("agent", "bead")
    now = timezone.now()
    sessions = [s for s in live.order_by("created_at", "pk") if s.bead.repository_id == repo.pk]
    for session in sessions:
        session.bead.repository = repo  # the time limit reads it: no query per row
        session.clock = session_clock(session, now)  # type: ignore[attr-defined]  # for the page
    return sessions


@login_required
def repository(request: HttpRequest, slug: str) -> HttpResponse:
    return render_repository(request, get_object_or_404(Repository, slug=slug))


def render_repository(
    request: HttpRequest, repo: Repository, status: int = 200, **extra: Any
) -> HttpResponse:
    """The repository page; `extra` for a form shown again with its errors."""
    blocks = Dependency.objects.select_related("depends_on__repository").order_by("depends_on_id")
    changesets = ChangeSetMember.objects.select_related("changeset").order_by("-changeset_id")
    beads = repo.beads.prefetch_related(
        Prefetch("dependencies", queryset=blocks),
        Prefetch("changeset_members", queryset=changesets),
    )
    # Counted in the database; of each status the first GROUP_SHOWN only, so the
    # page's size and queries do not grow with the repository (the bead list
    # pages through the rest). Each status's first ids come off the (repository,
    # status, priority, created_at) index: a window over all of them sorts them all.
    # Every status is asked, present or not, so the page's queries are the same
    # whatever its beads' statuses.
    counts = dict(repo.beads.values_list("status").annotate(n=Count("*")).order_by())
    first = [
        repo.beads.filter(status=s).values_list("pk", flat=True)[:GROUP_SHOWN]
        for s in Bead.Status.values
    ]
    shown = list(beads.filter(pk__in=[pk for ids in first for pk in ids]))
    groups = [
        (label, [b for b in shown if b.status == value], counts[value])
        for value, label in Bead.Status.choices
        if counts.get(value)
    ]
    total = sum(counts.values())
    ctx = {"repo": repo, "groups": groups, "total": total, "running": running_sessions(repo)}
    ctx["usage"] = usage.for_repository(repo)
    ctx["review_rules"] = reviewrules.on_branch(repo.canonical_path, repo.branch)
    ctx["webhook_url"] = webhook_url(request, repo)
    return render(request, "corral/repository.html", ctx | extra, status=status)


def webhook_url(request: HttpRequest, repo: Repository) -> str:
    """Where the upstream's forge sends its push webhook for this repository."""
    return request.build_absolute_uri(reverse("upstream-hook", args=[repo.slug]))


def locked_out(
    request: HttpRequest,
    original_response: HttpResponse | None = None,
    credentials: dict[str, Any] | None = None,
) -> HttpResponse:
    """The login page's answer while axes holds a lock on this username and address."""
    minutes = max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    ctx = {"username": username, "minutes": minutes}
    return render(request, "registration/locked_out.html", ctx, status=429)


def set_dispatch(request: HttpRequest, slug: str, paused: bool) -> HttpResponse:
    repo = get_object_or_404(Repository, slug=slug)
    changed = dispatching.set_paused(repo, paused)
    if changed:  # a person's action: the audit trail keeps it
        action = audit.Action.PAUSE if paused else audit.Action.RESUME
        audit.record(action, repo.slug, repository=repo, request=request)
    if not changed:
        state = "paused" if paused else "running"
        messages.info(request, f"Dispatch in {repo.name} was already {state}.")
    elif paused:
        messages.success(
            request,
            f"Dispatch paused: Corral's agents take no new work in {repo.name}. "
            "Sessions already running go on.",
        )
    else:
        messages.success(request, f"Dispatch resumed: {repo.name}'s ready beads can be taken.")
    return redirect(repo)


@roles.requires(roles.PAUSE_DISPATCH)
@require_POST
def pause_dispatch(request: HttpRequest, slug: str) -> HttpResponse:
    return set_dispatch(request, slug, paused=True)


@roles.requires(roles.PAUSE_DISPATCH)
@require_POST
def resume_dispatch(request: HttpRequest, slug: str) -> HttpResponse:
    return set_dispatch(request, slug, paused=False)


@login_required
@vary_on_headers("HX-Request")
def hook_page(request: HttpRequest) -> HttpResponse:
    workspace = Workspace.default()
    active = workspace.repositories.filter(active=True).order_by("name")
    # Any: the page gives each repository attributes of its own (hook_beads, claims, ...).
    repos: dict[int, Any] = {repo.pk: repo for repo in active}
    busy = hook.in_progress_counts()
    for repo in repos.values():
        repo.hook_beads, repo.ready_count, repo.claims, repo.waiting = [], 0, [], []
        repo.in_progress = busy.get(repo.pk, 0)
        repo.full = repo.in_progress >= repo.max_agents
    for bead in hook.first_ready_per_repository(workspace, READY_SHOWN):
        if repo := repos.get(bead.repository_id):  # not there: added since the first read
            bead.repository = repo  # its URL needs no query
            repo.hook_beads.append(bead)
            repo.ready_count = bead.ready_count  # type: ignore[attr-defined]  # annotated
    waiting = hook.waiting(repositories=list(repos)).only(*WAITING_FIELDS)
    for bead in waiting[:WAITING_SHOWN]:
        if repo := repos.get(bead.repository_id):
            bead.repository = repo
            repo.waiting.append(bead)
    live = Session.objects.filter(status__in=Session.LIVE, bead__repository__in=list(repos))
    live = live.select_related("agent", "bead").only(*CLAIM_FIELDS)
    for session in live.order_by("lease_expires_at", "pk"):
        if repo := repos.get(session.bead.repository_id):
            session.bead.repository = repo
            repo.claims.append(session)
    held = review_capacity.held_repositories(list(repos.values()))
    for repo in repos.values():
        repo.held = held.get(repo.pk, "")
    left = budgets.left_per_repository(list(repos))
    beads_left = budgets.left_per_bead([b.pk for r in repos.values() for b in r.hook_beads])
    for repo in repos.values():
        repo.budget_left = left.get(repo.pk)
        for bead in repo.hook_beads:
            bead.budget_left = beads_left.get(bead.pk)
    ctx = {
        "workspace": workspace,
        "repositories": list(repos.values()),
        "agent_budgets": budgets.left_per_agent(),
        "paused_agents": list(Agent.objects.paused().order_by("name")),
    }
    template = "corral/hook.html#hook" if is_partial(request) else "corral/hook.html"
    return render(request, template, ctx)


@roles.requires(roles.PAUSE_DISPATCH)
@require_POST
def resume_agent(request: HttpRequest, name: str) -> HttpResponse:
    """A person lets an agent paused by a rate limit take work again now."""
    agent = get_object_or_404(Agent, name=name)
    if dispatching.resume_agent(agent):
        audit.record(audit.Action.RESUME, f"agent {agent.name}", request=request)
        messages.success(request, f"{agent.name} takes work again.")
    else:
        messages.info(request, f"{agent.name} was not paused.")
    return redirect("hook")
