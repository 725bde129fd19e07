"""What a session that ended without handing in left behind.

Its work within the bead's scope is a commit on
`refs/corral/salvage/<bead>/<session>` in the canonical repository (never on
the branch, never pushed); this row says where, how much, and why the session
stopped. A session whose clone held nothing to keep still gets a row, with a
note saying why: the next session on the bead knows the look was taken.
"""

from typing import Any

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from agents.models.sessions import Session
from beads.models import Bead


class SalvageQuerySet(models.QuerySet["Salvage"]):
    def kept(self) -> "SalvageQuerySet":
        """Those that hold work (a commit), newest first."""
        return self.exclude(sha="").order_by("-created_at", "-pk")


class Salvage(models.Model):
    session = models.OneToOneField(Session, models.CASCADE, related_name="salvage")
    bead = models.ForeignKey(Bead, models.CASCADE, related_name="salvages")
    # How the session ended (a Session ending status) and why, as it was told.
    stopped = models.CharField(max_length=20, choices=Session.Status.choices)
    why = models.TextField(blank=True)
    ref = models.CharField(max_length=300, blank=True)
    sha = models.CharField(max_length=64, blank=True)  # blank: nothing kept (see note)
    base_sha = models.CharField(max_length=64, blank=True)
    files = models.JSONField(default=list, blank=True)  # the paths it keeps
    lines = models.PositiveIntegerField(default=0)
    # What the kept patch changes (agents.patches.summarize): added, removed, binary.
    summary = models.JSONField(default=dict, blank=True)
    # Paths the session changed outside the bead's scope: never kept.
    left_out = models.JSONField(default=list, blank=True)
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = SalvageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["bead", "created_at"])]

    def __str__(self) -> str:
        kept = f"{self.sha[:12]}, {len(self.files)} files" if self.sha else "nothing kept"
        return f"salvage of {self.session_id} on {self.bead_id} ({kept})"

    @property
    def kept(self) -> bool:
        return bool(self.sha)

    @classmethod
    def record(cls, session: Session, **fields: Any) -> "Salvage":
        """The session's salvage row, made once: a second caller (the runner and
        reconcile() both looking) gets the first one's."""
        try:
            with transaction.atomic():
                return cls.objects.create(session=session, bead_id=session.bead_id, **fields)
        except IntegrityError:
            return cls.objects.get(session=session)
