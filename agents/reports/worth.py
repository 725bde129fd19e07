"""What a learning is worth, by evidence: how the sessions it was given to
ended, against comparable sessions without it (the same repository and the
same kind of bead, where it was given), so a person curates by outcomes.

A session counts once it has ended (landed, or failed, timed out, stopped
out of scope or lost; a cancelled or paused one says nothing of the work). A
first-try landing is a session that landed with no earlier failed try on its
bead. Two queries: the (repository, bead type) pairs it went to, then one
aggregate over the sessions of those pairs, split by whether it was given.
"""

from dataclasses import dataclass
from functools import reduce
from operator import or_

from django.db.models import Count, Exists, OuterRef, Q

from agents.models import Session
from knowledge.models import Injection, Learning

ENDED = [
    Session.Status.SUCCEEDED,
    Session.Status.FAILED,
    Session.Status.TIMED_OUT,
    Session.Status.OUT_OF_SCOPE,
    Session.Status.LOST,
]
FAILED_TRIES = ENDED[1:]


@dataclass(frozen=True)
class Rate:
    first_try: int  # landed with no failed try on the bead before
    ended: int

    @property
    def percent(self) -> int | None:
        return round(100 * self.first_try / self.ended) if self.ended else None


@dataclass(frozen=True)
class Worth:
    given: Rate  # sessions it was given to
    without: Rate  # comparable sessions it was not given to
    kinds: list[tuple[str, str]]  # (repository slug, bead type) compared on


def worth(learning: Learning) -> Worth:
    pairs = list(
        Injection.objects.filter(learning=learning)
        .values_list(
            "session__bead__repository_id",
            "session__bead__repository__slug",
            "session__bead__issue_type",
        )
        .distinct()
        .order_by()
    )
    if not pairs:
        return Worth(Rate(0, 0), Rate(0, 0), [])
    same_kind = reduce(
        or_, (Q(bead__repository_id=repo, bead__issue_type=kind) for repo, _, kind in pairs)
    )
    given = Injection.objects.filter(learning=learning, session=OuterRef("pk"))
    failed_before = Session.objects.filter(
        bead=OuterRef("bead"), created_at__lt=OuterRef("created_at"), status__in=FAILED_TRIES
    )
    first_try = Q(status=Session.Status.SUCCEEDED, retried=False)
    counts = (
        Session.objects.filter(same_kind, status__in=ENDED)
        .annotate(given=Exists(given), retried=Exists(failed_before))
        .aggregate(
            given_ended=Count("pk", filter=Q(given=True)),
            given_first=Count("pk", filter=Q(given=True) & first_try),
            without_ended=Count("pk", filter=Q(given=False)),
            without_first=Count("pk", filter=Q(given=False) & first_try),
        )
    )
    return Worth(
        Rate(counts["given_first"], counts["given_ended"]),
        Rate(counts["without_first"], counts["without_ended"]),
        sorted({(slug, kind) for _, slug, kind in pairs}),
    )
