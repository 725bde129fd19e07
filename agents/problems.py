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
"""

from dataclasses import dataclass
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

    @property
    def count(self) -> int:
        return len(self.stalled) + len(self.stuck) + len(self.churning)


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
    repos = (
        Repository.objects.annotate(
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
    refused = list(Submission.REFUSALS)
    beads = (
        Bead.objects.exclude(status=Bead.Status.CLOSED)
        .annotate(refusals=Count("submissions", filter=Q(submissions__status__in=refused)))
        .filter(refusals__gte=settings.CHURN_REFUSALS)
        .select_related("repository")
        .order_by("-refusals", "pk")
    )
    found: list[Bead] = list(beads)
    latest = latest_sessions([b.pk for b in found])
    for bead in found:
        bead.latest_session = latest.get(bead.pk)  # type: ignore[attr-defined]  # its log
    return found


def latest_sessions(bead_ids: list[str]) -> dict[str, Any]:
    """Each bead's newest session, in one query."""
    latest: dict[str, Any] = {}
    for session in Session.objects.filter(bead_id__in=bead_ids).order_by("bead_id", "-created_at"):
        latest.setdefault(session.bead_id, session)
    return latest


def find() -> Problems:
    now = timezone.now()
    return Problems(stalled(now), stuck(now), churning())


def count() -> int:
    return find().count
