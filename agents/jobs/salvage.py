"""Keeping the work of a session that ended without handing in, and pruning
it once its bead has landed.

A session stops at its time limit, on its scope watchdog or a cap, over
budget, cancelled, crashed or lost: what its clone holds within the bead's
scope becomes one commit on the session's base_sha at
refs/corral/salvage/<bead>/<session> in the canonical repository (see
workspace/gitops.py), kept before the session's ending is written, so the
next session on the bead finds it (agents/jobs/resume.py). Paths outside the
scope and .agents/ are never kept; the handoff goes into the commit message
and becomes the session's summary. The clone is read as the runner reads it
to collect a patch: through a git dir and index of Corral's own.
"""

import logging
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.conf import settings

from agents import patches
from agents.jobs.clone_files import read_agent_file, read_text
from agents.models import Agent, Salvage, Session
from agents.moves import salvages
from beads.models import Bead
from workspace import gitops

log = logging.getLogger(__name__)

# Salvage commits are never on a branch; a committer of their own keeps them
# from ever reading as the lead's.
SALVAGE_IDENTITY = ("Corral salvage", "salvage@corral.invalid")


def keep(session: Session, stopped: str, why: str, workdir: Path, objects_from: Path) -> Salvage:
    """Keep what the session's clone at `workdir` holds within its bead's scope
    (read with objects borrowed from `objects_from`, what it was cloned from),
    once per session; the row says what was kept, or why nothing was."""
    if (found := Salvage.objects.filter(session=session).first()) is not None:
        return found
    handoff = read_text(read_agent_file(workdir, ".agents", "handoff.md")).strip()
    fields: dict[str, Any] = {"stopped": stopped, "why": why, "base_sha": session.base_sha}
    try:
        fields |= kept_work(session, stopped, why, workdir, objects_from, handoff)
    except (gitops.GitError, OSError, patches.PatchError) as e:
        log.warning("session %s: its work could not be kept: %s", session.pk, e)
        fields["note"] = f"Its work could not be kept: {e}"
    return salvages.record(session, handoff, **fields)


def keep_lost(session: Session) -> Salvage:
    """A lost session's work, if its clone is on this machine; else a row that says where it is."""
    host = session.worker.partition(":")[0]
    workdir = Path(session.workdir) if session.workdir else None
    if workdir is not None and host == socket.gethostname() and (workdir / ".git").is_dir():
        canonical = session.bead.repository.canonical_path
        return keep(session, session.status, session.error, workdir, canonical)
    if workdir is None:
        note = "It had no clone: there was nothing to keep."
    else:
        note = f"Its clone is on {host or 'another machine'}, not here: nothing was kept."
    fields = {"stopped": session.status, "why": session.error, "base_sha": session.base_sha}
    return salvages.record(session, note=note, **fields)


def kept_work(
    session: Session, stopped: str, why: str, workdir: Path, objects_from: Path, handoff: str
) -> dict[str, Any]:
    """The salvage's fields: its commit, ref and size, and what was left out."""
    canonical = session.bead.repository.canonical_path
    if not gitops.can_read_repository(canonical):
        return {"note": "This worker cannot reach the canonical repository: nothing was kept."}
    patch, outside = in_scope_patch(session, workdir, objects_from)
    fields: dict[str, Any] = {"left_out": outside}
    if not patch.strip():
        return fields | {"note": "Nothing changed within the bead's scope."}
    if len(patch.encode(errors="replace")) > (cap := settings.MAX_PATCH_BYTES):
        return fields | {"note": f"Its changes are over the largest patch taken ({cap} bytes)."}
    changes = patches.parse(patch)
    summary = patches.summarize(changes)
    ref = gitops.salvage_ref(session.bead_id, str(session.pk))
    message = salvage_message(session, stopped, why, handoff, outside)
    author = author_of(session.agent)
    sha = gitops.keep_salvage(canonical, ref, session.base_sha, patch, message, author)
    return fields | {
        "ref": ref,
        "sha": sha,
        "files": sorted({p for change in changes for p in change.paths}),
        "lines": summary["lines"],
        "summary": summary,
    }


def in_scope_patch(session: Session, workdir: Path, objects_from: Path) -> tuple[str, list[str]]:
    """The clone's changes against base_sha within the bead's scope (never
    .agents/), and the changed paths outside it, left out."""
    index = gitops.SessionIndex(workdir, session.base_sha, objects_from=objects_from)
    try:
        index.refresh()
        outside = outside_scope(session.bead, sorted(index.numstat()))
        index.leave_out(outside)
        return index.patch(), outside
    finally:
        index.close()


def outside_scope(bead: Bead, paths: list[str]) -> list[str]:
    """The paths the bead may not change: none for an unscoped bead where the
    repository allows one, else those its scope does not match (the watchdog's rule)."""
    if not bead.scope and bead.repository.allow_unscoped:
        return []
    return bead.paths_outside_scope(paths)


def salvage_message(
    session: Session, stopped: str, why: str, handoff: str, outside: list[str]
) -> str:
    bead = session.bead
    status = Session.Status(stopped).label.lower() if stopped in Session.Status.values else stopped
    body = [f"{session.agent.name} stopped ({status}): {why}"]
    if handoff:
        body.append(handoff)
    if outside:
        body.append("Left out, outside the scope: " + ", ".join(outside[:50]))
    trailers = [("Bead", bead.pk), ("Agent", session.agent.name), ("Session", str(session.pk))]
    return gitops.commit_message(f"Salvage: {bead.title} ({bead.pk})", "\n\n".join(body), trailers)


def author_of(agent: Agent) -> tuple[str, str]:
    """The agent, named as the lead names it on the commits it lands."""
    return (agent.name, f"{agent.name}@agents.corral.invalid")


def prune(bead_ids: Iterable[str]) -> int:
    """The beads have landed: of each one's salvages, the newest
    CORRAL_SALVAGE_KEEP stay and the others go, ref first, then row. How many went."""
    rows = Salvage.objects.filter(bead__in=list(bead_ids)).kept()
    seen: dict[str, int] = {}
    pruned = 0
    for salvage in rows.select_related("bead__repository"):
        seen[salvage.bead_id] = seen.get(salvage.bead_id, 0) + 1
        if seen[salvage.bead_id] <= settings.SALVAGE_KEEP:
            continue
        try:
            dropped = gitops.drop_salvage(
                salvage.bead.repository.canonical_path, salvage.ref, salvage.sha
            )
        except gitops.GitError as e:
            log.warning("salvage %s of %s not pruned: %s", salvage.pk, salvage.bead_id, e)
            continue
        if dropped:
            pruned += salvages.forget(salvage)
    return pruned
