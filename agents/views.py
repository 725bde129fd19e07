"""The lead's pages: a repository's queue, one submission with its diff, review and revert.

The queue and a submission's status are partials that poll themselves every
two seconds while something is in flight, and stop once nothing is.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from agents import lead, queues
from agents.models import Submission
from beads.models import Bead
from workspace import gitops
from workspace.models import Repository

FINISHED_SHOWN = 20
DIFF_LINES_SHOWN = 5000
# A hunk's lines by their first character; any other line ends the hunk (a file header).
HUNK_BODY = {"+": "add", "-": "del", " ": "ctx", "\\": "meta"}


def is_partial(request):
    """An htmx poll wants the partial; htmx restoring history wants the whole page."""
    return request.htmx and not request.htmx.history_restore_request


def submissions():
    return Submission.objects.select_related("bead", "session__agent").prefetch_related(
        "gate_results"
    )


def commits_with_beads(repo):
    """The branch's newest commits, each with the beads its `Bead:` trailers name."""
    commits = gitops.log_with_trailers(repo.canonical_path, repo.branch)
    ids = {i.strip() for c in commits for i in c.get("bead", "").split(",") if i.strip()}
    beads = Bead.objects.select_related("repository").in_bulk(ids)
    for c in commits:
        c["beads"] = [beads[i.strip()] for i in c.get("bead", "").split(",") if i.strip() in beads]
        c["when"] = parse_datetime(c.get("date", ""))
    return commits


def diff_lines(lines):
    """(css class, text) per line of a git diff: add, del, hunk, meta or ctx."""
    shown, in_hunk = [], False
    for text in lines:
        if text.startswith("@@"):
            kind, in_hunk = "hunk", True
        elif in_hunk and text[:1] in HUNK_BODY:
            kind = HUNK_BODY[text[:1]]
        else:
            kind, in_hunk = "meta", False
        shown.append((kind, text))
    return shown


@login_required
@vary_on_headers("HX-Request")
def lead_queue(request, slug):
    repo = get_object_or_404(Repository, slug=slug)
    mine = submissions().filter(repository=repo)
    in_flight = list(mine.filter(status__in=Submission.IN_FLIGHT).order_by("queued_at", "pk"))
    finished = mine.exclude(status__in=Submission.IN_FLIGHT).order_by("-finished_at", "-pk")
    ctx = {
        "repo": repo,
        "in_flight": in_flight,
        "finished": finished[:FINISHED_SHOWN],
        "commits": commits_with_beads(repo),
    }
    template = "agents/lead.html#queue" if is_partial(request) else "agents/lead.html"
    return render(request, template, ctx)


@login_required
@vary_on_headers("HX-Request")
def submission(request, pk):
    related = submissions().select_related("repository", "reviewed_by", "bead__repository")
    sub = get_object_or_404(related, pk=pk)
    ctx = {"sub": sub, "in_flight": sub.status in Submission.IN_FLIGHT}
    if is_partial(request):
        return render(request, "agents/submission.html#status", ctx)
    lines = sub.session.patch.splitlines()
    ctx.update(diff=diff_lines(lines[:DIFF_LINES_SHOWN]), diff_cut=len(lines) > DIFF_LINES_SHOWN)
    return render(request, "agents/submission.html", ctx)


def decide(request, pk, approve):
    sub = get_object_or_404(Submission.objects.select_related("session", "bead"), pk=pk)
    reason = request.POST.get("reason", "").strip()
    if not lead.review(sub, request.user, approve=approve, reason=reason):
        messages.error(request, "This submission is no longer waiting for review.")
    elif approve:
        messages.success(request, "Approved: the lead will commit it.")
    else:
        messages.success(request, f"Rejected: {sub.bead_id} is back on the hook.")
    return redirect("submission", pk=sub.pk)


@login_required
@require_POST
def approve(request, pk):
    return decide(request, pk, approve=True)


@login_required
@require_POST
def reject(request, pk):
    return decide(request, pk, approve=False)


@login_required
@require_POST
def revert(request, bead_id):
    bead = get_object_or_404(Bead.objects.select_related("repository"), pk=bead_id)
    if bead.status == Bead.Status.CLOSED and bead.commit_sha:
        queues.enqueue_revert(bead)
        messages.success(request, f"Revert queued: the lead will undo {bead.commit_sha[:12]}.")
    else:
        status = bead.get_status_display()
        messages.error(request, f"Only a closed bead with a commit can be reverted ({status}).")
    return redirect("lead", slug=bead.repository.slug)
