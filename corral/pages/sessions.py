"""The lead's pages (a repository's queue, one submission with its diff, review
and revert) and a session's page (its live log, time bar, changed files,
context pack and final diff, with a Cancel button).

The queue and a submission's status are partials that poll themselves every
two seconds while something is in flight, and stop once nothing is. A
session's status and its log poll every second while it is live: the log
poller asks only for the chunks after the last one it has.
"""

from datetime import timedelta
from typing import Any
from uuid import UUID

import redis
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from agents.models import Session, Submission
from agents.moves import dispatching, lifecycle, outcomes
from agents.reports import decisions, logtail, trends, usage, workers
from beads.models import Bead
from corral.pages import charts, diffs, review
from corral.pages.display import context_budget, session_clock
from corral.pages.overview import webhook_url
from workspace import audit, gitops, roles
from workspace.htmx import is_partial
from workspace.models import Repository

FINISHED_SHOWN = 20
CONTEXT_SHOWN_CHARS = 200_000
# After a session ends, its runner may still be draining the agent's last
# output (a cancel: SIGTERM, the grace period, SIGKILL): the log stays open.
LOG_DRAIN_SECONDS = 15


def submissions() -> QuerySet[Submission]:
    return Submission.objects.select_related("bead", "session__agent").prefetch_related(
        "gate_results"
    )


def recent_commits(repo: Repository) -> list[dict[str, str]]:
    """The branch's newest commits, read from git once per branch head: the
    queue polls every two seconds, and the head moves far less often."""
    head = gitops.head_sha(repo.canonical_path, repo.branch)
    key = f"corral:commits:{repo.slug}:{head}"
    commits = cache.get(key)
    if commits is None:
        commits = gitops.log_with_trailers(repo.canonical_path, repo.branch)
        cache.set(key, commits, timeout=3600)
    return commits


def commits_with_beads(repo: Repository) -> list[dict[str, Any]]:
    """The branch's newest commits, each with the beads its `Bead:` trailers name."""
    commits: list[dict[str, Any]] = [dict(c) for c in recent_commits(repo)]
    ids = {i.strip() for c in commits for i in c.get("bead", "").split(",") if i.strip()}
    beads = Bead.objects.select_related("repository").in_bulk(ids)
    for c in commits:
        c["beads"] = [beads[i.strip()] for i in c.get("bead", "").split(",") if i.strip() in beads]
    return commits


@login_required
@vary_on_headers("HX-Request")
def lead_queue(request: HttpRequest, slug: str) -> HttpResponse:
    repo = get_object_or_404(Repository, slug=slug)
    mine = submissions().filter(repository=repo)
    in_flight = list(mine.filter(status__in=Submission.UNFINISHED).order_by("queued_at", "pk"))
    finished = mine.exclude(status__in=Submission.UNFINISHED).order_by("-finished_at", "-pk")
    ctx = {
        "repo": repo,
        "in_flight": in_flight,
        "finished": finished[:FINISHED_SHOWN],
        "commits": commits_with_beads(repo),
        "webhook_url": webhook_url(request, repo),
    }
    if is_partial(request):  # the queue polls; its history is drawn once
        return render(request, "agents/lead.html#queue", ctx)
    ctx["depth"] = charts.over_time(trends.queue_depth(repo), ["queue"], "submissions")
    return render(request, "agents/lead.html", ctx)


@login_required
@vary_on_headers("HX-Request")
def submission(request: HttpRequest, pk: int) -> HttpResponse:
    related = submissions().select_related("repository", "reviewed_by", "bead__repository")
    sub = get_object_or_404(related, pk=pk)
    next_review, waiting = decisions.next_review(sub)
    ctx = {
        "sub": sub,
        "in_flight": sub.status in Submission.UNFINISHED,
        "own_bead": outcomes.reviews_own_bead(sub, request.user),
        "next_review": next_review,
        "others_waiting": waiting,
    }
    if is_partial(request):  # the status polls; the diff is drawn once
        return render(request, "agents/submission.html#status", ctx)
    ctx.update(diffs.diff_context(request, sub))
    return render(request, "agents/submission.html", ctx)


