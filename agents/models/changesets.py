"""Change sets, their members and the journal of their landings."""

from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from agents.models.submissions import Submission
from beads.models import Bead
from workspace.models import Repository, Workspace
from workspace.states import Transitions, move


class ChangeSet(Transitions, models.Model):
    """Beads in several repositories that land together or not at all
    (agents/moves/changesets.py)."""

    class Status(models.TextChoices):
        OPEN = "open"  # members being worked on; each is held once its own gates pass
        GATING = "gating"  # every member held: the integration gate, then the landing
        AWAITING_REVIEW = "awaiting_review", "awaiting review"
        LANDING = "landing"  # the journal is being written and played
        LANDED = "landed"
        REFUSED = "refused"
        REVERTED = "reverted"

    ACTIVE = [Status.OPEN, Status.GATING, Status.AWAITING_REVIEW, Status.LANDING]
    MOVES = {
        "gate": move(Status.OPEN, Status.GATING),  # the last member was held
        "await_review": move(Status.GATING, Status.AWAITING_REVIEW),
        "approve": move(Status.AWAITING_REVIEW, Status.GATING),
        "start_landing": move(Status.GATING, Status.LANDING),
        "finish": move(Status.LANDING, Status.LANDED),
        # integration failed, a member was refused, a head moved: members back to work
        "reopen": move([Status.GATING, Status.AWAITING_REVIEW, Status.LANDING], Status.OPEN),
        # a member bead ran out of attempts (it was sent back, so the set is open)
        "refuse": move(Status.OPEN, Status.REFUSED),
        "revert": move(Status.LANDED, Status.REVERTED),
    }

    workspace = models.ForeignKey(Workspace, models.CASCADE, related_name="changesets")
    title = models.CharField(max_length=500)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    integration_command = models.JSONField(
        default=list, blank=True, help_text="argv; empty: the workspace's integration command"
    )
    integration_timeout_s = models.PositiveIntegerField(default=600)
    integration_passed = models.BooleanField(null=True, blank=True)
    integration_output = models.TextField(blank=True)
    integration_ms = models.PositiveIntegerField(default=0)
    integration_trees = models.JSONField(
        default=dict, blank=True, help_text="{slug: tree} the integration gate last judged"
    )
    attempts = models.PositiveIntegerField(default=0)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    landed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"change set {self.pk}: {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("changeset", args=[self.pk])

    def member_list(self) -> "list[ChangeSetMember]":
        """Members in lock order: by their repository's slug."""
        related = ("bead", "repository", "submission__session__agent")
        return list(self.members.select_related(*related).order_by("repository__slug", "bead_id"))

    def integration_argv(self) -> list[str]:
        return list(self.integration_command) or self.workspace.integration_argv()

    def needs_review(self) -> bool:
        """A member repository reviews by hand: a person approves the change set, once."""
        human = Repository.Review.HUMAN
        return self.members.filter(repository__review_mode=human).exists() and not self.reviewed_at

    # The moves forward clear `reason`: it says why the change set was last
    # sent back, which stops being true once it moves on.

    def start_gating(self) -> bool:
        return self.move("gate", reason="")

    def await_review(self) -> bool:
        return self.move("await_review", reason="")

    def approve(self, user: Any) -> bool:
        return self.move("approve", reviewed_by=user, reviewed_at=timezone.now(), reason="")

    def start_landing(self) -> bool:
        return self.move("start_landing", reason="")

    def finish(self) -> bool:
        return self.move("finish", landed_at=timezone.now(), reason="")

    def reopen(self, reason: str) -> bool:
        """Back to work: the reason goes to the page, and one attempt is counted."""
        return self.move(
            "reopen", reason=reason, attempts=models.F("attempts") + 1, reviewed_at=None
        )

    def refuse(self, reason: str) -> bool:
        return self.move("refuse", reason=reason)

    def revert(self) -> bool:
        return self.move("revert")

    def record_integration(self, passed: bool, output: str, ms: int, trees: dict[str, str]) -> None:
        fields = dict(
            integration_passed=passed,
            integration_output=output,
            integration_ms=ms,
            integration_trees=trees,
        )
        ChangeSet.objects.filter(pk=self.pk).update(**fields)
        for key, value in fields.items():
            setattr(self, key, value)


class ChangeSetMember(Transitions, models.Model):
    """A bead of a change set; `active` while the change set is, so a bead is in
    at most one active change set (a partial unique index)."""

    changeset = models.ForeignKey(ChangeSet, models.CASCADE, related_name="members")
    bead = models.ForeignKey(Bead, models.CASCADE, related_name="changeset_members")
    repository = models.ForeignKey(Repository, models.CASCADE, related_name="+")
    active = models.BooleanField(default=True)
    STATE = "active"
    MOVES = {"leave": move(True, False)}  # its change set landed, was refused or reverted
    # The held submission and the candidate it was gated as: head + patch = tree.
    submission = models.ForeignKey(
        Submission, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    head = models.CharField(max_length=40, blank=True)
    tree = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["changeset", "repository__slug", "bead_id"]
        constraints = [
            models.UniqueConstraint(fields=["changeset", "bead"], name="bead_once_per_changeset"),
            models.UniqueConstraint(
                fields=["bead"],
                condition=models.Q(active=True),
                name="bead_in_one_active_changeset",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bead_id} in change set {self.changeset_id}"

    @property
    def held(self) -> bool:
        """Its submission passed its own gates and waits for its siblings."""
        return self.submission is not None and self.submission.status == Submission.Status.HELD


class JournalStep(Transitions, models.Model):
    """One branch move of a change set's landing (or revert), written before it is made."""

    class Kind(models.TextChoices):
        LAND = "land"
        REVERT = "revert"

    class State(models.TextChoices):
        PLANNED = "planned"
        ADVANCED = "advanced"
        UNDONE = "undone"

    STATE = "state"
    MOVES = {
        "advance": move(State.PLANNED, State.ADVANCED),  # its branch moved
        "undo": move([State.PLANNED, State.ADVANCED], State.UNDONE),  # put back, or never made
    }

    changeset = models.ForeignKey(ChangeSet, models.CASCADE, related_name="journal")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    member = models.ForeignKey(ChangeSetMember, models.CASCADE, related_name="+")
    old_sha = models.CharField(max_length=40)
    new_sha = models.CharField(max_length=40)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PLANNED)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["changeset", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["changeset", "seq"], name="one_journal_step_per_seq")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.member.bead_id}: {self.state}"
