"""People's moves on beads, from wherever they are made (the bead list, the
bead page, the admin site, a bd import): closing, reopening, deferring and
blocking by hand, and editing a bead with its dependencies.

Each is the bead's own conditional move, in one transaction with what follows
from it everywhere else, a landing included (closed_after): a parent epic whose
last child closed closes too, and its parent in turn; an active plan whose last
bead closed is done; the layers above hear of it through beads.signals (the
webhooks); and the audit keeps who did it and through what.
"""

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from beads import signals
from beads.models import Bead, Dependency, Plan
from workspace import audit


def close(bead: Bead, reason: str, by: Any = None, via: str = "") -> bool:
    """Close a bead by hand; False if its status does not allow it."""
    with transaction.atomic():
        if not bead.close(reason):
            return False
        closed_after([bead])
        recorded(bead, "Closed", by, via)
    return True


def reopen(bead: Bead, by: Any = None, via: str = "") -> bool:
    with transaction.atomic():
        if not bead.reopen():
            return False
        recorded(bead, "Reopened", by, via)
    return True


def defer(bead: Bead, by: Any = None, via: str = "") -> bool:
    with transaction.atomic():
        if not bead.defer():
            return False
        recorded(bead, "Deferred", by, via)
    return True


def block(bead: Bead, reason: str = "", by: Any = None, via: str = "") -> bool:
    """Block a bead by hand (signals.blocked tells the webhooks, as every block does)."""
    with transaction.atomic():
        if not bead.block(reason):
            return False
        recorded(bead, "Blocked", by, via)
    return True


def closed_after(beads: Sequence[Bead], leave: Collection[str] = ()) -> list[Bead]:
    """What follows these beads closing, however they closed (landed, by hand,
    imported): their finished parents close (but those in `leave`, whose status
    the caller sets itself), plans finish, the layers above are told. Returns
    the parents it closed."""
    parents = close_finished_parents(beads, leave)
    everything = [*beads, *parents]
    # A bead that depends on one of these may now pass where it was refused.
    Bead.clear_wait(Bead.objects.filter(dependencies__depends_on__in=everything))
    Plan.finish_landed(everything)
    signals.closed.send(sender=Bead, beads=everything)
    return parents


def close_finished_parents(beads: Sequence[Bead], leave: Collection[str] = ()) -> list[Bead]:
    """Close each parent whose children have now all closed, and theirs in turn."""
    closed = []
    kind = Dependency.Type.PARENT_CHILD
    parents = Bead.objects.filter(dependents__issue__in=beads, dependents__type=kind)
    for parent in parents.exclude(status=Bead.Status.CLOSED).exclude(pk__in=leave).distinct():
        if parent.close_if_children_closed():
            closed += [parent, *close_finished_parents([parent], leave)]
    return closed


def recorded(bead: Bead, done: str, by: Any, via: str) -> None:
    detail = f"{done} through {via}" if via else done
    audit.record(audit.Action.BEAD_EDIT, bead, repository=bead.repository, detail=detail, actor=by)


class Unchanged:
    """A bead's links left as they are by an edit that does not name them."""


UNCHANGED = Unchanged()


def edit(
    bead: Bead,
    seen_at: datetime,
    values: dict[str, Any],
    waits_for: Sequence[Bead] | Unchanged = UNCHANGED,
    parent: Bead | None | Unchanged = UNCHANGED,
) -> bool:
    """Write a bead's fields and its blockers and parent (each left as it is
    when UNCHANGED), if it is still the version (its updated_at) the person
    saw; False if it changed since and nothing was written. Edited, it need
    not wait out a back-off."""
    with transaction.atomic():
        rows = Bead.objects.filter(pk=bead.pk, updated_at=seen_at)
        if not rows.update(**values, updated_at=timezone.now(), not_before=None, repeats=0):
            return False
        if not isinstance(waits_for, Unchanged):
            set_blockers(bead, waits_for)
        if not isinstance(parent, Unchanged):
            set_parent(bead, parent)
    return True


def set_links(bead: Bead, waits_for: Sequence[Bead], parent: Bead | None) -> None:
    """Make the bead's `blocks` dependencies exactly `waits_for`, and its parent `parent`."""
    set_blockers(bead, waits_for)
    set_parent(bead, parent)


def set_blockers(bead: Bead, waits_for: Sequence[Bead]) -> None:
    wanted = {b.pk for b in waits_for}
    blocks = Dependency.Type.BLOCKS
    bead.dependencies.filter(type=blocks).exclude(depends_on__in=wanted).delete()
    have = set(bead.dependencies.filter(type=blocks).values_list("depends_on_id", flat=True))
    for blocker in waits_for:
        if blocker.pk not in have:
            Dependency.objects.create(issue=bead, depends_on=blocker, type=blocks)


def set_parent(bead: Bead, parent: Bead | None) -> None:
    child_of = Dependency.Type.PARENT_CHILD
    bead.dependencies.filter(type=child_of).exclude(depends_on=parent).delete()
    if parent is not None and not bead.dependencies.filter(depends_on=parent).exists():
        Dependency.objects.create(issue=bead, depends_on=parent, type=child_of)
