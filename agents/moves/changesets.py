"""Change sets: beads in several repositories that land together or not at all.

The moves here span tables (a change set, its members, their submissions,
sessions and beads), each one transaction that enqueues its follow-up jobs on
commit, like the other moves (agents/moves/). The integration gate and the all-or-nothing
landing with its journal are agents/jobs/integration.py's.

A member's submission passes its own repository's gates, then is held. When
the last member is held the change set starts gating: its job runs the
integration command and lands every member, or sends every member back.
"""

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from agents import queues
from agents.models import (
    ChangeSet,
    ChangeSetMember,
    GateResult,
    RevertRequest,
    Submission,
    webhooks,
)
from agents.moves import notifications, outcomes
from beads.models import Bead, Wave
from workspace import audit
from workspace.models import Repository, Workspace

MIN_REPOSITORIES = 2
CHANGESET_JOB = "agents.jobs.integration.run"
REVERT_JOB = "agents.jobs.integration.revert"


class Taken(Exception):
    """A bead is already in an open change set (409); the message names it."""


def create(
    title: str,
    beads: Iterable[Bead],
    workspace: Workspace,
    by: Any = None,
    command: list[str] | None = None,
) -> ChangeSet:
    """A change set over `beads`. ValidationError (naming the field) when they
    are not beads of two or more repositories of the workspace still to land;
    Taken when one is already in an open change set."""
    members = list({bead.pk: bead for bead in beads}.values())
    refuse_members(members, workspace)
    if not title.strip():
        raise ValidationError({"title": "Give the change set a title."})
    try:
        with transaction.atomic():
            changeset = ChangeSet.objects.create(
                workspace=workspace,
                title=title.strip(),
                integration_command=list(command or []),
                created_by=by if getattr(by, "is_authenticated", False) else None,
            )
            ChangeSetMember.objects.bulk_create(
                ChangeSetMember(changeset=changeset, bead=b, repository_id=b.repository_id)
                for b in members
            )
    except IntegrityError:
        taken = ChangeSetMember.objects.filter(bead__in=members, active=True)
        names = ", ".join(sorted(taken.values_list("bead_id", flat=True))) or "a bead"
        raise Taken(f"{names} is already in an open change set.") from None
    return changeset


def audited(action: str, changeset: ChangeSet, detail: str = "", **how: Any) -> None:
    """An audit entry for a person's move on a change set: the target is the
    change set; it spans repositories, so the entry names none."""
    if action == audit.Action.CHANGESET:
        members = ", ".join(sorted(m.bead_id for m in changeset.members.all()))
        detail = f"{members}{f' ({detail})' if detail else ''}"
    detail = f"{changeset.title}: {detail}" if detail else changeset.title
    audit.record(action, f"change set {changeset.pk}", detail=detail, **how)


def refuse_members(beads: list[Bead], workspace: Workspace) -> None:
    repositories = {bead.repository_id for bead in beads}
    if len(repositories) < MIN_REPOSITORIES:
        raise ValidationError(
            {"beads": "A change set holds beads of two or more repositories; these are in one."}
        )
    for bead in beads:
        if bead.repository.workspace_id != workspace.pk:
            raise ValidationError({"beads": f"{bead.pk} is in another workspace."})
        if bead.issue_type == Bead.Type.EPIC:
            raise ValidationError({"beads": f"{bead.pk} is an epic: name its children."})
        if bead.status == Bead.Status.CLOSED:
            raise ValidationError({"beads": f"{bead.pk} has landed already."})


def open_children(epic: Bead) -> list[Bead]:
    """An epic's children still to land: a change set from an epic holds these."""
    children = epic.children().exclude(status=Bead.Status.CLOSED)
    return list(children.select_related("repository"))


def open_wave_beads(wave: Wave) -> list[Bead]:
    """A plan wave's beads still to land (epics left out): a change set from a plan."""
    beads = wave.beads.exclude(status=Bead.Status.CLOSED).exclude(issue_type=Bead.Type.EPIC)
    return list(beads.select_related("repository"))


def membership(bead: Bead | str) -> ChangeSetMember | None:
    """The bead's place in an open change set, or None."""
    bead_id = bead.pk if isinstance(bead, Bead) else bead
    return memberships([bead_id]).get(bead_id)


