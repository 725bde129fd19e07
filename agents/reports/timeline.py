"""A bead's history as one timeline: filed, sessions (agent, outcome, duration,
the limit that stopped one), submissions with their gates and reviews, the
commits and reverts git holds for it, and its closing."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Prefetch
from django.utils.dateparse import parse_datetime

from agents.models import GateResult, Session, Submission
from beads.models import Bead
from workspace import gitops

# What stopped a session that ended this way, in a person's words.
STOPPED_BY: dict[str, str] = {
    Session.Status.TIMED_OUT: "its time limit",
    Session.Status.OUT_OF_SCOPE: "the scope watchdog (a write outside the bead's scope)",
    Session.Status.CANCELLED: "a person cancelled it",
    Session.Status.LOST: "its lease expired (the worker went away)",
    Session.Status.PAUSED: "its agent's rate limit (no attempt counted)",
}


KINDS = ["filed", "session", "submission", "commit", "closed", "revert"]


@dataclass
class Event:
    at: datetime
    kind: str  # one of KINDS
    text: str
    obj: Any = None  # the session or submission, for its status badge and link
    url: str = ""
    detail: str = ""
    gates: list[GateResult] = field(default_factory=list)


def session_event(session: Session) -> Event:
    took = ""
    if session.started_at and session.ended_at:
        took = f", {int((session.ended_at - session.started_at).total_seconds())} s"
    text = f"Session by {session.agent.name}: {session.get_status_display()}{took}"
    detail = ""
    if stopped := STOPPED_BY.get(session.status):
        detail = f"Stopped by {stopped}."
        if session.status == Session.Status.TIMED_OUT:
            detail = f"Stopped by its time limit ({session.time_limit_s() // 60} min)."
    if session.error:
        detail = f"{detail} {session.error}".strip()
    return Event(session.created_at, "session", text, session, session.get_absolute_url(), detail)


def submission_event(sub: Submission) -> Event:
    text = f"Submission {sub.pk}: {sub.get_status_display()}"
    if sub.reviewed_by:
        text += f", reviewed by {sub.reviewed_by.get_username()}"
    gates = list(sub.gate_results.all())
    return Event(sub.queued_at, "submission", text, sub, sub.get_absolute_url(), sub.reason, gates)


def git_events(bead: Bead) -> list[Event]:
    repo = bead.repository
    events = []
    for commit in gitops.commits_naming(repo.canonical_path, repo.branch, "Bead", bead.id):
        at = parse_datetime(commit["date"])
        if at is None:
            continue
        kind = "revert" if commit["reverts"] else "commit"
        text = f"{'Reverted' if commit['reverts'] else 'Committed'}: {commit['subject']}"
        events.append(Event(at, kind, text, detail=commit["sha"]))
    return events


def for_bead(bead: Bead) -> list[Event]:
    """Oldest first. Sessions and submissions in two queries, git in one process."""
    events = [Event(bead.created_at, "filed", f"Filed by {bead.filer()}")]
    sessions = bead.sessions.select_related("agent", "bead__repository").order_by("created_at")
    events += [session_event(s) for s in sessions]
    gates = Prefetch("gate_results", queryset=GateResult.objects.order_by("pk"))
    submissions = bead.submissions.select_related("reviewed_by").prefetch_related(gates)
    events += [submission_event(s) for s in submissions]
    events += git_events(bead)
    if bead.closed_at:
        events.append(Event(bead.closed_at, "closed", f"Closed: {bead.close_reason}"))
    # Git keeps whole seconds: within one second, the order things happen in.
    return sorted(events, key=lambda e: (e.at.replace(microsecond=0), KINDS.index(e.kind), e.at))
