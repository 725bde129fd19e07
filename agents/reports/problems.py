"""Problems, found before a person asks (like `gt feed --problems`).

- A *stalled* session: running, its lease alive (its worker is there), but its
  agent has printed nothing and sent no heartbeat for CORRAL_STALL_SECONDS.
  Not *lost* (the lease expired: reconcile() ends those). An agent that
  thinks quietly but heartbeats is not stalled.
- A *stuck* repository: its lead has work (queued, checking, approved) and
  none of its submissions started or finished for CORRAL_STUCK_SECONDS.
  Submissions awaiting review wait for a person, not the lead.
- A *churning* bead: not closed, refused CORRAL_CHURN_REFUSALS times or more
  (by gates, conflicts or people).
- An *upstream* problem: a repository stopped because its upstream's history
  was rewritten (or being rebuilt on it), or whose pushes keep failing
  (Repository.PUSH_FAILURES_PROBLEM in a row).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from agents.models import Session, Submission
from beads.models import Bead
from workspace.models import Repository


@dataclass
class Problems:
    stalled: list[Session]
    stuck: list[Any]  # annotated Repository rows
    churning: list[Bead]
    upstream: list[Repository] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.stalled) + len(self.stuck) + len(self.churning) + len(self.upstream)


def stalled(now: datetime | None = None) -> list[Session]:
    now = now or timezone.now()
    quiet_since = now - timedelta(seconds=settings.STALL_SECONDS)
    sessions = (
        Session.objects.filter(status=Session.Status.RUNNING, lease_expires_at__gt=now)
        .annotate(last_sign=Coalesce("agent_seen_at", "started_at", "created_at"))
        .filter(last_sign__lt=quiet_since)
        .select_related("agent", "bead__repository")
        .order_by("last_sign")
    )
    return list(sessions)


def stuck(now: datetime | None = None) -> list[Any]:
    """Repositories annotated with `waiting`, `oldest` (queued_at) and `moved`."""
    now = now or timezone.now()
    still_since = now - timedelta(seconds=settings.STUCK_SECONDS)
    for_lead = Q(submissions__status__in=Submission.FOR_LEAD)
    # Only repositories whose lead has had work waiting that long are aggregated
    # (off the submissions' status index): none, most of the time.
    waiting_long = Submission.objects.filter(
        status__in=Submission.FOR_LEAD, queued_at__lt=still_since
    ).values("repository_id")
    repos = (
        Repository.objects.filter(pk__in=waiting_long)
        .annotate(
            waiting=Count("submissions", filter=for_lead),
            oldest=Min("submissions__queued_at", filter=for_lead),
            moved=Greatest(
                Coalesce(Max("submissions__started_at"), Min("submissions__queued_at")),
                Coalesce(Max("submissions__finished_at"), Min("submissions__queued_at")),
                Coalesce(Max("submissions__reviewed_at"), Min("submissions__queued_at")),
            ),
        )
        .filter(waiting__gt=0, oldest__lt=still_since, moved__lt=still_since)
        .order_by("moved")
    )
    return list(repos)


def churning() -> list[Bead]:
    """Counted from the refused submissions (few, off the status index), not by
    joining every bead that is not closed with its submissions."""
    refused = Submission.objects.filter(status__in=list(Submission.REFUSALS))
    per_bead = refused.values("bead_id").annotate(n=Count("*")).order_by()
    counts = dict(per_bead.filter(n__gte=settings.CHURN_REFUSALS).values_list("bead_id", "n"))
    beads = Bead.objects.filter(pk__in=list(counts)).exclude(status=Bead.Status.CLOSED)
    found: list[Bead] = list(beads.select_related("repository"))
    latest = latest_sessions([b.pk for b in found])
    for bead in found:
        bead.refusals = counts[bead.pk]  # type: ignore[attr-defined]  # for the page
        bead.latest_session = latest.get(bead.pk)  # type: ignore[attr-defined]  # its log
    found.sort(key=lambda b: (-b.refusals, b.pk))  # type: ignore[attr-defined]
    return found


def latest_sessions(bead_ids: list[str]) -> dict[str, Any]:
    """Each bead's newest session, in one query."""
    latest: dict[str, Any] = {}
    for session in Session.objects.filter(bead_id__in=bead_ids).order_by("bead_id", "-created_at"):
        latest.setdefault(session.bead_id, session)
    return latest


def upstream() -> list[Repository]:
    """Repositories that stopped landing (a rewritten upstream) or cannot push."""
    stopped = ~Q(landing=Repository.Landing.FOLLOWING)
    failing = Q(push=True, push_failures__gte=Repository.PUSH_FAILURES_PROBLEM)
    return list(Repository.objects.filter(stopped | failing).order_by("name"))


def find() -> Problems:
    now = timezone.now()
    return Problems(stalled(now), stuck(now), churning(), upstream())


def count() -> int:
    return find().count
