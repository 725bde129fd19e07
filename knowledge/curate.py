"""What a person does to learnings on the knowledge page, beyond a single row's
move (approve and retire are the model's): merge two into one."""

from django.db import IntegrityError, transaction
from django.db.models import F

from knowledge.models import Injection, Learning


class CannotMerge(Exception):
    """The two cannot be merged; the message says why."""


def merge(keep: Learning, other: Learning, by: str) -> Learning:
    """`other` goes into `keep`: its body (if it says more), tags, files, sources,
    counters and injections; `other` is retired, naming `keep`."""
    if keep.pk == other.pk:
        raise CannotMerge("A learning cannot be merged into itself.")
    if keep.workspace_id != other.workspace_id:
        raise CannotMerge("The two learnings belong to different workspaces.")
    with transaction.atomic():
        if not other.retire(f"Merged into #{keep.pk} by {by}."):
            raise CannotMerge(f"#{other.pk} is {other.status}: it cannot be merged.")
        for injection in Injection.objects.filter(learning=other):
            try:
                with transaction.atomic():
                    Injection.objects.filter(pk=injection.pk).update(learning=keep)
            except IntegrityError:
                pass  # both went into that session: keep's record stands
        keep.refresh_from_db()
        body = keep.body
        if other.body.strip() and other.body.strip() not in body:
            body = f"{body.rstrip()}\n\n{other.body.strip()}\n"
        Learning.objects.filter(pk=keep.pk).update(
            body=body,
            tags=keep.tags + [t for t in other.tags if t not in keep.tags],
            files=keep.files + [f for f in other.files if f not in keep.files],
            sources=keep.sources + other.sources + [{"kind": "merge", "from": other.pk, "by": by}],
            occurrences=F("occurrences") + other.occurrences,
            uses=F("uses") + other.uses,
            helpful=F("helpful") + other.helpful,
            harmful=F("harmful") + other.harmful,
        )
    keep.refresh_from_db()
    return keep
