"""The gates a submission passes before the lead commits it.

Each gate takes the Landing (agents/lead.py) and returns a Verdict. They run
in GATES order; the first that fails ends the run with its refusal status.
"""

import os
import posixpath
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from agents import patches
from agents.models import Agent, Session, Submission
from agents.patches import SYMLINK_MODE, FileChange
from beads.models import Bead
from workspace import gitops
from workspace.models import Repository
from workspace.processes import kill_group, spawn

REJECTED, CONFLICT, FAILED = (
    Submission.Status.REJECTED,
    Submission.Status.CONFLICT,
    Submission.Status.FAILED,
)
OUTPUT_TAIL_CHARS = 4000
# The check runs code an agent wrote: it gets no Corral secrets, only these.
CHECK_ENV_KEYS = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"]


@dataclass
class Verdict:
    passed: bool | None  # None: waiting for a person
    detail: str = ""
    refusal: str = REJECTED


class Landing(Protocol):
    """What the gates read (and the apply gate writes) of agents.lead.Landing."""

    submission: Submission
    session: Session
    bead: Bead
    agent: Agent
    repository: Repository
    path: Path
    head: str
    changes: list[FileChange]
    files: list[str]
    tree: str | None  # set by the apply gate


def path_problem(path: str) -> str | None:
    """Why a path named by a patch may not be written, or None."""
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "an absolute path"
    if ".." in parts:
        return "a path that climbs out with .."
    if any(part.lower() == ".git" for part in parts):
        return "a path inside .git/"
    return None


def link_escapes(link_path: str, target: str) -> bool:
    """True when a symlink at link_path pointing at target leaves the repository or enters .git."""
    if target.startswith("/"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target))
    parts = PurePosixPath(resolved).parts
    return resolved == ".." or resolved.startswith("../") or ".git" in [p.lower() for p in parts]


def paths(landing: Landing) -> Verdict:
    problems = []
    for change in landing.changes:
        problems += [f"{p}: {why}" for p in change.paths if (why := path_problem(p))]
        if change.new_mode == SYMLINK_MODE:
            # parse() accepts a change with no path (both sides /dev/null): as a
            # symlink, it fails the lead (FAILED) here rather than passing.
            assert change.path is not None, "a symlink change that names no path"
            if link_escapes(change.path, change.symlink_target or ""):
                problems.append(
                    f"{change.path}: a symlink to {change.symlink_target!r} outside the repository"
                )
    if problems:
        return Verdict(False, "Refused paths:\n" + "\n".join(problems))
    return Verdict(True, f"{len(landing.files)} path(s), all inside the repository")


def scope(landing: Landing) -> Verdict:
    bead, repo = landing.bead, landing.repository
    if not bead.scope:
        if repo.allow_unscoped:
            return Verdict(True, "The bead has no scope; this repository allows that.")
        return Verdict(False, "The bead has no scope, and this repository requires one.")
    outside = bead.paths_outside_scope(landing.files)
    if outside:
        return Verdict(False, f"Outside the scope {bead.scope}:\n" + "\n".join(outside))
    return Verdict(True, f"All {len(landing.files)} path(s) within {bead.scope}")


def size(landing: Landing) -> Verdict:
    agent = landing.agent
    files = len(landing.files)
    # Read once at hand-in; a row from before that was stored is read here.
    summary = landing.session.patch_summary or patches.summarize(landing.changes)
    lines = summary["lines"]
    detail = (
        f"{files} file(s) (cap {agent.max_changed_files}), "
        f"{lines} line(s) (cap {agent.max_changed_lines})"
    )
    return Verdict(files <= agent.max_changed_files and lines <= agent.max_changed_lines, detail)


def apply(landing: Landing) -> Verdict:
    try:
        landing.tree = gitops.apply_patch(
            landing.path, landing.session.base_sha, landing.head, landing.session.patch
        )
    except gitops.MergeConflict as e:
        return Verdict(False, f"Conflicts with {landing.head[:12]}: {', '.join(e.paths)}", CONFLICT)
    except gitops.PatchDoesNotApply as e:
        return Verdict(False, f"The patch does not apply to its base: {e}")
    moved = "" if landing.head == landing.session.base_sha else " (the branch had moved)"
    return Verdict(True, f"Applies to {landing.head[:12]}{moved}")


def check(landing: Landing) -> Verdict:
    repo = landing.repository
    argv = repo.check_argv()
    if not argv:
        return Verdict(True, "No check command.")
    with tempfile.TemporaryDirectory(prefix="corral-check-") as scratch:
        # The apply gate runs before this one and, passed, set the tree.
        assert landing.tree is not None, "the check gate runs after the apply gate"
        gitops.checkout(landing.path, landing.tree, scratch)
        return run_check(argv, scratch, repo.check_timeout_s)


def run_check(argv: list[str], cwd: str, timeout: float) -> Verdict:
    env = {key: os.environ[key] for key in CHECK_ENV_KEYS if key in os.environ}
    try:
        # Its own group, so that a timeout can stop everything it started.
        proc = spawn(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as e:
        return Verdict(False, f"Cannot run {argv[0]!r}: {e.strerror}", FAILED)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, _ = proc.communicate()
        return Verdict(False, f"Timed out after {timeout}s.\n{tail(out)}")
    finally:
        kill_group(proc.pid)  # anything the check left running
    if proc.returncode != 0:
        return Verdict(False, f"Exit code {proc.returncode}.\n{tail(out)}")
    return Verdict(True, f"Passed.\n{tail(out)}")


def tail(output: bytes) -> str:
    text = output.decode(errors="replace")
    if len(text) <= OUTPUT_TAIL_CHARS:
        return text
    return "[… earlier output cut]\n" + text[-OUTPUT_TAIL_CHARS:]


def review(landing: Landing) -> Verdict:
    submission = landing.submission
    if landing.repository.review_mode != landing.repository.Review.HUMAN:
        return Verdict(True, "Automatic review.")
    if submission.reviewed_at:
        return Verdict(
            True,
            f"Approved by {submission.reviewed_by} at {submission.reviewed_at:%Y-%m-%d %H:%M}.",
        )
    return Verdict(None, "Waiting for a person to approve or reject.")


GATES: list[tuple[str, Callable[[Landing], Verdict]]] = [
    ("paths", paths),
    ("scope", scope),
    ("size", size),
    ("apply", apply),
    ("check", check),
    ("review", review),
]
