"""Back-pressure from review: a repository with more submissions awaiting a
person than its limit (its `review_limit`, else CORRAL_REVIEW_LIMIT; 0: no
limit) gets no new sessions. The hook applies it (registered as a hook.Hold
in agents/apps.py), so the claim, dispatch, `GET ready` and the pages all
see it; this module gives the words and the figures.
"""

from collections.abc import Sequence

from django.conf import settings
from django.db.models import Count

from agents.models import Submission
from beads import hook
from workspace.models import Repository

AWAITING = Submission.Status.AWAITING_REVIEW
WORDS = "waiting for review capacity"


def limit_of(repository: Repository) -> int:
    """The repository's review limit (0: none)."""
    if repository.review_limit is not None:
        return repository.review_limit
    return int(settings.REVIEW_LIMIT)


def held_sql() -> str:
    """hook.Hold's condition on a repository row `r`: room for review."""
    limit = f"COALESCE(r.review_limit, {int(settings.REVIEW_LIMIT)})"
    waiting = (
        f"(SELECT COUNT(*) FROM {Submission._meta.db_table} s "
        f"WHERE s.repository_id = r.id AND s.status = '{AWAITING}')"
    )
    return f"({limit} = 0 OR {waiting} <= {limit})"


def awaiting(repository_ids: list[int] | None = None) -> dict[int, int]:
    """{repository id: submissions awaiting a person}."""
    rows = Submission.objects.filter(status=AWAITING)
    if repository_ids is not None:
        rows = rows.filter(repository_id__in=repository_ids)
    counts = rows.values_list("repository_id").annotate(n=Count("*")).order_by()
    return dict(counts.values_list("repository_id", "n"))


def why_held(repository: Repository, waiting: int | None = None) -> str:
    """The hook's words for a repository held back for review, or ""."""
    limit = limit_of(repository)
    if not limit:
        return ""
    if waiting is None:
        waiting = awaiting([repository.pk]).get(repository.pk, 0)
    if waiting <= limit:
        return ""
    return f"{WORDS}: {waiting} submissions await a person (its limit is {limit})"


def held_repositories(repositories: Sequence[Repository]) -> dict[int, str]:
    """{repository id: why} of those held back for review, in one query."""
    counts = awaiting([r.pk for r in repositories])
    held = {r.pk: why_held(r, counts.get(r.pk, 0)) for r in repositories}
    return {pk: why for pk, why in held.items() if why}


HOLD = hook.Hold(name="review", sql=held_sql, held=held_repositories)
