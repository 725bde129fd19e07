"""The webhook sender: a job on the `default` queue sends one delivery, signed
with its webhook's secret; a failed send is tried again after a growing wait
kept in the row, and reconcile() queues what is due (losing Redis loses no
delivery).
"""

import http.client
from datetime import timedelta

from django.utils import timezone

from agents.models.webhooks import SEND_TIMEOUT_SECONDS, Delivery
from agents.moves.notifications import enqueue
from workspace import egress

STALE_SENDING = timedelta(minutes=2)  # a sender that died mid-send


def deliver(delivery_id: int) -> str:
    """The job: send one delivery if it is due; returns its status after."""
    delivery = Delivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or not delivery.take():
        return "skipped"
    delivery.refresh_from_db(fields=["attempts"])
    hook = delivery.webhook
    body = hook.body(delivery.event, delivery.data, delivery.pk)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Corral-Webhook/1",
        "X-Corral-Event": delivery.event,
        "X-Corral-Delivery": str(delivery.pk),
        "X-Corral-Signature": hook.sign(body),
    }
    try:
        answer = egress.post(hook.url, body, headers, SEND_TIMEOUT_SECONDS)
    except egress.Refused as e:
        delivery.failed(delivery.attempts, None, f"Refused: {e}")
        return "failed"
    except (OSError, http.client.HTTPException, ValueError) as e:
        delivery.failed(delivery.attempts, None, f"{type(e).__name__}: {e}")
        return "failed"
    if 200 <= answer.status < 300:
        delivery.done(answer.status)
        return "delivered"
    error = f"HTTP {answer.status} {answer.reason}"
    if 300 <= answer.status < 400:
        # A redirect is never followed: it could lead the signed body anywhere, inward too.
        error += f": a redirect (to {answer.location or 'nowhere said'}), not followed"
    delivery.failed(delivery.attempts, answer.status, error)
    return "failed"


def send_due() -> int:
    """Queue the deliveries whose wait is over (and those a dead sender left)."""
    now = timezone.now()
    Delivery.move_all("retry", Delivery.objects.filter(last_attempt_at__lt=now - STALE_SENDING))
    due = list(Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now))
    for delivery in due:
        enqueue(delivery)
    return len(due)
