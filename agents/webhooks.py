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

A Slack-compatible webhook gets `{"text": ...}` (Slack's incoming webhooks
read that) instead of Corral's own JSON.
"""

import hashlib
import hmac
import json
import secrets
import urllib.error
import urllib.request
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from agents import queues

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
STALE_SENDING = timedelta(minutes=2)  # a sender that died mid-send


def valid_events(value: Any) -> None:
    if not isinstance(value, list) or not all(e in EVENTS for e in value):
        raise ValidationError(f"Choose events from: {', '.join(EVENTS)}.")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Webhook(models.Model):
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    secret = models.CharField(
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

    def body(self, event: str, data: dict[str, Any], delivery_id: int) -> bytes:
        if self.slack:
            payload: dict[str, Any] = {"text": data.get("text") or EVENTS[event]}
        else:
            payload = {"event": event, "delivery": delivery_id, "data": data}
        return json.dumps(payload, sort_keys=True, default=str).encode()

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()


class Delivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        DELIVERED = "delivered"
        FAILED = "failed"

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
        return bool(
            Delivery.objects.filter(
                pk=self.pk, status=self.Status.PENDING, next_attempt_at__lte=now
            ).update(status=self.Status.SENDING, attempts=F("attempts") + 1, last_attempt_at=now)
        )

    def done(self, code: int) -> None:
        Delivery.objects.filter(pk=self.pk, status=self.Status.SENDING).update(
            status=self.Status.DELIVERED,
            last_status_code=code,
            last_error="",
            delivered_at=timezone.now(),
        )

    def failed(self, attempts: int, code: int | None, error: str) -> None:
        """Try again after the next wait, or give up after the last."""
        backoff = settings.WEBHOOK_BACKOFF_SECONDS
        changes: dict[str, Any] = {"last_status_code": code, "last_error": error[:2000]}
        if attempts > len(backoff):
            changes["status"] = self.Status.FAILED
        else:
            changes["status"] = self.Status.PENDING
            changes["next_attempt_at"] = timezone.now() + timedelta(seconds=backoff[attempts - 1])
        Delivery.objects.filter(pk=self.pk, status=self.Status.SENDING).update(**changes)


def emit(event: str, data: dict[str, Any], key: str = "") -> int:
    """Owe `event` to every active webhook that wants it; sent once this
    transaction commits. With a `key`, each webhook is told only once."""
    made = 0
    with transaction.atomic():
        for hook in Webhook.objects.filter(active=True):
            if event not in (hook.events or []):
                continue
            if key and Delivery.objects.filter(webhook=hook, key=key).exists():
                continue
            delivery = Delivery.objects.create(webhook=hook, event=event, data=data, key=key)
            queues.after_commit(partial(enqueue, delivery))
            made += 1
    return made


def enqueue(delivery: Delivery) -> None:
    queues.queue(queues.DEFAULT).enqueue(
        "agents.webhooks.deliver",
        delivery.pk,
        job_id=f"webhook-{delivery.pk}-{delivery.attempts}",
        job_timeout=SEND_TIMEOUT_SECONDS + 30,
    )


def deliver(delivery_id: int) -> str:
    """The job: send one delivery if it is due; returns its status after."""
    delivery = Delivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or not delivery.take():
        return "skipped"
    delivery.refresh_from_db(fields=["attempts"])
    hook = delivery.webhook
    body = hook.body(delivery.event, delivery.data, delivery.pk)
    request = urllib.request.Request(
        hook.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Corral-Webhook/1",
            "X-Corral-Event": delivery.event,
            "X-Corral-Delivery": str(delivery.pk),
            "X-Corral-Signature": hook.sign(body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_SECONDS) as answer:
            delivery.done(answer.status)
            return "delivered"
    except urllib.error.HTTPError as e:
        delivery.failed(delivery.attempts, e.code, f"HTTP {e.code} {e.reason}")
    except (urllib.error.URLError, OSError, ValueError) as e:
        delivery.failed(delivery.attempts, None, f"{type(e).__name__}: {e}")
    return "failed"


def send_due() -> int:
    """Queue the deliveries whose wait is over (and those a dead sender left)."""
    now = timezone.now()
    Delivery.objects.filter(
        status=Delivery.Status.SENDING, last_attempt_at__lt=now - STALE_SENDING
    ).update(status=Delivery.Status.PENDING)
    due = list(Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now))
    for delivery in due:
        enqueue(delivery)
    return len(due)
