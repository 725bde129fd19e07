import math
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.db import models, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from beads.models import Bead
from workspace.models import Repository, Workspace
from workspace.states import Transitions, move

# Freshness decays like agentops': 17% a week since the last confirmation.
DECAY_PER_WEEK = 0.17
# The weight of one outcome in a learning's utility (an exponential moving average).
UTILITY_ALPHA = 0.1
# Harmful marks retire a learning when they outnumber the helpful ones and come
# from this many different agents (one mark each), or from a person.
RETIRE_AFTER_AGENTS = 2
# Confirmations (helpful marks and first-try landings) that raise a learning's maturity.
ESTABLISHED_AFTER = 3
PROVEN_AFTER = 10
# The kinds of source (knowledge/capture.py) that are lessons a bead's failure taught.
LESSONS = ("refusal", "rejection")


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
        # An import that changes what an approved learning says (knowledge/agentops.py).
        "unapprove": move(Status.APPROVED, Status.CANDIDATE),
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
        default=timezone.now, help_text="created or last confirmed (imported: the file's date)"
    )
    # Freshness counts from here (knowledge/rank.py): the last time it helped
    # (a landing it went into, a helpful mark by an agent or a person), never
    # from when it was written; empty until it first helps.
    last_helped_at = models.DateTimeField(null=True, blank=True)
    # The last harmful mark: newer than last_helped_at, the last word of the
    # evidence is against it and it ranks as refuted (knowledge/rank.py).
    last_hurt_at = models.DateTimeField(null=True, blank=True)
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

    def freshness(self, now: datetime | None = None) -> float:
        """exp(-0.17 × weeks since it last helped), 0 if it never has: agentops'
        decay, 17% a week, counted from the last proof of use (knowledge/rank.py)."""
        if self.last_helped_at is None:
            return 0.0
        age = (now or timezone.now()) - self.last_helped_at
        weeks = max(0.0, age.total_seconds() / 604_800)
        return math.exp(-DECAY_PER_WEEK * weeks)

    def refuted(self) -> bool:
        """The last word of the evidence is a harmful mark."""
        return self.last_hurt_at is not None and (
            self.last_helped_at is None or self.last_hurt_at > self.last_helped_at
        )

    def approve(self) -> bool:
        """Approved, it is injected from now on: the beads it may reach that wait
        out a back-off after repeated refusals may try again with it."""
        with transaction.atomic():
            if not self.move("approve"):
                return False
            beads = Bead.objects.filter(repository__workspace=self.workspace_id)
            if self.repository_id is not None:
                beads = beads.filter(repository=self.repository_id)
            Bead.clear_wait(beads)
        return True

    def lesson_of(self) -> str:
        """What taught it when it was first seen: "refusal" (a gate's) or
        "rejection" (a person's), else "" (a handoff, an agent, an import)."""
        kind = str(self.sources[0].get("kind", "")) if self.sources else ""
        return kind if kind in LESSONS else ""

    def source_label(self) -> str:
        """Where it was first seen, in a few words: "check gate's refusal of
        app-x1", "alice's rejection of app-x1", "agentops file a.md", "handoff"."""
        first = self.sources[0] if self.sources else {}
        kind, bead = str(first.get("kind", "")), first.get("bead")
        of = f" of {bead}" if bead else ""
        if kind == "refusal":
            return f"{first.get('gate', 'a')} gate's refusal{of}"
        if kind == "rejection":
            return f"{first.get('reviewer', 'a person')}'s rejection{of}"
        if kind == "agentops":
            return f"agentops file {first.get('file', '')}".strip()
        return (kind or "unknown") + (f" in {bead}" if bead else "")

    def lesson_beads(self) -> list[str]:
        """The beads whose refusals or rejections taught it, the first first."""
        ids = [str(s["bead"]) for s in self.sources if s.get("kind") in LESSONS and s.get("bead")]
        return list(dict.fromkeys(ids))

    def retire(self, reason: str = "") -> bool:
        return self.move("retire", retired_reason=reason)

    def record_outcome(self, outcome: float) -> None:
        """One more outcome (1 good, 0 bad) in the utility's moving average,
        as one UPDATE: two sessions ending at once both count."""
        learnings = Learning.objects.filter(pk=self.pk)
        learnings.update(utility=F("utility") * (1 - UTILITY_ALPHA) + UTILITY_ALPHA * outcome)

    def confirm(self) -> None:
        """It helped: fresh again, one more helpful mark, and more mature once often confirmed."""
        now = timezone.now()
        with transaction.atomic():
            Learning.objects.filter(pk=self.pk).update(
                helpful=F("helpful") + 1, confirmed_at=now, last_helped_at=now
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
        """It misled someone: one harmful mark, a bad outcome, and retirement if
        it keeps hurting (retire_if_hurting). True if this call retired it."""
        self.count_harm()
        return self.retire_if_hurting(why)

    def count_harm(self) -> None:
        with transaction.atomic():
            Learning.objects.filter(pk=self.pk).update(
                harmful=F("harmful") + 1, last_hurt_at=timezone.now()
            )
            self.record_outcome(0.0)

    def retire_if_hurting(self, why: str) -> bool:
        """Retire it once harmful marks outnumber helpful ones and come from
        RETIRE_AFTER_AGENTS different agents or a person: one agent alone never
        retires what it was given. True if this call retired it."""
        if not Learning.objects.filter(pk=self.pk, harmful__gt=F("helpful")).exists():
            return False
        harmful = self.marks.filter(helpful=False)
        agents = harmful.exclude(agent=None).values("agent").distinct().count()
        people = sorted({str(m.person or "a person") for m in harmful.filter(agent=None)})
        if agents < RETIRE_AFTER_AGENTS and not people:
            return False
        by = people + ([f"{agents} agent" + ("s" if agents > 1 else "")] if agents else [])
        self.refresh_from_db(fields=["harmful", "helpful"])
        return self.retire(
            f"Retired automatically: marked harmful by {' and '.join(by)}, {self.harmful} "
            f"harmful against {self.helpful} helpful; the last: {why}"
        )

    def fold(self, source: dict[str, Any]) -> None:
        """A duplicate seen elsewhere: counted and its source kept, not a new row."""
        with transaction.atomic():
            row = Learning.objects.select_for_update().only("sources").get(pk=self.pk)
            Learning.objects.filter(pk=self.pk).update(
                occurrences=F("occurrences") + 1, sources=[*row.sources, source]
            )


class Injection(Transitions, models.Model):
    class Outcome(models.TextChoices):
        PENDING = ""
        LANDED = "landed"
        REFUSED = "refused"

    STATE = "outcome"
    MOVES = {
        "land": move(Outcome.PENDING, Outcome.LANDED),  # the session it went into landed
        "refuse": move(Outcome.PENDING, Outcome.REFUSED),  # refused or rejected
    }

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


class Mark(models.Model):
    """Who marked a learning helpful or harmful: an agent, once per learning
    whatever the sessions it went into (the constraint makes two marks at once
    one), or a person (no agent), on the knowledge page."""

    learning = models.ForeignKey(Learning, models.CASCADE, related_name="marks")
    agent = models.ForeignKey(
        "agents.Agent", models.CASCADE, null=True, blank=True, related_name="+"
    )
    session = models.ForeignKey(
        "agents.Session", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    person = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    helpful = models.BooleanField()
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["learning", "agent"],
                condition=models.Q(agent__isnull=False),
                name="one_mark_per_agent",
            )
        ]

    def __str__(self) -> str:
        who = self.agent or self.person or "a person"
        return f"{who}: {'helpful' if self.helpful else 'harmful'} ({self.learning_id})"
