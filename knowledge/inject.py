"""Fit ranked learnings to a budget, record what went in, render the context.

Ranking itself is knowledge/rank.py (full text in the database, then the
score's parts). Learnings from any repository of the workspace compete:
that is how knowledge crosses repositories.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import F

from beads.models import Bead
from knowledge.models import Injection, Learning
from knowledge.rank import Ranked, Work, rank
from workspace.models import Repository, Workspace
from workspace.scrub import scrub

# An agents.models.Session: agents sits above knowledge, so it is not imported here.
AgentSession = Any

# The share of an agent's context window a pack may take, at most.
CONTEXT_SHARE = 0.4
CHARS_PER_TOKEN = 4
# Context windows by agent preset (tokens), conservative: the smallest model a
# CLI commonly runs. An unknown preset (a shell command) gets the default.
WINDOW_TOKENS = {
    "claude-code": 200_000,
    "codex": 272_000,
    "gemini": 1_000_000,
    "aider": 128_000,
    "opencode": 128_000,
}
DEFAULT_WINDOW_TOKENS = 32_000
# Kept free for the note on what was cut.
NOTE_ROOM = 400
COMMENTS_SHOWN = 5  # recent comments in a context pack
COMMENT_CHARS = 1000


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
    ranked = rank(bead.repository.workspace, Work.of(bead))
    return fit(ranked, budget), len(ranked)


def search(
    workspace: Workspace, repository: Repository | None, query: str, budget: int
) -> tuple[list[Ranked], int]:
    ranked = rank(workspace, Work(repository, query))
    return fit(ranked, budget), len(ranked)


def record(session: AgentSession, chosen: Sequence[Ranked]) -> None:
    """Note what went into a session's context, and count the uses."""
    Injection.objects.bulk_create(
        [
            Injection(
                learning=item.learning,
                session=session,
                rank=n,
                chars=len(item.text),
                score=item.score,
            )
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
    # Only the summary: a session row also carries its patch and its context.
    return earlier.order_by("-created_at").values_list("summary", flat=True).first() or ""


def pack_limit(preset: str, budget: int) -> tuple[int, str]:
    """The most characters a pack may hold, and why: the agent's budget, but never
    more than CONTEXT_SHARE of its CLI's context window (the essay: at 15 workers
    the context overflowed, and 40% was the rule that worked)."""
    window = WINDOW_TOKENS.get(preset, DEFAULT_WINDOW_TOKENS)
    cap = int(window * CHARS_PER_TOKEN * CONTEXT_SHARE)
    if cap < budget:
        return cap, f"40% of a {window:,}-token context window, {cap:,} characters"
    return budget, f"the agent's budget of {budget:,} characters"


def recent_comments(bead: Bead, count: int = COMMENTS_SHOWN) -> str:
    """The bead's last comments, oldest first, each cut to COMMENT_CHARS."""
    # Only what the lines show (Comment.author), not every column of the comment and its person.
    shown = (
        "agent",
        "author_name",
        "text",
        "created_at",
        f"person__{get_user_model().USERNAME_FIELD}",
    )
    comments = bead.comments.select_related("person").only(*shown)
    last = list(comments.order_by("-created_at", "-pk")[:count])
    return "\n".join(
        f"- {c.author} ({c.created_at:%Y-%m-%d %H:%M}): {scrub(c.text.strip())[:COMMENT_CHARS]}"
        for c in reversed(last)
    )


def render_context(session: AgentSession, budget: int) -> str:
    """The context pack's text for a session, within `budget` characters and
    pack_limit's cap.

    The bead itself always goes in; learnings fill what is left, best first,
    and the end says which were cut and why.
    """
    limit, why = pack_limit(session.agent.preset, budget)
    text, cut_note = bead_text(session, limit - NOTE_ROOM)
    ranked = rank(session.bead.repository.workspace, Work.of(session.bead))
    chosen = fit(ranked, limit - len(text) - len(cut_note) - NOTE_ROOM)
    left_out = [r for r in ranked if r not in chosen]
    if chosen:
        text += "\n## Learnings from earlier work\n\n" + "\n".join(i.text for i in chosen)
    if left_out:
        cut_note += cut_learnings(left_out, why)
    record(session, chosen)
    return (text + cut_note)[:limit]  # only a limit below NOTE_ROOM cuts into the note


def bead_text(session: AgentSession, room: int) -> tuple[str, str]:
    """The bead's part of the pack, and a note if it had to be cut to `room`."""
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
    if len(text) <= room:
        return text, ""
    note = f"\n[Context cut: {len(text) - room} characters of the bead did not fit.]\n"
    return text[: max(0, room - len(note))], note


def cut_learnings(left_out: Sequence[Ranked], why: str) -> str:
    """Which relevant learnings did not fit, and why, within NOTE_ROOM characters."""
    head = f"\n[{len(left_out)} more relevant learning(s) left out by the limit ({why}):"
    names = ""
    for shown, item in enumerate(left_out):
        name = f" #{item.learning.pk} {item.learning.title[:60]!r} (score {item.score});"
        if len(head) + len(names) + len(name) + len(" and 99999 more]") > NOTE_ROOM:
            names += f" and {len(left_out) - shown} more"
            break
        names += name
    return (head + names).rstrip(";") + "]\n"
