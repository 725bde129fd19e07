from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from agents import queues
from agents.models import Session
from agents.views import session_clock
from beads.models import Bead, Dependency
from workspace.models import Repository, Workspace


@login_required
def overview(request):
    workspace = Workspace.default()
    repositories = workspace.repositories.with_bead_counts()
    ctx = {"workspace": workspace, "repositories": repositories, "statuses": Bead.Status}
    return render(request, "workspace/overview.html", ctx)


def running_sessions(repo):
    """The repository's live sessions with their time left, in one query."""
    live = Session.objects.filter(bead__repository=repo, status__in=Session.LIVE)
    live = live.select_related("agent", "bead").order_by("created_at", "pk")
    now = timezone.now()
    sessions = list(live)
    for session in sessions:
        session.bead.repository = repo  # the time limit reads it: no query per row
        session.clock = session_clock(session, now)
    return sessions


@login_required
def repository(request, slug):
    repo = get_object_or_404(Repository, slug=slug)
    blocks = Dependency.objects.select_related("depends_on__repository").order_by("depends_on_id")
    beads = repo.beads.prefetch_related(Prefetch("dependencies", queryset=blocks))
    groups = [
        (label, [b for b in beads if b.status == value]) for value, label in Bead.Status.choices
    ]
    ctx = {"repo": repo, "groups": groups, "total": len(beads), "running": running_sessions(repo)}
    return render(request, "workspace/repository.html", ctx)


def set_dispatch(request, slug, paused):
    repo = get_object_or_404(Repository, slug=slug)
    changed = repo.set_dispatch_paused(paused)
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
        queues.enqueue_dispatch()
        messages.success(request, f"Dispatch resumed: {repo.name}'s ready beads can be taken.")
    return redirect(repo)


@login_required
@require_POST
def pause_dispatch(request, slug):
    return set_dispatch(request, slug, paused=True)


@login_required
@require_POST
def resume_dispatch(request, slug):
    return set_dispatch(request, slug, paused=False)