def decide(request: HttpRequest, pk: int, approve: bool) -> HttpResponse:
    """Approve or reject, from the submission's page or (htmx) from the review queue."""
    sub = get_object_or_404(Submission.objects.select_related("session", "bead"), pk=pk)
    level, text = decision(request, sub, approve)
    if is_partial(request):
        return review.decided(request, sub, level, text)
    getattr(messages, level)(request, text)
    return redirect("submission", pk=sub.pk)


def decision(request: HttpRequest, sub: Submission, approve: bool) -> tuple[str, str]:
    """Make the move and audit it; (message level, what to tell the person)."""
    reason = request.POST.get("reason", "").strip()
    try:
        decided = outcomes.review(sub, request.user, approve=approve, reason=reason)
    except outcomes.ReviewRefused as refused:
        return "error", str(refused)
    if not decided:
        return "error", "This submission is no longer waiting for review."
    audit.record(
        audit.Action.APPROVE if approve else audit.Action.REJECT,
        sub.bead_id,
        repository=sub.repository,
        detail=f"submission {sub.pk}" + (f": {reason}" if reason else ""),
        request=request,
    )
    if approve and sub.status == Submission.Status.AWAITING_REVIEW:
        return "success", f"Approved {sub.bead_id}: its rules want one more person."
    if approve:
        return "success", "Approved: the lead will commit it."
    return "success", f"Rejected: {sub.bead_id} is back on the hook."


@roles.requires(roles.REVIEW)
@require_POST
def approve(request: HttpRequest, pk: int) -> HttpResponse:
    return decide(request, pk, approve=True)


@roles.requires(roles.REVIEW)
@require_POST
def reject(request: HttpRequest, pk: int) -> HttpResponse:
    return decide(request, pk, approve=False)


@roles.requires(roles.REVERT)
@require_POST
def revert(request: HttpRequest, bead_id: str) -> HttpResponse:
    bead = get_object_or_404(Bead.objects.select_related("repository"), pk=bead_id)
    if outcomes.request_bead_revert(bead):
        audit.record(
            audit.Action.REVERT,
            bead.pk,
            repository=bead.repository,
            detail=f"commit {bead.commit_sha}",
            request=request,
        )
        messages.success(request, f"Revert queued: the lead will undo {bead.commit_sha[:12]}.")
    else:
        status = bead.get_status_display()
        messages.error(request, f"Only a closed bead with a commit can be reverted ({status}).")
    return redirect("lead", slug=bead.repository.slug)


# A session's page.


def context_pack(session: Session) -> str | None:
    """The context pack as the agent got it (kept in the database), or None."""
    return session.context[:CONTEXT_SHOWN_CHARS] or None


def log_open(session: Session) -> bool:
    """More log may come: the session is live, or it has just ended and its runner
    is still draining the agent's last output (its exit code is not in yet)."""
    if session.status in Session.LIVE:
        return True
    if not session.pid or session.exit_code is not None or session.ended_at is None:
        return False
    drain = timedelta(seconds=settings.KILL_GRACE_SECONDS + LOG_DRAIN_SECONDS)
    return timezone.now() - session.ended_at < drain


