from django.db import models

from workspace.models import Repository, Workspace
from workspace.states import Transitions


class Learning(Transitions, models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        APPROVED = "approved"
        RETIRED = "retired"

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

    def __str__(self):
        return self.title

    def approve(self):
        return self.transition(self.Status.APPROVED, self.Status.CANDIDATE)

    def retire(self):
        return self.transition(self.Status.RETIRED, [self.Status.CANDIDATE, self.Status.APPROVED])


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

    def __str__(self):
        return f"{self.learning} → {self.session_id}"
