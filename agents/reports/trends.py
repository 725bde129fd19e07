"""How things went over time, for the pages' charts: a plan's burn-down, each
repository's landings per day, a lead queue's depth. Each is a query or two
whose answer does not grow with the history: a point per bead closed (a
plan's beads are tens), a count per repository and day, a count per sample.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, Min, Q
from django.utils import timezone

from agents.models import Submission
from agents.reports.usage import SessionDay, last_days
from beads.models import Bead, Plan, WaveBead
from workspace.models import Repository, Workspace

DEPTH_SAMPLES = 48  # points on a lead queue's depth chart
DEPTH_WINDOW = timedelta(hours=24)  # at most; less when the queue's history is shorter


@dataclass
class Point:
    at: datetime
    values: list[int]


def burndown(plan: Plan, now: datetime | None = None) -> list[Point]:
    """[done, left] among the plan's beads: when the plan was made, at each bead's
    close, and now (or at its last close, once every bead is done). A bead
    counts as done from its close on if it is closed now (one reverted and
    open again counts as left all along)."""
    now = now or timezone.now()
    rows = WaveBead.objects.filter(plan=plan).values_list("bead__status", "bead__closed_at")
    beads = list(rows)
    if not beads:
        return []
    closes = sorted(
        max(closed_at, plan.created_at)
        for status, closed_at in beads
        if status == Bead.Status.CLOSED and closed_at is not None
    )
    total = len(beads)
    points = [Point(plan.created_at, [0, total])]
    for done, at in enumerate(closes, start=1):
        points.append(Point(at, [done, total - done]))
    if len(closes) < total:
        points.append(Point(max(now, points[-1].at), [len(closes), total - len(closes)]))
    return points


def landings_per_day(workspace: Workspace, days: int) -> dict[str, dict[date, int]]:
    """{repository name: {day: submissions committed}} over the last `days` days."""
    since = datetime.combine(last_days(days)[0], time.min, tzinfo=UTC)
    landed = Submission.objects.filter(
        status=Submission.Status.COMMITTED,
        finished_at__gte=since,
        repository__workspace=workspace,
    )
    rows = landed.values("repository_id", day=SessionDay("finished_at")).annotate(n=Count("*"))
    counts = list(rows.order_by())
    names = dict(
        Repository.objects.filter(pk__in={r["repository_id"] for r in counts}).values_list(
            "pk", "name"
        )
    )
    series: dict[str, dict[date, int]] = {}
    for row in counts:
        series.setdefault(names[row["repository_id"]], {})[row["day"]] = row["n"]
    return {name: dict(sorted(series[name].items())) for name in sorted(series)}


def sample_times(start: datetime, end: datetime, samples: int) -> list[datetime]:
    step = (end - start) / max(samples - 1, 1)
    return [start + step * i for i in range(samples)]


def queue_depth(
    repo: Repository, now: datetime | None = None, samples: int = DEPTH_SAMPLES
) -> list[Point]:
    """How many of the repository's submissions were unfinished (queued, being
    gated, waiting for review or for their change set) at `samples` moments
    from the first one still unfinished DEPTH_WINDOW ago (or queued since) to
    now. A submission counts from its queued_at (a change set member gated again
    from its new one) to its finished_at. Two queries."""
    now = now or timezone.now()
    window = Submission.objects.filter(repository=repo, queued_at__lte=now).filter(
        Q(finished_at__isnull=True) | Q(finished_at__gt=now - DEPTH_WINDOW)
    )
    first = window.aggregate(first=Min("queued_at"))["first"]
    if first is None:
        return []
    times = sample_times(max(first, now - DEPTH_WINDOW), now, samples)
    counts = window.aggregate(
        **{
            f"at{i}": Count(
                "pk",
                filter=Q(queued_at__lte=at) & (Q(finished_at__isnull=True) | Q(finished_at__gt=at)),
            )
            for i, at in enumerate(times)
        }
    )
    return [Point(at, [counts[f"at{i}"]]) for i, at in enumerate(times)]
