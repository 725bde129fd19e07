"""Learnings come in from every place a lesson appears, and a lesson seen again
is folded into the learning that already says it.

Sources: an agent's `.agents/learnings/*.md` and handoff (through the
submission), the API and `corral learn`, a submission a gate refused (the
gate and its output), a person's reason for rejecting one. All of them go
through `propose`; captured ones start as candidates for a person to approve.

"Says the same thing": among the workspace's live learnings the full-text
index finds most like the new one, the one whose words (title and body,
lowercased, words with digits dropped) overlap the new one's most, if by
SAME_WORDS (Jaccard) or more.
"""

import re
from typing import Any

from django.utils import timezone

from knowledge.models import Learning
from knowledge.rank import MAX_TERMS, full_text, terms
from workspace.models import Repository, Workspace

# agents.models.Session: agents sits above knowledge.
AgentSession = Any

SAME_WORDS = 0.6
NEIGHBOURS = 20
LIVE = (Learning.Status.CANDIDATE, Learning.Status.APPROVED)
GATE_REFUSAL = re.compile(r"^(\w+) gate: (.*)$", re.DOTALL)
MAX_OUTPUT = 4000
ERROR_LINE = re.compile(r"^\w*(Error|Exception)\b: ")


def propose(
    workspace: Workspace,
    repository: Repository | None,
    title: str,
    body: str,
    tags: list[str] | None = None,
    files: list[str] | None = None,
    source: dict[str, Any] | None = None,
    session: AgentSession = None,
) -> Learning:
    """A new candidate learning, or the existing one it repeats (counted, its
    source added)."""
    source = {"at": timezone.now().isoformat(), **(source or {})}
    if session is not None:
        source.setdefault("session", str(session.pk))
        source.setdefault("bead", session.bead_id)
    same = duplicate_of(workspace, title, body)
    if same is not None:
        same.fold(source)
        same.refresh_from_db()
        return same
    return Learning.objects.create(
        workspace=workspace,
        repository=repository,
        title=title[:200],
        body=body,
        tags=list(tags or []),
        files=list(files or []),
        sources=[source],
        source_session=session,
        source_bead=session.bead if session is not None else None,
    )


def duplicate_of(workspace: Workspace, title: str, body: str) -> Learning | None:
    new = words(title, body)
    if not new:
        return None
    live = Learning.objects.filter(workspace=workspace).exclude(status=Learning.Status.RETIRED)
    best, best_overlap = None, SAME_WORDS
    query = [w for w in terms(f"{title} {body}") if w in new]
    for learning in live.filter(pk__in=neighbours(workspace, query)):
        old = words(learning.title, learning.body)
        overlap = len(new & old) / len(new | old)
        if overlap >= best_overlap:
            best, best_overlap = learning, overlap
    return best


def words(*texts: str) -> set[str]:
    return {w for w in terms(" ".join(texts)) if not any(c.isdigit() for c in w)}


def neighbours(workspace: Workspace, query: list[str]) -> list[int]:
    """The ids of the live learnings the full-text index ranks closest to `query`."""
    if not query:
        return []
    found = full_text(workspace, query[:MAX_TERMS], LIVE)
    return [pk for pk, _ in found[:NEIGHBOURS]]


def from_refusal(session: AgentSession, reason: str) -> Learning | None:
    """A gate's refusal as a candidate learning: the gate, what it printed, the
    bead and the files the submission changed (None if no gate refused it)."""
    found = GATE_REFUSAL.match(reason.strip())
    if not found:
        return None  # a conflict or the lead's own failure: nothing about the code base
    gate, output = found.groups()
    bead = session.bead
    title = f"{gate} gate: {headline(output) or 'refused the change'}"
    body = (
        f"The {gate} gate refused a change for {bead.pk} ({bead.title}) in "
        f"{bead.repository.slug}. What it said:\n\n```\n{output.strip()[-MAX_OUTPUT:]}\n```\n"
    )
    return propose(
        bead.repository.workspace,
        bead.repository,
        title,
        body,
        tags=[f"gate:{gate}"],
        files=list(session.changed_files or []),
        source={"kind": "refusal", "gate": gate},
        session=session,
    )


def from_rejection(session: AgentSession, reason: str, reviewer: str) -> Learning | None:
    """A person's reason for rejecting a submission as a candidate learning."""
    if not reason.strip():
        return None
    bead = session.bead
    body = (
        f"{reviewer} rejected a change for {bead.pk} ({bead.title}) in "
        f"{bead.repository.slug}:\n\n{reason.strip()}\n"
    )
    return propose(
        bead.repository.workspace,
        bead.repository,
        f"Review: {headline(reason)}",
        body,
        tags=["review"],
        files=list(session.changed_files or []),
        source={"kind": "rejection", "reviewer": reviewer},
        session=session,
    )


def headline(output: str) -> str:
    """The line of a gate's output that says most: the first exception's message
    (a test's `AssertionError: ...`), else the first line that says something
    (not its exit code, nor a rule of ===== or ----- as unittest prints)."""
    lines = [line.strip() for line in output.splitlines()]
    said = [
        line
        for line in lines
        if any(c.isalnum() for c in line) and not line.startswith("Exit code")
    ]
    errors = [line for line in said if ERROR_LINE.match(line)]
    return (errors or said or [""])[0][:160]