def memberships(beads: Iterable[str]) -> dict[str, ChangeSetMember]:
    """{bead id: its place in an open change set} of those of `beads` in one,
    with one query (a lead's train asks for all its members at once)."""
    found = ChangeSetMember.objects.filter(bead_id__in=list(beads), active=True)
    return {member.bead_id: member for member in found.select_related("changeset", "repository")}


def hold(
    submission: Submission, head: str, tree: str, member: ChangeSetMember | None = None
) -> bool:
    """A member's submission passed its own gates on `head`, making `tree`: it
    waits for its siblings (True). False when its bead is in no change set.
    The last one held starts the change set's gating. `member`: its place, when
    the caller has looked it up already."""
    member = member or membership(submission.bead_id)
    if member is None:
        return False
    with transaction.atomic():
        # Siblings held at once by their own leads take turns on the change set's
        # row, so the last one sees every other held (PostgreSQL; SQLite writes
        # one at a time anyway).
        changeset = locked(member.changeset_id)
        if not submission.hold():
            return True  # moved meanwhile: whoever moved it decides
        ChangeSetMember.objects.filter(pk=member.pk).update(
            submission=submission, head=head, tree=tree
        )
        if all_held(changeset) and changeset.start_gating():
            enqueue(changeset)
    return True


def locked(changeset_id: int) -> ChangeSet:
    """The change set's row, locked until the transaction ends."""
    return ChangeSet.objects.select_for_update().get(pk=changeset_id)


def all_held(changeset: ChangeSet) -> bool:
    held = Submission.Status.HELD
    return not changeset.members.exclude(submission__status=held).exists()


def first_repository(changeset: ChangeSet) -> Repository:
    """Where the change set's jobs queue: its first member repository by slug."""
    return changeset.member_list()[0].repository


def enqueue(changeset: ChangeSet) -> None:
    repo = first_repository(changeset)
    # The integration command's time, then a lead's for the locks and commits.
    timeout = changeset.integration_timeout_s + queues.lead_timeout(repo)
    queue, job_id = queues.lead_queue(repo), f"changeset-{changeset.pk}"
    queues.after_commit(
        lambda: queues.enqueue_once(
            queue, CHANGESET_JOB, changeset.pk, job_id=job_id, timeout=timeout
        )
    )


def reopen(changeset: ChangeSet, reason: str, spare: Iterable[int] = ()) -> bool:
    """Integration failed, or a member was refused (`spare`: its submission,
    already refused): every held member is refused with `reason`, so each bead
    goes back to the hook with it, under the three-attempt rule. The change set
    is open again, or refused once a member bead is blocked."""
    with transaction.atomic():
        changeset = locked(changeset.pk)
        if changeset.status not in ChangeSet.ACTIVE:
            return False
        held = Submission.objects.filter(
            pk__in=changeset.members.values("submission"), status=Submission.Status.HELD
        ).exclude(pk__in=list(spare))
        for submission in held.select_related("session", "bead", "repository"):
            outcomes.refuse(submission, Submission.Status.REJECTED, reason)
        if changeset.status != ChangeSet.Status.OPEN:
            changeset.reopen(reason)
        else:
            ChangeSet.objects.filter(pk=changeset.pk).update(reason=reason)
            changeset.reason = reason
        give_up_if_blocked(changeset)
    return True


def give_up_if_blocked(changeset: ChangeSet) -> bool:
    """A member bead ran out of attempts: the change set is refused, and its
    other open beads are blocked for a person to look at."""
    blocked = changeset.members.filter(bead__status=Bead.Status.BLOCKED)
    if not blocked.exists():
        return False
    names = ", ".join(blocked.values_list("bead_id", flat=True))
    reason = f"{names} ran out of attempts. Last: {changeset.reason}"
    if not changeset.refuse(reason):
        return False
    ChangeSetMember.move_all("leave", changeset.members.all())
    # Its siblings must not land alone: a person decides what becomes of them.
    for member in changeset.members.filter(bead__status=Bead.Status.OPEN).select_related("bead"):
        member.bead.block(f"Its change set {changeset.pk} was refused: {reason}")
    return True


def member_refused(submission: Submission, reason: str) -> bool:
    """A member's own gates refused it: its held siblings go back too."""
    member = membership(submission.bead_id)
    if member is None:
        return False
    why = f"Change set {member.changeset_id}: {submission.bead_id} was refused. {reason}"
    return reopen(member.changeset, why, spare=[submission.pk])


