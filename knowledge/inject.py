"""Rank learnings for a piece of work, fit them to a budget, render the context.

Relevance is plain word overlap between the work (title, description,
labels, scope) and each approved learning (title, body, tags), with tags
counting triple, a bonus for the same repository, and the learning's record
(helpful minus harmful). Learnings from any repository of the workspace
compete: that is how knowledge crosses repositories.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import F

from beads.models import Bead
from knowledge.models import Injection, Learning
from workspace.models import Repository, Workspace
from workspace.scrub import scrub

# An agents.models.Session: agents sits above knowledge, so it is not imported here.
AgentSession = Any

WORD = re.compile(r"[a-z0-9_]{3,}")
COMMENTS_SHOWN = 5  # recent comments in a context pack
COMMENT_CHARS = 1000
STOP = {"the", "and", "for", "with", "that", "this", "from", "into", "when", "are", "not", "all"}


@dataclass
class Ranked:
    learning: Learning
    score: float

    @property
    def text(self) -> str:
        return f"### {self.learning.title}\n\n{self.learning.body.strip()}\n"


def words(*texts: object) -> set[str]:
    """Lowercase words of three letters or more, a plural's `s` dropped ("models" ~ "model")."""
    found = {w for text in texts for w in WORD.findall(str(text).lower())} - STOP
    return {w[:-1] if len(w) > 4 and w.endswith("s") else w for w in found}


def rank(
    workspace: Workspace,
    repository: Repository | None = None,
    text: str = "",
    tags: Sequence[str] = (),
    limit: int = 50,
) -> list[Ranked]:
    """Approved learnings of the workspace, most relevant first (only those with any relevance)."""
    wanted, wanted_tags = words(text, *tags), {t.lower() for t in tags}
    candidates = Learning.objects.filter(workspace=workspace, status=Learning.Status.APPROVED)
    scored: list[Ranked] = []
    for learning in candidates.select_related("repository"):
        overlap = len(wanted & words(learning.title, learning.body))
        tag_hits = len(wanted_tags & {t.lower() for t in learning.tags})
        local = learning.repository_id is None or learning.repository_id == getattr(
            repository, "pk", None
        )
        if not (overlap or tag_hits or (local and not text)):
            continue
        score: float = overlap + 3 * tag_hits + (2 if local else 0)
        score += 0.5 * (learning.helpful - learning.harmful)
        scored.append(Ranked(learning, round(score, 2)))
    scored.sort(key=lambda r: (-r.score, -r.learning.pk))
    return scored[:limit]


def fit(ranked: Iterable[Ranked], budget: int) -> list[Ranked]:
    """The best-ranked learnings whose texts fit in `budget` characters together."""
    chosen: list[Ranked] = []
    used = 0
    for item in ranked:
        size = len(item.text)
        if used + size <= budget:
            chosen.append(item)
            used += size
    return chosen


def for_bead(bead: Bead, budget: int) -> tuple[list[Ranked], int]:
    text = " ".join([bead.title, bead.description, *bead.scope])
    ranked = rank(bead.repository.workspace, bead.repository, text, bead.labels)
    return fit(ranked, budget), len(ranked)


def search(
    workspace: Workspace, repository: Repository | None, query: str, budget: int
) -> tuple[list[Ranked], int]:
    ranked = rank(workspace, repository, query)
    return fit(ranked, budget), len(ranked)


def record(session: AgentSession, chosen: Sequence[Ranked]) -> None:
    """Note what went into a session's context, and count the uses."""
    Injection.objects.bulk_create(
        [
            Injection(learning=item.learning, session=session, rank=n, chars=len(item.text))
            for n, item in enumerate(chosen, 1)
        ],
        ignore_conflicts=True,
    )
    Learning.objects.filter(pk__in=[i.learning.pk for i in chosen]).update(uses=F("uses") + 1)


def previous_handoff(bead: Bead, session: AgentSession | None = None) -> str:
    """The summary the bead's last session left, for the next one to start from."""
    earlier = bead.sessions.exclude(summary="")
    if session is not None:
        earlier = earlier.exclude(pk=session.pk)
    last = earlier.order_by("-created_at").first()
    return last.summary if last else ""


def recent_comments(bead: Bead, count: int = COMMENTS_SHOWN) -> str:
    """The bead's last comments, oldest first, each cut to COMMENT_CHARS."""
    last = list(bead.comments.select_related("person").order_by("-created_at", "-pk")[:count])
    return "\n".join(
        f"- {c.author} ({c.created_at:%Y-%m-%d %H:%M}): {scrub(c.text.strip())[:COMMENT_CHARS]}"
        for c in reversed(last)
    )


def render_context(session: AgentSession, budget: int) -> str:
    """The context pack's text for a session, within `budget` characters.

    The bead itself always goes in; learnings fill what the budget leaves,
    and anything cut is said at the end.
    """
    bead = session.bead
    parts = [f"# {bead.title} ({bead.id})\n", bead.description.strip() + "\n"]
    if bead.acceptance_criteria.strip():
        parts.append("## Acceptance criteria\n\n" + bead.acceptance_criteria.strip() + "\n")
    scope = "\n".join(f"- `{p}`" for p in bead.scope) or "- (any path the repository allows)"
    parts.append("## Scope: the only paths you may change\n\n" + scope + "\n")
    # Both may quote what an earlier attempt's code printed, secrets included:
    # scrubbed again here, as rows written before scrubbing existed are not.
    if bead.last_failure:
        failure = scrub(bead.last_failure.strip())
        parts.append("## Why the last attempt failed\n\n" + failure + "\n")
    if handoff := previous_handoff(bead, session):
        parts.append("## Handoff from the previous session\n\n" + scrub(handoff.strip()) + "\n")
    if comments := recent_comments(bead):
        parts.append("## Recent comments\n\n" + comments + "\n")
    text = "\n".join(parts)
    cut_note = ""
    if len(text) > budget:
        cut_note = f"\n[Context cut: {len(text) - budget} characters of the bead did not fit.]\n"
        text = text[: max(0, budget - len(cut_note))]
    chosen, found = for_bead(bead, budget - len(text) - len(cut_note) - 200)
    if chosen:
        text += "\n## Learnings from earlier work\n\n" + "\n".join(i.text for i in chosen)
    if found > len(chosen):
        cut_note += f"\n[{found - len(chosen)} more relevant learning(s) left out by the budget.]\n"
    record(session, chosen)
    return text + cut_note
