"""What `manage.py up` tells its terminal as it happens: sessions starting and
ending, beads landing, submissions refused, and reviews and lessons waiting
for a person; and, when it stops, how many of each.

Read from the rows, once a second: the database holds what happened, so no
process has to report to `up`, and a worker that dies takes nothing of this
with it. Each poll reads the rows whose time falls in a window reaching
LOOKBACK back, so a row committed late (a long transaction) is still seen,
and tells each event once.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from agents.models import Session, Submission
from agents.reports.decisions import failure_headline, lessons_waiting
from workspace.models import Workspace

LOOKBACK = timedelta(seconds=30)
ENDED = [Session.Status.SUBMITTED, Session.Status.SUCCEEDED, *Session.ENDINGS]
REFUSED = list(Submission.REFUSALS)
TITLE_CHARS = 60


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str  # started, ended, landed, refused, review, lesson
    text: str


@dataclass
class Tally:
    """What the feed has told since it started."""

    sessions: int = 0
    landed: int = 0
    refused: int = 0


class Feed:
    def __init__(self, base_url: str, since: datetime | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.since = since or timezone.now()
        self.polled = self.since
        self.told: dict[tuple[str, Any], datetime] = {}  # (kind, row) -> its time
        self.waiting: set[tuple[str, int]] = set()  # reviews and lessons told, still waiting
        self.tally = Tally()

    def poll(self) -> list[Event]:
        """The events since the last poll, oldest first."""
        now = timezone.now()
        after = max(self.since, self.polled - LOOKBACK)
        events = self.sessions(after) + self.finished(after)
        events.sort(key=lambda event: event.at)
        events += self.decisions(now)
        self.told = {key: at for key, at in self.told.items() if at >= after}
        self.polled = now
        return events

    def link(self, obj: Any) -> str:
        return f"{self.base_url}{obj.get_absolute_url()}"

    def tell(self, kind: str, key: Any, at: datetime, text: str) -> list[Event]:
        if (kind, key) in self.told:
            return []
        self.told[kind, key] = at
        return [Event(at, kind, text)]

    def sessions(self, after: datetime) -> list[Event]:
        rows = Session.objects.select_related("agent", "bead")
        live = rows.filter(status__in=Session.LIVE, started_at__gte=after)
        recent = rows.filter(status__in=ENDED, ended_at__gte=after, started_at__isnull=False)
        ended = list(recent.select_related("submission"))
        events = []
        for session in [*live, *(s for s in ended if s.started_at and s.started_at >= after)]:
            assert session.started_at is not None
            said = f"session started: {session.agent.name} on {about(session.bead)}"
            events += self.tell("started", session.pk, session.started_at, said)
        for session in ended:
            assert session.ended_at is not None
            said = f"session ended: {session.agent.name} on {session.bead_id}, {ending(session)}"
            events += self.tell("ended", session.pk, session.ended_at, said)
        self.tally.sessions += sum(event.kind == "started" for event in events)
        return events

    def finished(self, after: datetime) -> list[Event]:
        rows = Submission.objects.select_related("bead", "repository")
        events = []
        for sub in rows.filter(status=Submission.Status.COMMITTED, finished_at__gte=after):
            assert sub.finished_at is not None
            said = f"landed {sub.bead_id} as {sub.commit_sha[:10]} in {sub.repository.slug}"
            events += self.tell("landed", sub.pk, sub.finished_at, f"{said}: {title(sub.bead)}")
        for sub in rows.filter(status__in=REFUSED, finished_at__gte=after):
            assert sub.finished_at is not None
            said = f"refused {sub.bead_id}: {failure_headline(sub.reason) or sub.status}"
            events += self.tell("refused", sub.pk, sub.finished_at, said)
        self.tally.landed += sum(event.kind == "landed" for event in events)
        self.tally.refused += sum(event.kind == "refused" for event in events)
        return events

    def decisions(self, now: datetime) -> list[Event]:
        """Reviews and lessons that wait for a person, each told once while it waits."""
        waiting: dict[tuple[str, int], Event] = {}
        reviews = Submission.objects.filter(status=Submission.Status.AWAITING_REVIEW)
        for sub in reviews.select_related("bead", "repository").order_by("queued_at", "pk"):
            said = f"review waiting: {about(sub.bead)} in {sub.repository.slug}: {self.link(sub)}"
            waiting["review", sub.pk] = Event(now, "review", said)
        for workspace in Workspace.objects.all():
            for learning in lessons_waiting(workspace):
                said = (
                    f"lesson waiting for approval, learned from {learning.source_bead_id}'s "
                    f"{learning.lesson_of()}: {learning.title}: {self.link(learning)}"
                )
                waiting["lesson", learning.pk] = Event(now, "lesson", said)
        new = [event for key, event in waiting.items() if key not in self.waiting]
        self.waiting = set(waiting)
        return new

    def waiting_reviews(self) -> int:
        return Submission.objects.filter(status=Submission.Status.AWAITING_REVIEW).count()

    def summary(self) -> str:
        tally = self.tally
        return (
            f"{plural(tally.landed, 'bead')} landed, {tally.refused} refused, "
            f"{self.waiting_reviews()} waiting for review, {plural(tally.sessions, 'session')} run"
        )


def about(bead: Any) -> str:
    return f"{bead.pk} {title(bead)}"


def title(bead: Any) -> str:
    text = bead.title if len(bead.title) <= TITLE_CHARS else bead.title[: TITLE_CHARS - 1] + "…"
    return f"“{text}”"


def ending(session: Session) -> str:
    """How it ended: handed in, or why not, in a line."""
    if session.status in (Session.Status.SUBMITTED, Session.Status.SUCCEEDED):
        return "handed in its work"
    if hasattr(session, "submission"):
        return "handed in its work"  # refused since: the refusal is told on its own
    why = failure_headline(session.error)
    return f"{session.get_status_display()}{f': {why}' if why else ''}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
