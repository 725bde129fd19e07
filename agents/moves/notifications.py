"""Telling the webhooks: each event makes a Delivery row per subscribed webhook
(the database holds what is owed), queued for sending once the transaction
commits; the receivers of what other moves announce (a bead blocked, a
review waiting, a plan done).
"""

from collections.abc import Sequence
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction

from agents import queues
from agents.models import Submission, webhooks
from agents.models.webhooks import SEND_TIMEOUT_SECONDS, Delivery, Webhook
from beads.models import Bead, Plan


def tell_blocked(sender: type[Bead], bead: Bead, reason: str, **kwargs: Any) -> None:
    """beads.signals.blocked's receiver: the webhooks that want it hear of every block."""
    emit(
        webhooks.BEAD_BLOCKED,
        {
            "bead": bead.pk,
            "repository": bead.repository.slug,
            "title": bead.title,
            "reason": reason,
            "text": f"{bead.pk} ({bead.title}) is blocked: {reason}",
        },
    )


def tell_review_waiting(submission: Submission) -> None:
    bead = submission.bead
    emit(
        webhooks.REVIEW_WAITING,
        {
            "submission": submission.pk,
            "bead": bead.pk,
            "repository": submission.repository.slug,
            "title": bead.title,
            "url": settings.CORRAL_URL + submission.get_absolute_url(),
            "text": f"Review waiting: {bead.pk} {bead.title}",
        },
        key=f"review:{submission.pk}:{submission.started_at}",
    )


def tell_finished_plans(sender: type[Bead], beads: Sequence[Bead], **kwargs: Any) -> None:
    """A plan all of whose beads have now landed is done: its webhooks hear so, once."""
    for plan in Plan.objects.filter(waves__beads__in=beads).distinct():
        beads_of_plan = Bead.objects.filter(waves__plan=plan)
        if not beads_of_plan.exclude(status=Bead.Status.CLOSED).exists():
            emit(
                webhooks.PLAN_DONE,
                {
                    "plan": plan.name,
                    "beads": sorted(beads_of_plan.values_list("pk", flat=True)),
                    "text": f"Plan {plan.name} is done: every bead has landed.",
                },
                key=f"plan-done:{plan.pk}",
            )


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
        "agents.jobs.webhooks.deliver",
        delivery.pk,
        job_id=f"webhook-{delivery.pk}-{delivery.attempts}",
        job_timeout=SEND_TIMEOUT_SECONDS + 30,
    )
