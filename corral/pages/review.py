"""The review queue (`/review/`): every submission awaiting a person, across
repositories, oldest first, with filters; cleared from the keyboard
(static/review.js: j/k move, o opens, a approves, r requests changes, x
rejects with a reason, ? lists the keys). Approving and rejecting go through
the submission's own views (corral/pages/sessions.py `decide`, the conditional
moves of agents/moves/outcomes.py), which answer an htmx request with
`decided` below: the row removed, a line saying what happened, the count
anew. Below the queue, the captured learnings waiting for approval, with their
source. Also the count in the navigation and the review figures.
"""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.vary import vary_on_headers

from agents.models import Submission
from agents.reports import reviews
from knowledge import curate
from workspace import roles
from workspace.htmx import is_partial

FIGURE_DAYS = 30
SHOWN = 50  # the oldest this many: a person clears them first, and the page stays quick


@login_required
@vary_on_headers("HX-Request")
def review_queue(request: HttpRequest) -> HttpResponse:
    filters = reviews.Filters.read(request.GET)
    names = reviews.person_names(request.user)
    found = reviews.queue(filters, request.user)
    rows = found[:SHOWN]
    for sub in rows:
        sub.asks_me = bool(sub.review_owners) and reviews.asks(sub.review_owners, names)  # type: ignore[attr-defined]
    ctx = {
        "rows": rows,
        "more": len(found) - len(rows),
        "filters": filters,
        "filtered": bool(filters.query()),
        "may_review": request.user.has_perm(roles.REVIEW),
    }
    if is_partial(request):
        return render(request, "corral/review.html#queue", ctx)
    ctx["choices"] = reviews.filter_choices()
    ctx["waiting"], ctx["waiting_total"] = curate.waiting_candidates()  # learnings, below the queue
    return render(request, "corral/review.html", ctx)


@login_required
def review_count(request: HttpRequest) -> HttpResponse:
    """The navigation's badge: how many submissions wait for this person."""
    return render(
        request, "corral/review.html#count", {"waiting": reviews.waiting_for(request.user)}
    )


@login_required
def review_figures(request: HttpRequest) -> HttpResponse:
    return render(request, "corral/review_figures.html", {"figures": reviews.figures(FIGURE_DAYS)})


def decided(request: HttpRequest, sub: Submission, level: str, text: str) -> HttpResponse:
    """An approval or rejection made from the queue: the row goes (unless the
    person may not decide on it: it stays, with the reason said), the status
    line says what happened, and the badge counts again (HX-Trigger)."""
    keep = level == "error" and sub.status == Submission.Status.AWAITING_REVIEW
    ctx = {"sub": sub, "level": level, "text": text, "keep": keep}
    response = render(request, "corral/review.html#decided", ctx)
    response["HX-Trigger"] = "review-changed"
    if keep:
        response["HX-Reswap"] = "none"  # the row stays as it is; only the status line changes
    return response
