"""A plan as it runs: its current wave, who works on each bead and for how
long, what holds it, and when it may be done.

The current wave is the first with a bead not closed (the hook's rule). What
holds a plan: beads of the current wave that are blocked, wait in review for
a person, came back from a failed check, or that the hook will not hand out
(in its own words, "waiting for review capacity" among them). The time to
finish is the rounds of work left times a round's time: the median duration of
the workspace's recent successful sessions, plus, when a bead left is in a
repository where a person reviews, the median wait of its recent submissions
for that person (review time). Each wave takes ceil(beads not closed / agents
per wave) rounds.
"""

import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from agents.models import Session, Submission
from beads import hook
from beads.models import Bead, Plan
from workspace.failures import headline
from workspace.models import Repository

RECENT_SESSIONS = 200  # successful sessions the median is taken over


@dataclass
class Hold:
    bead: Bead
    why: str
    url: str


@dataclass
class Status:
    current: int | None  # wave index (0-based); None when every bead has closed
    working: dict[str, Session] = field(default_factory=dict)  # bead id -> live session
    running_s: dict[str, int] = field(default_factory=dict)
    holds: list[Hold] = field(default_factory=list)
    median_s: float | None = None
    review_s: float | None = None  # the median review wait, when it counts
    eta_s: float | None = None


def median_session_s(workspace_id: int) -> float | None:
    done = Session.objects.filter(
        status=Session.Status.SUCCEEDED,
        bead__repository__workspace_id=workspace_id,
        started_at__isnull=False,
        ended_at__isnull=False,
    ).order_by("-ended_at")[:RECENT_SESSIONS]
    durations = [
        (end - start).total_seconds()
        for start, end in done.values_list("started_at", "ended_at")
        if start and end
    ]
    return statistics.median(durations) if durations else None


def median_review_s(workspace_id: int) -> float | None:
    """The median time recent reviewed submissions waited for their person (from
    their gates' start, or their queueing, to the review)."""
    reviewed = Submission.objects.filter(
        repository__workspace_id=workspace_id, reviewed_at__isnull=False
    ).order_by("-reviewed_at")[:RECENT_SESSIONS]
    waits = [
        (at - (started or queued)).total_seconds()
        for at, started, queued in reviewed.values_list("reviewed_at", "started_at", "queued_at")
        if at is not None
    ]
    return statistics.median(waits) if waits else None


def reviewed_by_a_person(waves: list[list[Bead]]) -> bool:
    """Whether a bead left to land is in a repository where a person reviews."""
    return any(
        b.status != Bead.Status.CLOSED and b.repository.review_mode == Repository.Review.HUMAN
        for wave in waves
        for b in wave
    )


def ready_among(beads: list[Bead]) -> set[str]:
    """The ids of those of `beads` the hook would hand out now: one query per
    repository (what hook.readiness asks of each bead alone)."""
    by_repo: dict[int, list[Bead]] = {}
    for bead in beads:
        by_repo.setdefault(bead.repository_id, []).append(bead)
    found: set[str] = set()
    for members in by_repo.values():
        ready = hook.ready(repository=members[0].repository).filter(pk__in=[b.pk for b in members])
        found.update(ready.values_list("pk", flat=True))
    return found


def hold_of(bead: Bead, review: dict[str, Submission], ready: set[str]) -> Hold | None:
    """What holds `bead`, if anything; `ready`: the ids of the wave's ready beads."""
    if bead.status == Bead.Status.BLOCKED:
        return Hold(
            bead,
            f"blocked: {headline(bead.last_failure) or 'set by a person'}",
            bead.get_absolute_url(),
        )
    if (sub := review.get(bead.id)) is not None:
        return Hold(bead, "in review, waiting for a person", sub.get_absolute_url())
    if bead.status == Bead.Status.OPEN and bead.last_failure:
        return Hold(bead, f"came back: {headline(bead.last_failure)}", bead.get_absolute_url())
    if bead.status == Bead.Status.OPEN and bead.id not in ready:
        repository = bead.repository
        why = hook.why_not_ready(bead)  # reads the bead again, forgetting its repository
        if bead.repository_id == repository.pk:
            bead.repository = repository  # its card then needs no query for it
        return Hold(bead, why, bead.get_absolute_url())
    return None


def status_of(plan: Plan, waves: list[list[Bead]], now: datetime | None = None) -> Status:
    now = now or timezone.now()
    pending = [
        n for n, wave in enumerate(waves) if any(b.status != Bead.Status.CLOSED for b in wave)
    ]
    status = Status(current=pending[0] if pending else None)
    ids = [b.id for wave in waves for b in wave]
    live = Session.objects.filter(bead_id__in=ids, status__in=Session.LIVE).select_related("agent")
    for session in live:
        status.working[session.bead_id] = session
        started = session.started_at or session.created_at
        status.running_s[session.bead_id] = int((now - started).total_seconds())
    if status.current is not None and plan.status == Plan.Status.ACTIVE:
        current = waves[status.current]
        review = {
            s.bead_id: s
            for s in Submission.objects.filter(
                bead__in=current, status=Submission.Status.AWAITING_REVIEW
            )
        }
        ready = ready_among([b for b in current if b.status == Bead.Status.OPEN])
        status.holds = [h for b in current if (h := hold_of(b, review, ready)) is not None]
    status.median_s = median_session_s(plan.workspace_id)
    if status.median_s is not None:
        cap = max(1, plan.max_agents_per_wave)
        rounds = sum(
            math.ceil(sum(b.status != Bead.Status.CLOSED for b in wave) / cap) for wave in waves
        )
        if reviewed_by_a_person(waves):
            status.review_s = median_review_s(plan.workspace_id)
        status.eta_s = rounds * (status.median_s + (status.review_s or 0))
    return status


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "no finished session yet to estimate from"
    if seconds <= 0:
        return "done"
    return f"about {timedelta(seconds=round(seconds))}"
