from django.db import models

from workspace.models import Repository, Workspace
from workspace.states import Transitions, move


class Learning(Transitions, models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        APPROVED = "approved"
        RETIRED = "retired"

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
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CANDIDATE)
    source_session = models.ForeignKey(
        "agents.Session", models.SET_NULL, null=True, blank=True, related_name="learnings"
    )
    source_bead = models.ForeignKey(
        "beads.Bead", models.SET_NULL, null=True, blank=True, related_name="learnings"
    )
    uses = models.PositiveIntegerField(default=0)
    helpful = models.PositiveIntegerField(default=0)
    harmful = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["workspace", "status"])]

    def __str__(self) -> str:
        return self.title

    def approve(self) -> bool:
        return self.move("approve")

    def retire(self) -> bool:
        return self.move("retire")


class Injection(models.Model):
    learning = models.ForeignKey(Learning, models.CASCADE, related_name="injections")
    session = models.ForeignKey("agents.Session", models.CASCADE, related_name="injections")
    rank = models.PositiveIntegerField()
    chars = models.PositiveIntegerField()

    class Meta:
        ordering = ["session", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["learning", "session"], name="one_injection_each")
        ]

    def __str__(self) -> str:
        return f"{self.learning} → {self.session_id}"
