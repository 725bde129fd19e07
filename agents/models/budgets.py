"""Token budgets: per bead (all its sessions together), per repository per
day and per agent per day. People set them in the admin.

A budget counts input, output and cache-write tokens. Cache reads are left
out: an agent re-reads its whole conversation from the cache on every turn,
so counting them would measure how long a session talked, not what it did.
A day is a UTC day, and a session's tokens count on the day it was opened
(as on the usage page).

A running session over any of its budgets is stopped like one at its time
limit (agents/jobs/runner.py); its clone is kept for a person to look at. A bead
over its budget is blocked rather than sent back, so no agent takes it again
until a person raises the budget and reopens it; dispatch starts no session
for an agent or in a repository whose daily budget is spent."""

from django.db import models
from django.db.models import F, Q

COUNTED = F("input") + F("output") + F("cache_write")


class Budget(models.Model):
    bead = models.OneToOneField(
        "beads.Bead", models.CASCADE, null=True, blank=True, related_name="budget"
    )
    repository = models.OneToOneField(
        "workspace.Repository", models.CASCADE, null=True, blank=True, related_name="budget"
    )
    agent = models.OneToOneField(
        "agents.Agent", models.CASCADE, null=True, blank=True, related_name="budget"
    )
    tokens = models.PositiveBigIntegerField(
        help_text="input + output + cache-write tokens: for a bead in all, "
        "for a repository or an agent per day (UTC)"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(bead__isnull=False, repository__isnull=True, agent__isnull=True)
                    | Q(bead__isnull=True, repository__isnull=False, agent__isnull=True)
                    | Q(bead__isnull=True, repository__isnull=True, agent__isnull=False)
                ),
                name="budget_for_exactly_one_thing",
                violation_error_message="A budget is for one bead, one repository or one agent.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tokens:,} tokens for {self.target()}"

    def target(self) -> str:
        if self.bead_id:
            return f"bead {self.bead_id}"
        if self.repository_id:
            return f"repository {self.repository} per day"
        return f"agent {self.agent} per day"
