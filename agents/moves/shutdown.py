"""A session whose worker was told to stop (SIGTERM: a scale-down, a rollout,
a node drain) and whose agent did not finish within
CORRAL_SHUTDOWN_GRACE_SECONDS: the runner has salvaged its work; the session
ends `lost` and its bead goes back to the hook with no attempt counted, the
bead having done nothing wrong (as a rate limit's pause counts none)."""

from django.db import transaction

from agents import queues
from agents.models import Session


def worker_stopped(session: Session, reason: str) -> bool:
    with transaction.atomic():
        if not session.end(Session.Status.LOST, reason):
            return False
        session.bead.put_back()
        queues.enqueue_dispatch()  # another worker may take the bead now
    return True
