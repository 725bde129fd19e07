"""What a person does to learnings on the knowledge page, beyond a single row's
move (retire is the model's): approve one, giving the beads that taught it
another try, and merge two into one."""

from typing import Any, NamedTuple

from django.db import IntegrityError, transaction
from django.db.models import F

from beads import moves
from beads.models import Bead
from knowledge.models import Injection, Learning, Mark


class Approval(NamedTuple):
    approved: bool  # False: it was not a candidate, nothing changed
    retried: list[Bead]  # beads blocked after their attempts ran out, open again


def approve(learning: Learning, by: Any = None) -> Approval:
    """Approve a candidate. A lesson a bead's refusals taught is what its next
    try was missing: each such bead that ran out of attempts is reopened for
    one more, now that the lesson will be in its context."""
    with transaction.atomic():
        if not learning.approve():
            return Approval(False, [])
        order = learning.lesson_beads()
        taught = Bead.objects.filter(pk__in=order, status=Bead.Status.BLOCKED)
        via = f"the approval of learning #{learning.pk}"
        retried = [
            bead
            for bead in sorted(taught.select_related("repository"), key=lambda b: order.index(b.pk))
            if bead.out_of_attempts() and moves.reopen(bead, by=by, via=via)
        ]
    return Approval(True, retried)


WAITING_SHOWN = 20


def waiting_candidates(
    workspace: Any = None, limit: int = WAITING_SHOWN
) -> tuple[list[Learning], int]:
    """Captured learnings waiting for a person's approval, the most often seen
    first, then the newest; and how many wait in all. For the review queue:
    templates/knowledge/_waiting.html shows them with their source."""
    waiting = Learning.objects.filter(status=Learning.Status.CANDIDATE)
    if workspace is not None:
        waiting = waiting.filter(workspace=workspace)
    shown = waiting.select_related("repository").defer("search", "agentops", "body")
    return list(shown.order_by("-occurrences", "-created_at", "-pk")[:limit]), waiting.count()


class CannotMerge(Exception):
    """The two cannot be merged; the message says why."""


def merge(keep: Learning, other: Learning, by: str) -> Learning:
    """`other` goes into `keep`: its body (if it says more), tags, files, sources,
    counters and injections; `other` is retired, naming `keep`."""
    if keep.pk == other.pk:
        raise CannotMerge("A learning cannot be merged into itself.")
    if keep.workspace_id != other.workspace_id:
        raise CannotMerge("The two learnings belong to different workspaces.")
    with transaction.atomic():
        if not other.retire(f"Merged into #{keep.pk} by {by}."):
            raise CannotMerge(f"#{other.pk} is {other.status}: it cannot be merged.")
        for injection in Injection.objects.filter(learning=other):
            try:
                with transaction.atomic():
                    Injection.objects.filter(pk=injection.pk).update(learning=keep)
            except IntegrityError:
                pass  # both went into that session: keep's record stands
        for pk in Mark.objects.filter(learning=other).values_list("pk", flat=True):
            try:
                with transaction.atomic():
                    Mark.objects.filter(pk=pk).update(learning=keep)
            except IntegrityError:
                pass  # the agent marked both: its mark on keep stands
        keep.refresh_from_db()
        body = keep.body
        if other.body.strip() and other.body.strip() not in body:
            body = f"{body.rstrip()}\n\n{other.body.strip()}\n"
        Learning.objects.filter(pk=keep.pk).update(
            body=body,
            tags=keep.tags + [t for t in other.tags if t not in keep.tags],
            files=keep.files + [f for f in other.files if f not in keep.files],
            sources=keep.sources + other.sources + [{"kind": "merge", "from": other.pk, "by": by}],
            occurrences=F("occurrences") + other.occurrences,
            uses=F("uses") + other.uses,
            helpful=F("helpful") + other.helpful,
            harmful=F("harmful") + other.harmful,
        )
    keep.refresh_from_db()
    return keep
