"""The gates a submission passes before the lead commits it.

Each gate takes the Landing (agents/lead.py) and returns a Verdict. They run
in GATES order; the first that fails ends the run with its refusal status.
"""

import os
import posixpath
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from agents.models import Submission
from agents.patches import SYMLINK_MODE
from workspace import gitops

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


def path_problem(path):
    """Why a path named by a patch may not be written, or None."""
    parts = PurePosixPath(path).parts
    if not path or path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "an absolute path"
    if ".." in parts:
        return "a path that climbs out with .."
    if any(part.lower() == ".git" for part in parts):
        return "a path inside .git/"
    return None


def link_escapes(link_path, target):
    """True when a symlink at link_path pointing at target leaves the repository or enters .git."""
    if target.startswith("/"):
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link_path), target))
    parts = PurePosixPath(resolved).parts
    return resolved == ".." or resolved.startswith("../") or ".git" in [p.lower() for p in parts]


def paths(landing):
    problems = []
    for change in landing.changes:
        problems += [f"{p}: {why}" for p in change.paths if (why := path_problem(p))]
        if change.new_mode == SYMLINK_MODE and link_escapes(
            change.path, change.symlink_target or ""
        ):
            problems.append(
                f"{change.path}: a symlink to {change.symlink_target!r} outside the repository"
            )
    if problems:
        return Verdict(False, "Refused paths:\n" + "\n".join(problems))
    return Verdict(True, f"{len(landing.files)} path(s), all inside the repository")


def scope(landing):
    bead, repo = landing.bead, landing.repository
    if not bead.scope:
        if repo.allow_unscoped:
            return Verdict(True, "The bead has no scope; this repository allows that.")
        return Verdict(False, "The bead has no scope, and this repository requires one.")
    outside = bead.paths_outside_scope(landing.files)
    if outside:
        return Verdict(False, f"Outside the scope {bead.scope}:\n" + "\n".join(outside))
    return Verdict(True, f"All {len(landing.files)} path(s) within {bead.scope}")


def size(landing):
    agent = landing.agent
    files = len(landing.files)
    lines = sum(change.added + change.removed for change in landing.changes)
    detail = (
        f"{files} file(s) (cap {agent.max_changed_files}), "
        f"{lines} line(s) (cap {agent.max_changed_lines})"
    )
    return Verdict(files <= agent.max_changed_files and lines <= agent.max_changed_lines, detail)


def apply(landing):
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


def check(landing):
    repo = landing.repository
    argv = repo.check_argv()
    if not argv:
        return Verdict(True, "No check command.")
    with tempfile.TemporaryDirectory(prefix="corral-check-") as scratch:
        gitops.checkout(landing.path, landing.tree, scratch)
        return run_check(argv, scratch, repo.check_timeout_s)


def run_check(argv, cwd, timeout):
    env = {key: os.environ[key] for key in CHECK_ENV_KEYS if key in os.environ}
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so a timeout can stop everything it started
        )
    except OSError as e:
        return Verdict(False, f"Cannot run {argv[0]!r}: {e.strerror}", FAILED)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return Verdict(False, f"Timed out after {timeout}s.\n{tail(out)}")
    finally:
        kill_group(proc.pid)
    if proc.returncode != 0:
        return Verdict(False, f"Exit code {proc.returncode}.\n{tail(out)}")
    return Verdict(True, f"Passed.\n{tail(out)}")


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)  # anything the check left running
    except ProcessLookupError:
        pass


def tail(output):
    text = output.decode(errors="replace")
    if len(text) <= OUTPUT_TAIL_CHARS:
        return text
    return "[… earlier output cut]\n" + text[-OUTPUT_TAIL_CHARS:]


def review(landing):
    submission = landing.submission
    if landing.repository.review_mode != landing.repository.Review.HUMAN:
        return Verdict(True, "Automatic review.")
    if submission.reviewed_at:
        return Verdict(
            True,
            f"Approved by {submission.reviewed_by} at {submission.reviewed_at:%Y-%m-%d %H:%M}.",
        )
    return Verdict(None, "Waiting for a person to approve or reject.")


GATES = [
    ("paths", paths),
    ("scope", scope),
    ("size", size),
    ("apply", apply),
    ("check", check),
    ("review", review),
]
