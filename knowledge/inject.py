"""Fit ranked learnings to a budget, record what went in, render the context.

Ranking itself is knowledge/rank.py (full text in the database, then the
score's parts). Learnings from any repository of the workspace compete:
that is how knowledge crosses repositories.
"""

from collections.abc import Iterable, Sequence
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db.models import F

from beads.models import Bead
from knowledge import codemap
from knowledge.models import Injection, Learning
from knowledge.rank import Ranked, Work, rank
from knowledge.seams import SessionLike
from workspace.models import Repository, Workspace
from workspace.scrub import scrub

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
# Kept free for the notes on what was cut (the code map's, then the learnings').
NOTE_ROOM = 400
# The most of a pack's limit the code map may take; what it leaves, learnings use.
MAP_SHARE = 0.25
COMMENTS_SHOWN = 5  # recent comments in a context pack
COMMENT_CHARS = 1000
# The section a reviewer's line comments go under (the demo agent looks for it).
REVIEW_HEADING = "## Review comments to address\n\n"


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
    workspace: Workspace,
    repository: Repository | None,
    query: str,
    budget: int,
    only_here: bool = False,
) -> tuple[list[Ranked], int]:
    """Learnings ranked for a query; `only_here`: the repository's and the
    workspace-wide ones only (an agent's search, knowledge/api.py)."""
    ranked = rank(workspace, Work(repository, query))
    if only_here:
        here = (None, repository.pk if repository else None)
        ranked = [r for r in ranked if r.learning.repository_id in here]
    return fit(ranked, budget), len(ranked)


def record(session: SessionLike, chosen: Sequence[Ranked]) -> None:
    """Note what went into a session's context, and count the uses."""
    Injection.objects.bulk_create(
        [
            Injection(
                learning=item.learning,
                session_id=session.pk,
                rank=n,
                chars=len(item.text),
                score=item.score,
            )
            for n, item in enumerate(chosen, 1)
        ],
        ignore_conflicts=True,
    )
    Learning.objects.filter(pk__in=[i.learning.pk for i in chosen]).update(uses=F("uses") + 1)


def previous_handoff(bead: Bead, session: SessionLike | None = None) -> str:
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


def render_context(
    session: SessionLike,
    budget: int,
    resume: str = "",
    source: Path | None = None,
    review: str = "",
) -> str:
    """The context pack's text for a session, within `budget` characters and
    pack_limit's cap.

    The bead itself always goes in, with `resume` (where the previous session
    stopped, and what of its work this one starts from: agents/jobs/resume.py)
    and `review` (a person's comments on the lines of the last submission, when
    they asked for changes: agents.models.review_pack_text); then the code map
    of its scope (knowledge/codemap.py, read from `source` or the canonical
    copy), within MAP_SHARE of the limit and what the bead left; learnings fill
    what is left, best first, and the end says what was cut and why.
    """
    limit, why = pack_limit(session.agent.preset, budget)
    text, cut_note = bead_text(session, limit - NOTE_ROOM, resume, review)
    map_text, map_note = code_map(
        session, limit - len(text) - len(cut_note) - NOTE_ROOM, limit, source
    )
    text += map_text
    ranked = rank(session.bead.repository.workspace, Work.of(session.bead))
    chosen = fit(ranked, limit - len(text) - len(cut_note) - NOTE_ROOM)
    left_out = [r for r in ranked if r not in chosen]
    if chosen:
        text += "\n## Learnings from earlier work\n\n" + "\n".join(i.text for i in chosen)
    cut_note += map_note
    if left_out:
        cut_note += cut_learnings(left_out, why, NOTE_ROOM - len(map_note))
    record(session, chosen)
    return (text + cut_note)[:limit]  # only a limit below NOTE_ROOM cuts into the note


def code_map(session: SessionLike, left: int, limit: int, source: Path | None) -> tuple[str, str]:
    """The code map's text within MAP_SHARE of the limit and the room the bead
    `left`, and its note on what it cut (or why there is none)."""
    cmap, why_not = codemap.for_session(session, source)
    if cmap is None:
        return "", why_not
    return codemap.render(cmap, max(0, min(left, int(limit * MAP_SHARE))))


def bead_text(
    session: SessionLike, room: int, resume: str = "", review: str = ""
) -> tuple[str, str]:
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
    if review:
        parts.append(REVIEW_HEADING + scrub(review.strip()) + "\n")
    if resume:
        parts.append(scrub(resume))
    if handoff := previous_handoff(bead, session):
        parts.append("## Handoff from the previous session\n\n" + scrub(handoff.strip()) + "\n")
    if comments := recent_comments(bead):
        parts.append("## Recent comments\n\n" + comments + "\n")
    text = "\n".join(parts)
    if len(text) <= room:
        return text, ""
    note = f"\n[Context cut: {len(text) - room} characters of the bead did not fit.]\n"
    return text[: max(0, room - len(note))], note


def cut_learnings(left_out: Sequence[Ranked], why: str, room: int = NOTE_ROOM) -> str:
    """Which relevant learnings did not fit, and why, within `room` characters."""
    head = f"\n[{len(left_out)} more relevant learning(s) left out by the limit ({why}):"
    names = ""
    for shown, item in enumerate(left_out):
        name = f" #{item.learning.pk} {item.learning.title[:60]!r} (score {item.score});"
        if len(head) + len(names) + len(name) + len(" and 99999 more]") > room:
            names += f" and {len(left_out) - shown} more"
            break
        names += name
    return (head + names).rstrip(";") + "]\n"