def rebuild(changeset: ChangeSet, moved: Iterable[ChangeSetMember], reason: str) -> bool:
    """Heads moved since the candidates were built: those members are gated
    again on their new heads (no attempt counted against their beads), and the
    integration gate runs again once all are held."""
    with transaction.atomic():
        if not changeset.reopen(reason):
            return False
        for member in moved:
            submission = member.submission
            if submission is not None and submission.requeue():
                # Its gates judged the old head: they run again and record anew.
                GateResult.objects.filter(submission=submission).delete()
                queues.enqueue_drain_on_commit(member.repository)
    return True


def approve(changeset: ChangeSet, user: Any) -> bool:
    """A person approves the change set once, for every member: it lands."""
    with transaction.atomic():
        if not changeset.approve(user):
            return False
        enqueue(changeset)
    return True


def reject(changeset: ChangeSet, user: Any, reason: str = "") -> bool:
    """A person turns the change set down while it awaits review: members go back.
    False if it was not awaiting review (decided with its row locked)."""
    with transaction.atomic():
        if locked(changeset.pk).status != ChangeSet.Status.AWAITING_REVIEW:
            return False
        return reopen(changeset, reason or f"Change set {changeset.pk} rejected by {user}.")


def landed(changeset: ChangeSet, shas: dict[int, str]) -> bool:
    """Every member's commit is on its branch: each lands as a single bead
    would ({member pk: sha}), and the change set is done."""
    with transaction.atomic():
        if not changeset.finish():
            return False
        related = ("submission__session", "submission__bead", "submission__repository")
        members = list(changeset.members.select_related(*related, "repository"))
        for member in members:
            if member.submission is not None:
                outcomes.land(member.submission, shas[member.pk])
        ChangeSetMember.move_all("leave", changeset.members.all())
        tell_done(changeset, members, shas)
    return True


def tell_done(changeset: ChangeSet, members: list[ChangeSetMember], shas: dict[int, str]) -> None:
    """The webhooks that want it hear that the change set landed, once."""
    landed = [
        {"bead": m.bead_id, "repository": m.repository.slug, "commit": shas.get(m.pk, "")}
        for m in members
    ]
    notifications.emit(
        webhooks.CHANGESET_DONE,
        {
            "changeset": changeset.pk,
            "title": changeset.title,
            "members": sorted(landed, key=lambda m: m["bead"]),
            "text": f"Change set {changeset.pk} ({changeset.title}) landed in "
            f"{', '.join(sorted({m['repository'] for m in landed}))}.",
        },
        key=f"changeset-done:{changeset.pk}",
    )


def request_revert(changeset: ChangeSet) -> bool:
    """Ask for every member of a landed change set to be reverted, together.
    The request is written before its job is enqueued (on commit), so that
    reconcile() enqueues the job again should it be lost before its journal."""
    if changeset.status != ChangeSet.Status.LANDED:
        return False
    with transaction.atomic():
        RevertRequest.ask(changeset=changeset)
        enqueue_revert(changeset)
    return True


def revert_job_id(changeset: ChangeSet) -> str:
    return f"changeset-revert-{changeset.pk}"


def enqueue_revert(changeset: ChangeSet) -> None:
    repo = first_repository(changeset)
    queues.enqueue_lead_job(repo, REVERT_JOB, changeset.pk, revert_job_id(changeset))


def in_flight() -> "list[tuple[ChangeSet, str]]":
    """Change sets a job should be moving, each with that job's id (for reconcile)."""
    moving = ChangeSet.objects.filter(
        status__in=[ChangeSet.Status.GATING, ChangeSet.Status.LANDING]
    )
    reverting = ChangeSet.objects.filter(
        status=ChangeSet.Status.LANDED, journal__kind="revert", journal__state="planned"
    ).distinct()
    return [(c, f"changeset-{c.pk}") for c in moving] + [(c, revert_job_id(c)) for c in reverting]


def enqueue_again(changeset: ChangeSet) -> None:
    if changeset.status == ChangeSet.Status.LANDED:
        enqueue_revert(changeset)
    else:
        enqueue(changeset)


def reverted(changeset: ChangeSet, shas: dict[int, str]) -> bool:
    """Every member's revert is on its branch: the beads are open again."""
    with transaction.atomic():
        if not changeset.revert():
            return False
        RevertRequest.finish_for(changeset=changeset)
        for member in changeset.members.select_related("bead"):
            outcomes.bead_reverted(member.bead, shas[member.pk])
    return True
