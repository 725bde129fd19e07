"""The next decisions a person must make, each one click away: submissions
waiting for review, blocked beads, and beads whose last check failed."""

from dataclasses import dataclass

from agents.models import GateResult, Submission
from beads.models import Bead
from workspace.models import Workspace

SHOWN = 10  # of each kind


@dataclass
class Decision:
    kind: str  # review, blocked, failing
    text: str
    url: str


def next_decisions(workspace: Workspace) -> list[Decision]:
    reviews = Submission.objects.filter(
        repository__workspace=workspace, status=Submission.Status.AWAITING_REVIEW
    ).select_related("bead")
    decisions = [
        Decision("review", f"Review {s.bead_id}: {s.bead.title}", s.get_absolute_url())
        for s in reviews.order_by("queued_at")[:SHOWN]
    ]
    blocked = Bead.objects.filter(repository__workspace=workspace, status=Bead.Status.BLOCKED)
    decisions += [
        Decision("blocked", f"Unblock {b.id}: {b.last_failure or b.title}", b.get_absolute_url())
        for b in blocked.order_by("priority", "updated_at")[:SHOWN]
    ]
    failed_check = GateResult.objects.filter(gate=GateResult.Gate.CHECK, passed=False)
    failing = Bead.objects.filter(
        repository__workspace=workspace,
        status=Bead.Status.OPEN,
        attempts__gt=0,
        submissions__gate_results__in=failed_check,
    ).distinct()
    decisions += [
        Decision("failing", f"Check fails on {b.id}: {b.title}", b.get_absolute_url())
        for b in failing.order_by("priority", "-updated_at")[:SHOWN]
    ]
    return decisions
