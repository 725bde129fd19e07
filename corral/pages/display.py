"""How sessions read to a person: the time bar and its label, the context size.

The markup (badges, links, times, diffs) is in workspace/templatetags/corral_display.py.
"""

from datetime import datetime
from typing import Any

from django.utils import timezone

from agents.models import Session
from workspace.templatetags.corral_display import mmss


def session_clock(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """The time bar: the limit, the seconds used and left, and what to say about them.

    Reads session.agent, session.bead and session.bead.repository: have them at hand.
    """
    limit = session.time_limit_s()
    if session.started_at is None:
        label = f"{mmss(limit)} limit, not started"
        return {"limit": limit, "used": 0, "left": limit, "label": label}
    end = session.ended_at or now or timezone.now()
    used = min(max(int((end - session.started_at).total_seconds()), 0), limit)
    if session.ended_at:
        label = f"ran {mmss(used)} of {mmss(limit)}"
    else:
        label = f"{mmss(limit - used)} left"
    return {"limit": limit, "used": used, "left": limit - used, "label": label}


def context_budget(session: Session) -> str:
    """The context pack's size against the agent's budget: "12,345 of 40,000 characters"."""
    return f"{session.context_chars:,} of {session.agent.context_budget_chars:,} characters"