@login_required
@vary_on_headers("HX-Request")
def session_page(request: HttpRequest, pk: UUID) -> HttpResponse:
    related = Session.objects.select_related("agent", "bead__repository", "submission")
    session = get_object_or_404(related, pk=pk)
    live = session.status in Session.LIVE
    ctx = {
        "session": session,
        "live": live,
        "clock": session_clock(session),
        "budget": context_budget(session),
        "injections": session.injections.select_related("learning__source_bead").order_by("rank"),
        "usage": usage.for_session(session),
        "bead_usage": usage.for_bead(session.bead_id),
    }
    part = request.GET.get("part", "status")
    if is_partial(request) and part in ("status", "context"):
        ctx["context"] = context_pack(session) if part == "context" else None
        return render(request, f"agents/session.html#{part}", ctx)
    # The chunks are read after the status: a log that is closed by then is complete.
    chunks, skipped = logtail.tail(session)
    after = chunks[-1].seq if chunks else -1
    ctx.update(
        context=context_pack(session), chunks=chunks, after=after, log_open=log_open(session)
    )
    ctx["log_skipped"] = skipped
    return render(request, "agents/session.html", ctx)


@login_required
def session_log_text(request: HttpRequest, pk: UUID) -> StreamingHttpResponse:
    """The whole log as plain text, streamed chunk by chunk."""
    session = get_object_or_404(Session.objects.only("pk"), pk=pk)
    texts = session.log_chunks.order_by("seq").values_list("text", flat=True).iterator()
    return StreamingHttpResponse(texts, content_type="text/plain; charset=utf-8")


@login_required
def session_log(request: HttpRequest, pk: UUID) -> HttpResponse:
    """The log chunks after `after`, and the poller that asks for the next ones."""
    fields = ["status", "pid", "exit_code", "ended_at"]
    session = get_object_or_404(Session.objects.only(*fields), pk=pk)
    try:
        after = int(request.GET.get("after", -1))
    except ValueError:
        return HttpResponseBadRequest("after: give the seq of the last chunk you have")
    still_open = log_open(session)  # read before the chunks, as on the page
    chunks = list(session.log_chunks.filter(seq__gt=after).order_by("seq"))
    after = chunks[-1].seq if chunks else after
    ctx = {"session": session, "chunks": chunks, "after": after, "log_open": still_open}
    response = render(request, "agents/session.html#log-update", ctx)
    if not still_open:
        response["HX-Trigger"] = "session-ended"  # the status part refreshes once more
    return response


@roles.requires(roles.CANCEL)
@require_POST
def cancel_session(request: HttpRequest, pk: UUID) -> HttpResponse:
    session = get_object_or_404(Session.objects.select_related("bead__repository"), pk=pk)
    if lifecycle.cancel(session, request.user):
        audit.record(
            audit.Action.CANCEL,
            session.bead_id,
            repository=session.bead.repository,
            detail=f"session {session.pk}",
            request=request,
        )
        messages.success(
            request,
            f"Cancelled: the agent is being stopped and {session.bead_id} is back on the hook.",
        )
    else:
        status = session.get_status_display().lower()
        messages.error(request, f"This session is no longer live ({status}): nothing to cancel.")
    return redirect(session)


@roles.requires(roles.RUN_DISPATCH)
@require_POST
def run_dispatch(request: HttpRequest) -> HttpResponse:
    """Ask for a dispatch now, and say plainly whether any worker will act on it."""
    try:
        sessions, defaults = workers.listening()
    except redis.RedisError as e:
        messages.error(request, f"Redis cannot be reached, nothing was requested: {e}")
        return redirect("overview")
    dispatching.ask_dispatch()
    audit.record(audit.Action.DISPATCH, "all repositories", request=request)
    if not sessions:
        messages.error(
            request,
            mark_safe(  # constant text
                "No session worker is running: start <code>manage.py up</code> or "
                "<code>manage.py rqworker sessions</code>."
            ),
        )
    elif not defaults:
        messages.warning(
            request,
            mark_safe(  # constant text
                "Dispatch requested, but no worker listens on the default queue to run it: "
                "start <code>manage.py up</code> or <code>manage.py rqworker default</code>."
            ),
        )
    else:
        plural = "s" if sessions != 1 else ""
        messages.success(
            request, f"Dispatch requested: {sessions} session worker{plural} listening."
        )
    return redirect("overview")
