"""What must outlive a crash of the process doing it: a worker's heartbeat,
and a revert asked for but not yet made.

A session runner and a lead worker each write a WorkerBeat row every few
seconds while they work (agents/jobs/heartbeat.py); reconcile() takes a row
gone quiet for CORRAL_WORKER_DEAD_SECONDS as a dead worker. The database, not
Redis, holds the beats: Redis is transport, and a Redis restarted empty must
not make every worker look dead.

A RevertRequest is written, in the transaction that asks for a revert, before
its job is enqueued: a lead killed between taking the job and writing anything,
or a Redis restarted empty, loses the job but not the request, and reconcile()
enqueues it again.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from agents.models.changesets import ChangeSet
from beads.models import Bead
from workspace.states import Transitions, move


class WorkerBeat(models.Model):
    """One worker process, alive as long as its beat is recent."""

    class Kind(models.TextChoices):
        SESSION = "session"  # a runner: its name is its sessions' `worker`
        LEAD = "lead"  # a lead worker: its name is the RQ name its jobs carry

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    host = models.CharField(max_length=200)
    pid = models.IntegerField()
    started_at = models.DateTimeField(auto_now_add=True)
    beat_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.kind} worker {self.name}"

    @classmethod
    def beat(cls, name: str, kind: str, host: str, pid: int) -> None:
        """This worker is alive now (its row made on its first beat)."""
        now = timezone.now()
        if cls.objects.filter(name=name).update(beat_at=now):
            return
        try:
            with transaction.atomic():
                cls.objects.create(name=name, kind=kind, host=host, pid=pid, beat_at=now)
        except IntegrityError:  # made meanwhile (the same name again: a reused pid)
            cls.objects.filter(name=name).update(beat_at=now, kind=kind, host=host, pid=pid)

    @classmethod
    def gone(cls, name: str) -> None:
        """A worker stopping cleanly takes its row with it."""
        cls.objects.filter(name=name).delete()

    @classmethod
    def dead(cls, now: datetime | None = None) -> list["WorkerBeat"]:
        """Workers not heard from for CORRAL_WORKER_DEAD_SECONDS."""
        since = (now or timezone.now()) - timedelta(seconds=settings.WORKER_DEAD_SECONDS)
        return list(cls.objects.filter(beat_at__lt=since))

    @classmethod
    def forget(cls, rows: Iterable["WorkerBeat"]) -> int:
        """Delete rows found dead, each only if it has not beaten since: a
        worker that was only slow (stopped, swapped out) keeps its new row."""
        return sum(cls.objects.filter(pk=r.pk, beat_at=r.beat_at).delete()[0] for r in rows)


class RevertRequest(Transitions, models.Model):
    """A revert of a bead's commit or a change set's, asked for and not yet done."""

    class State(models.TextChoices):
        PENDING = "pending"  # its job is to run (again, should it vanish)
        DONE = "done"  # reverted, or nothing was left to revert

    STATE = "state"
    MOVES = {"finish": move(State.PENDING, State.DONE)}

    bead = models.ForeignKey(
        Bead, models.CASCADE, null=True, blank=True, related_name="revert_requests"
    )
    changeset = models.ForeignKey(
        ChangeSet, models.CASCADE, null=True, blank=True, related_name="revert_requests"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    requested_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["requested_at", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(bead__isnull=False, changeset__isnull=True)
                | Q(bead__isnull=True, changeset__isnull=False),
                name="revert_request_of_a_bead_or_a_changeset",
            ),
            # Asked twice before it ran: one request, one revert.
            models.UniqueConstraint(
                fields=["bead"],
                condition=Q(state="pending", bead__isnull=False),
                name="one_pending_revert_per_bead",
            ),
            models.UniqueConstraint(
                fields=["changeset"],
                condition=Q(state="pending", changeset__isnull=False),
                name="one_pending_revert_per_changeset",
            ),
        ]

    def __str__(self) -> str:
        return f"revert of {self.bead_id or f'change set {self.changeset_id}'} ({self.state})"

    @classmethod
    def ask(cls, **target: Any) -> "RevertRequest":
        """The pending request for `bead=` or `changeset=`, made unless one waits."""
        pending = cls.objects.filter(state=cls.State.PENDING, **target)
        if found := pending.first():
            return found
        try:
            with transaction.atomic():
                return cls.objects.create(**target)
        except IntegrityError:  # another asker made it meanwhile
            return pending.get()

    @classmethod
    def finish_for(cls, **target: Any) -> int:
        """The revert of `bead=` or `changeset=` is done: its pending request
        moves to done (one conditional UPDATE); how many moved (0 or 1)."""
        rows = cls.objects.filter(**target)
        return cls.move_all("finish", rows, done_at=timezone.now())
