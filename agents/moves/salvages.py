"""A salvage written down: the row saying what a session left (agents/jobs/salvage.py
keeps it in git first), and the handoff it wrote, which the session keeps as
its summary as a handed-in session does: the next session reads it there."""

from typing import Any

from django.db import transaction

from agents.models import Salvage, Session


def record(session: Session, handoff: str = "", **fields: Any) -> Salvage:
    """The session's salvage row (the first one, if two looked), its handoff,
    and what it changed as the salvage found it (the watchdog's last look may
    be older), together."""
    with transaction.atomic():
        salvage = Salvage.record(session, **fields)
        if handoff.strip():
            # Only a summary not yet written: a handed-in session's is its own.
            Session.objects.filter(pk=session.pk, summary="").update(summary=handoff)
        changed = sorted({*salvage.files, *salvage.left_out})
        if changed:
            Session.objects.filter(pk=session.pk).update(changed_files=changed)
            session.changed_files = changed
    return salvage


def forget(salvage: Salvage) -> bool:
    """A pruned salvage's row goes (its ref went first)."""
    return Salvage.objects.filter(pk=salvage.pk).delete()[0] > 0
