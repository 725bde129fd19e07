from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, render

from beads.models import Bead, Dependency
from workspace.models import Repository, Workspace


@login_required
def overview(request):
    workspace = Workspace.default()
    repositories = workspace.repositories.with_bead_counts()
    ctx = {"workspace": workspace, "repositories": repositories, "statuses": Bead.Status}
    return render(request, "workspace/overview.html", ctx)


@login_required
def repository(request, slug):
    repo = get_object_or_404(Repository, slug=slug)
    blocks = Dependency.objects.select_related("depends_on__repository").order_by("depends_on_id")
    beads = repo.beads.prefetch_related(Prefetch("dependencies", queryset=blocks))
    groups = [
        (label, [b for b in beads if b.status == value]) for value, label in Bead.Status.choices
    ]
    ctx = {"repo": repo, "groups": groups, "total": len(beads)}
    return render(request, "workspace/repository.html", ctx)
