"""The hook on the dashboard: per repository, its ready beads in hook order and its live claims.

The content is a partial that polls itself every 3 seconds, always: a bead can
become ready at any moment (a blocker closes, a lease runs out, someone adds
one). The query count does not grow with repositories, beads or sessions.
"""

from operator import attrgetter

from django.contrib.auth.decorators import login_required
from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.vary import vary_on_headers

from agents.models import Session
from beads import hook
from beads.models import Bead
from workspace.htmx import is_partial
from workspace.models import Workspace

READY_SHOWN = 10
CLAIM_FIELDS = ["status", "lease_expires_at", "agent__name", "bead__title", "bead__repository"]


def first_ready(workspace, n=READY_SHOWN):
    """The first n ready beads of each repository, in hook order, in one query.

    Each carries `ready_count`, how many of its repository's beads are ready:
    window functions rank and count per repository, so only n rows per
    repository leave the database however long the hook is.
    """
    beads = hook.ready(workspace=workspace).only("id", "repository", "priority", "title", "scope")
    per_repo = {"partition_by": F("repository_id")}
    first = beads.annotate(
        rank=Window(RowNumber(), order_by=list(beads.query.order_by), **per_repo),
        ready_count=Window(Count("pk"), **per_repo),
    ).filter(rank__lte=n)
    # Sorted by rank here: filtering on a window wraps the query, and Django
    # 5.2 then keeps only the wave term of the outer ORDER BY when waves are on.
    return sorted(first, key=attrgetter("rank"))


def lease_left(expires, now):
    """Seconds left on a lease as m:ss, or "expired"."""
    if expires is None:
        return None, "no lease"
    seconds = int((expires - now).total_seconds())
    if seconds <= 0:
        return 0, "expired"
    return seconds, f"{seconds // 60}:{seconds % 60:02d}"


@login_required
@vary_on_headers("HX-Request")
def hook_page(request):
    workspace = Workspace.default()
    busy = Count("beads", filter=Q(beads__status=Bead.Status.IN_PROGRESS))
    repos = workspace.repositories.filter(active=True).annotate(in_progress=busy).order_by("name")
    repos = {repo.pk: repo for repo in repos}
    for repo in repos.values():
        repo.hook_beads, repo.ready_count, repo.claims = [], 0, []
        repo.full = repo.in_progress >= repo.max_agents
    for bead in first_ready(workspace):
        if repo := repos.get(bead.repository_id):  # not there: added since the first read
            bead.repository = repo  # its URL needs no query
            repo.hook_beads.append(bead)
            repo.ready_count = bead.ready_count
    live = Session.objects.filter(status__in=Session.LIVE, bead__repository__in=list(repos))
    live = live.select_related("agent", "bead").only(*CLAIM_FIELDS)
    now = timezone.now()
    for session in live.order_by("lease_expires_at", "pk"):
        session.seconds_left, session.lease = lease_left(session.lease_expires_at, now)
        if repo := repos.get(session.bead.repository_id):
            session.bead.repository = repo
            repo.claims.append(session)
    ctx = {"workspace": workspace, "repositories": list(repos.values())}
    template = "beads/hook.html#hook" if is_partial(request) else "beads/hook.html"
    return render(request, template, ctx)
