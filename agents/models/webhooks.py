"""Outgoing webhooks: JSON on the events people choose, signed, retried.

Each event makes a Delivery row per subscribed webhook (the database holds
what is owed); a job on the `default` queue sends it. The body is signed with
the webhook's secret: `X-Corral-Signature: sha256=<hex HMAC-SHA256 of the
body>`, so a receiver checks it with its copy of the secret. A failed send
(no answer, or not a 2xx) is tried again after a growing wait
(WEBHOOK_BACKOFF_SECONDS), up to its last try; then the delivery is failed
and stays visible, with the last error, in the admin. The waits are kept in
the row, not in Redis: reconcile() (the ticker) sends what is due again, so
losing Redis loses no delivery.

Deliveries go only to public addresses and follow no redirect (workspace/egress.py).

A Slack-compatible webhook gets `{"text": ...}` (Slack's incoming webhooks
read that) instead of Corral's own JSON."""

import hashlib
import hmac
import json
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from workspace import egress
from workspace.secrets import EncryptedTextField
from workspace.states import Transitions, move

REVIEW_WAITING = "review_waiting"
BEAD_BLOCKED = "bead_blocked"
PLAN_DONE = "plan_done"
REPOSITORY_STUCK = "repository_stuck"
BUDGET_REACHED = "budget_reached"
CHANGESET_DONE = "changeset_done"
EVENTS = {
    REVIEW_WAITING: "a submission waits for review",
    BEAD_BLOCKED: "a bead is blocked",
    PLAN_DONE: "every bead of a plan has landed",
    REPOSITORY_STUCK: "a repository's lead queue is stuck",
    BUDGET_REACHED: "a token budget stopped a session",
    CHANGESET_DONE: "a change set landed (every member)",
}


SEND_TIMEOUT_SECONDS = 10


def valid_events(value: Any) -> None:
    if not isinstance(value, list) or not all(e in EVENTS for e in value):
        raise ValidationError(f"Choose events from: {', '.join(EVENTS)}.")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Webhook(models.Model):
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    # Stored encrypted, never shown again (workspace/secrets.py).
    secret = EncryptedTextField(
        max_length=200, default=new_secret, help_text="signs each body (HMAC-SHA256)"
    )
    events = models.JSONField(default=list, validators=[valid_events], help_text=", ".join(EVENTS))
    slack = models.BooleanField(default=False, help_text='send Slack\'s {"text": ...} payload')
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Refuse a destination off limits now (it is checked again at each send)."""
        if self.url:
            try:
                egress.check_url(self.url)
            except egress.Refused as e:
                raise ValidationError({"url": str(e)}) from None

    def body(self, event: str, data: dict[str, Any], delivery_id: int) -> bytes:
        if self.slack:
            payload: dict[str, Any] = {"text": data.get("text") or EVENTS[event]}
        else:
            payload = {"event": event, "delivery": delivery_id, "data": data}
        return json.dumps(payload, sort_keys=True, default=str).encode()

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()


class Delivery(Transitions, models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        DELIVERED = "delivered"
        FAILED = "failed"

    MOVES = {
        "take": move(Status.PENDING, Status.SENDING),  # one sender claims it
        "deliver": move(Status.SENDING, Status.DELIVERED),
        "retry": move(Status.SENDING, Status.PENDING),  # after a wait, or its sender died
        "give_up": move(Status.SENDING, Status.FAILED),  # after the last try
    }

    webhook = models.ForeignKey(Webhook, models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=30)
    data = models.JSONField(default=dict)
    # Once per key and webhook (a repository stuck on one submission is told once).
    key = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["webhook", "key"], condition=~Q(key=""), name="one_delivery_per_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.webhook_id} ({self.status})"

    def take(self) -> bool:
        """Claim the send (a conditional UPDATE: two jobs never both send)."""
        now = timezone.now()
        due = Q(next_attempt_at__lte=now)
        return self.move("take", when=due, attempts=F("attempts") + 1, last_attempt_at=now)

    def done(self, code: int) -> None:
        self.move("deliver", last_status_code=code, last_error="", delivered_at=timezone.now())

    def failed(self, attempts: int, code: int | None, error: str) -> None:
        """Try again after the next wait, or give up after the last."""
        backoff = settings.WEBHOOK_BACKOFF_SECONDS
        changes: dict[str, Any] = {"last_status_code": code, "last_error": error[:2000]}
        if attempts > len(backoff):
            self.move("give_up", **changes)
            return
        wait = timedelta(seconds=backoff[attempts - 1])
        self.move("retry", next_attempt_at=timezone.now() + wait, **changes)
