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

A lesson Corral's own gate output taught (a refusal, not an agent's text)
that recurs in two sessions on two different beads with the same
fingerprint (the gate and the headline of its output, with paths, numbers
and hashes blanked) is approved automatically: the same check refused two
pieces of work for the same reason, which is evidence of a convention, not
of one bead's trouble (a bead's own retries do not count twice: they are
its lesson for a person to approve, knowledge/curate.py). Audited.
"""

import hashlib
import re
from typing import Any

from django.db import transaction
from django.utils import timezone

from knowledge import curate
from knowledge.models import Learning
from knowledge.rank import MAX_TERMS, full_text, terms
from knowledge.seams import SessionLike
from workspace import audit
from workspace.failures import headline
from workspace.models import Repository, Workspace

SAME_WORDS = 0.6
NEIGHBOURS = 20
LIVE = (Learning.Status.CANDIDATE, Learning.Status.APPROVED)
GATE_REFUSAL = re.compile(r"^(\w+) gate: (.*)$", re.DOTALL)
MAX_OUTPUT = 4000
# Sessions on different beads a gate's lesson must recur in, same
# fingerprint, to approve itself.
RECURS_IN = 2
# What varies between two refusals for the same reason: blanked in the fingerprint.
VARYING = [
    (re.compile(r"[\w.-]*/[\w./-]*|\b[\w-]+\.[a-z]{1,5}\b"), "<path>"),
    (re.compile(r"\b[0-9a-f]{7,}\b"), "<hash>"),
    (re.compile(r"\d+"), "#"),
    (re.compile(r"\s+"), " "),
]


def propose(
    workspace: Workspace,
    repository: Repository | None,
    title: str,
    body: str,
    tags: list[str] | None = None,
    files: list[str] | None = None,
    source: dict[str, Any] | None = None,
    session: SessionLike | None = None,
) -> Learning:
    """A new candidate learning, or the existing one it repeats (counted, its
    source added)."""
    source = {"at": timezone.now().isoformat(), **(source or {})}
    if session is not None:
        source.setdefault("session", str(session.pk))
        source.setdefault("bead", session.bead_id)
    same = duplicate_of(workspace, title, body, session.bead_id if session is not None else "")
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
        source_session_id=session.pk if session is not None else None,
        source_bead=session.bead if session is not None else None,
    )


def duplicate_of(workspace: Workspace, title: str, body: str, bead: str = "") -> Learning | None:
    """The live learning that says the same, or None. `bead`: the bead the text
    was written about; its id (random letters) says nothing of the lesson."""
    new = words(title, body) - words(bead)
    if not new:
        return None
    live = Learning.objects.filter(workspace=workspace).exclude(status=Learning.Status.RETIRED)
    best, best_overlap = None, SAME_WORDS
    query = [w for w in terms(f"{title} {body}") if w in new]
    for learning in live.filter(pk__in=neighbours(workspace, query)):
        old = words(learning.title, learning.body) - words(learning.source_bead_id or "")
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


def from_refusal(session: SessionLike, reason: str) -> Learning | None:
    """A gate's refusal as a candidate learning: the gate, what it printed, the
    bead and the files the submission changed (None if no gate refused it)."""
    found = GATE_REFUSAL.match(reason.strip())
    if not found:
        return None  # a conflict or the lead's own failure: nothing about the code base
    gate, output = found.groups()
    bead = session.bead
    said = headline(output)
    title = f"{gate} gate: {said or 'refused the change'}"
    body = (
        f"The {gate} gate refused a change for {bead.pk} ({bead.title}) in "
        f"{bead.repository.slug}. What it said:\n\n```\n{output.strip()[-MAX_OUTPUT:]}\n```\n"
    )
    print_ = fingerprint(gate, said or output)
    learning = propose(
        bead.repository.workspace,
        bead.repository,
        title,
        body,
        tags=[f"gate:{gate}"],
        files=list(session.changed_files or []),
        source={"kind": "refusal", "gate": gate, "fingerprint": print_},
        session=session,
    )
    approve_if_recurring(learning, print_)
    return learning


def fingerprint(gate: str, said: str) -> str:
    """The gate and what it said, with what varies between two attempts blanked."""
    text = said.strip().lower()
    for pattern, blank in VARYING:
        text = pattern.sub(blank, text)
    return hashlib.sha256(f"{gate}\n{text.strip()}".encode()).hexdigest()[:16]


def approve_if_recurring(learning: Learning, print_: str) -> bool:
    """Approve a candidate first captured from a gate's refusal once refusals
    with this fingerprint came from sessions on RECURS_IN different beads; audited.
    True if this call approved it (the move is conditional: of two sessions
    folding at once, one approves and one entry is written)."""
    if learning.status != Learning.Status.CANDIDATE or learning.lesson_of() != "refusal":
        return False
    beads = {
        s.get("bead")
        for s in learning.sources
        if s.get("kind") == "refusal" and s.get("fingerprint") == print_ and s.get("session")
    }
    beads.discard(None)
    if len(beads) < RECURS_IN:
        return False
    with transaction.atomic():
        if not curate.approve(learning).approved:
            return False
        audit.record(
            audit.Action.LEARNING_AUTO_APPROVE,
            f"learning #{learning.pk}",
            repository=learning.repository,
            detail=f"{learning.title[:150]}: the same gate refusal on {len(beads)} beads",
            actor_name="corral",
        )
    return True


def from_rejection(session: SessionLike, reason: str, reviewer: str) -> Learning | None:
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
