import math
from typing import Any

from django.contrib.postgres.search import SearchVectorField
from django.db import models, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from workspace.models import Repository, Workspace
from workspace.states import Transitions, move

# Freshness decays like agentops': 17% a week since the last confirmation.
DECAY_PER_WEEK = 0.17
# The weight of one outcome in a learning's utility (an exponential moving average).
UTILITY_ALPHA = 0.1
# Harmful marks that retire a learning, when they outnumber the helpful ones.
RETIRE_AFTER_HARMFUL = 3
# Confirmations (helpful marks and first-try landings) that raise a learning's maturity.
ESTABLISHED_AFTER = 3
PROVEN_AFTER = 10


class Learning(Transitions, models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        APPROVED = "approved"
        RETIRED = "retired"

    class Maturity(models.TextChoices):
        CANDIDATE = "candidate"
        ESTABLISHED = "established"
        PROVEN = "proven"

    MOVES = {
        "approve": move(Status.CANDIDATE, Status.APPROVED),
        "retire": move([Status.CANDIDATE, Status.APPROVED], Status.RETIRED),
    }

    workspace = models.ForeignKey(Workspace, models.CASCADE, related_name="learnings")
    repository = models.ForeignKey(
        Repository,
        models.CASCADE,
        null=True,
        blank=True,
        related_name="learnings",
        help_text="empty: applies to the whole workspace",
    )
    title = models.CharField(max_length=200)
    body = models.TextField(help_text="markdown")
    tags = models.JSONField(default=list, blank=True)
    files = models.JSONField(default=list, blank=True, help_text="paths the learning is about")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CANDIDATE)
    maturity = models.CharField(max_length=20, choices=Maturity.choices, default=Maturity.CANDIDATE)
    utility = models.FloatField(default=0.5, help_text="EMA of the outcomes it went into, 0..1")
    confirmed_at = models.DateTimeField(
        default=timezone.now, help_text="freshness counts from here: created or last confirmed"
    )
    source_session = models.ForeignKey(
        "agents.Session", models.SET_NULL, null=True, blank=True, related_name="learnings"
    )
    source_bead = models.ForeignKey(
        "beads.Bead", models.SET_NULL, null=True, blank=True, related_name="learnings"
    )
    # Every place it was seen: the first, and each duplicate folded into it.
    sources = models.JSONField(default=list, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    uses = models.PositiveIntegerField(default=0)
    helpful = models.PositiveIntegerField(default=0)
    harmful = models.PositiveIntegerField(default=0)
    retired_reason = models.TextField(blank=True)
    # Where an imported agentops file had it, as it came (knowledge/agentops.py):
    # the file, its place there, the front matter's text, every key, the
    # heading and inline fields; written back on export.
    agentops = models.JSONField(default=dict, blank=True)
    # PostgreSQL's full-text document, kept by a trigger (knowledge/fts.py);
    # SQLite keeps its FTS5 table instead and leaves this empty.
    search = SearchVectorField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["workspace", "status"])]
        permissions = [("curate_learning", "Can approve, edit, merge, mark and retire learnings")]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("learning", args=[self.pk])

    def freshness(self) -> float:
        """exp(-0.17 × weeks since last confirmed): agentops' decay, 17% a week."""
        weeks = max(0.0, (timezone.now() - self.confirmed_at).total_seconds() / 604_800)
        return math.exp(-DECAY_PER_WEEK * weeks)

    def approve(self) -> bool:
        return self.move("approve")

    def retire(self, reason: str = "") -> bool:
        return self.move("retire", retired_reason=reason)

    def record_outcome(self, outcome: float) -> None:
        """One more outcome (1 good, 0 bad) in the utility's moving average,
        as one UPDATE: two sessions ending at once both count."""
        learnings = Learning.objects.filter(pk=self.pk)
        learnings.update(utility=F("utility") * (1 - UTILITY_ALPHA) + UTILITY_ALPHA * outcome)

    def confirm(self) -> None:
        """It helped: fresh again, one more helpful mark, and more mature once often confirmed."""
        with transaction.atomic():
            Learning.objects.filter(pk=self.pk).update(
                helpful=F("helpful") + 1, confirmed_at=timezone.now()
            )
            self.record_outcome(1.0)
            self.mature()

    def mature(self) -> None:
        learnings = Learning.objects.filter(pk=self.pk)
        learnings.filter(maturity=self.Maturity.CANDIDATE, helpful__gte=ESTABLISHED_AFTER).update(
            maturity=self.Maturity.ESTABLISHED
        )
        learnings.filter(maturity=self.Maturity.ESTABLISHED, helpful__gte=PROVEN_AFTER).update(
            maturity=self.Maturity.PROVEN
        )

    def hurt(self, why: str) -> bool:
        """It misled someone: one harmful mark, a bad outcome, and retirement once it
        has hurt RETIRE_AFTER_HARMFUL times and more often than it helped.
        True if this call retired it."""
        with transaction.atomic():
            Learning.objects.filter(pk=self.pk).update(harmful=F("harmful") + 1)
            self.record_outcome(0.0)
        keeps_hurting = Learning.objects.filter(
            pk=self.pk, harmful__gte=RETIRE_AFTER_HARMFUL, harmful__gt=F("helpful")
        )
        if not keeps_hurting.exists():
            return False
        self.refresh_from_db(fields=["harmful", "helpful"])
        return self.retire(
            f"Retired automatically: marked harmful {self.harmful} times against "
            f"{self.helpful} helpful; the last: {why}"
        )

    def fold(self, source: dict[str, Any]) -> None:
        """A duplicate seen elsewhere: counted and its source kept, not a new row."""
        with transaction.atomic():
            row = Learning.objects.select_for_update().only("sources").get(pk=self.pk)
            Learning.objects.filter(pk=self.pk).update(
                occurrences=F("occurrences") + 1, sources=[*row.sources, source]
            )


class Injection(models.Model):
    class Outcome(models.TextChoices):
        PENDING = ""
        LANDED = "landed"
        REFUSED = "refused"

    class Verdict(models.TextChoices):
        NONE = ""
        HELPFUL = "helpful"
        HARMFUL = "harmful"

    learning = models.ForeignKey(Learning, models.CASCADE, related_name="injections")
    session = models.ForeignKey("agents.Session", models.CASCADE, related_name="injections")
    rank = models.PositiveIntegerField()
    chars = models.PositiveIntegerField()
    score = models.FloatField(default=0)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, blank=True)
    # The agent's own mark on what it was given: one per injection.
    verdict = models.CharField(max_length=10, choices=Verdict.choices, blank=True)

    class Meta:
        ordering = ["session", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["learning", "session"], name="one_injection_each")
        ]

    def __str__(self) -> str:
        return f"{self.learning} → {self.session_id}"
