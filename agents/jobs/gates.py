"""The gates a submission passes before the lead commits it.

Each gate takes the Landing (agents/jobs/lead.py) and returns a Verdict. They run
in GATES order; the first that fails ends the run with its refusal status.

The apply gate goes first: git builds the tree the commit would have, and the
paths, scope and size gates judge what git would write (its paths, modes,
blob sizes and symlink targets), never Corral's own reading of the patch text.
"""

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agents import patches
from agents.models import Agent, ChangeSetMember, Session, Submission
from agents.reports import reviews
from beads.models import Bead
from workspace import gitops, reviewrules, sandbox
from workspace.gitops import TreeChange
from workspace.models import Repository
from workspace.processes import kill_group

REJECTED, CONFLICT, FAILED = (
    Submission.Status.REJECTED,
    Submission.Status.CONFLICT,
    Submission.Status.FAILED,
)
OUTPUT_TAIL_CHARS = 4000
# The check runs code an agent wrote: it gets no Corral secrets, only these.
CHECK_ENV_KEYS = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"]
BLOB_KINDS = ("file", "exec", "symlink")


@dataclass
class Verdict:
    passed: bool | None  # None: waiting for a person
    detail: str = ""
    refusal: str = REJECTED


class Landing(Protocol):
    """What the gates read (and the apply gate writes) of agents.jobs.lead.Landing."""

    submission: Submission
    session: Session
    bead: Bead
    agent: Agent
    repository: Repository
    path: Path
    head: str
    tree: str | None  # set by the apply gate
    written: list[TreeChange]  # set by the apply gate: what git would commit
    new_trees: list[str]  # and the trees it made for it
    files: list[str]  # the paths of `written`
    member: ChangeSetMember | None  # its place in an open change set
    history: tuple[int, int]  # its agent's (refused, finished) here, as the risk reads it


def folded(name: str) -> str:
    """A path part as a case-insensitive file system (and Windows) would see it."""
    return name.lower().rstrip(". ")


def is_dot_git(name: str) -> bool:
    return folded(name) in (".git", "git~1")


def is_gitmodules(name: str) -> bool:
    return folded(name) == ".gitmodules" or folded(name).startswith("gitmod~")


def path_problem(path: str) -> str | None:
    """Why a path may not be written, or None."""
    parts = path.split("/")
    if not path or path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        return "an absolute path"
    if any(part in ("", ".", "..") for part in parts):
        return "a path that climbs out with .. (or has an empty or . part)"
    if any(is_dot_git(part) for part in parts):
        return "a path inside .git/"
    if folded(parts[0]) == ".agents":
        return "a path under .agents/, which is Corral's (the context pack)"
    return None


def submodule_problem(change: TreeChange) -> str | None:
    if "gitlink" in (change.kind, change.old_kind):
        return "a submodule (gitlink)"
    if any(is_gitmodules(part) for part in change.path.split("/")):
        return "a .gitmodules file"
    return None


def link_problem(link: str, target: str, modes: dict[str, str], changed: set[str]) -> str | None:
    """Why a symlink in the new tree may not land, or None. A link the patch
    changed is judged whole; any other only for passing through one it changed
    (a folder the patch turned into a symlink can carry an old link outside)."""
    resolved, through = gitops.resolve_link(link, target, modes)
    if link not in changed:
        if moved := [p for p in through if p in changed]:
            return f"a symlink to {target!r} that now passes through the symlink {moved[0]}"
        return None
    if not target or "\0" in target:
        return "a symlink with an empty target or a NUL in it"
    if resolved is None:
        return f"a symlink to {target!r}, outside the repository"
    if through:
        return f"a symlink to {target!r} through the symlink {through[0]}"
    parts = resolved.split("/")
    if any(is_dot_git(part) for part in parts):
        return f"a symlink to {target!r}, inside .git/"
    if folded(parts[0]) == ".agents":
        return f"a symlink to {target!r}, inside .agents/"
    return None


def link_problems(landing: Landing) -> list[str]:
    changed = {c.path for c in landing.written if c.kind == "symlink"}
    if not changed:
        return []
    assert landing.tree is not None  # the apply gate, passed, set it
    modes, targets = gitops.symlinks(landing.path, landing.tree)
    return [
        f"{link}: {why}"
        for link, target in sorted(targets.items())
        if (why := link_problem(link, target, modes, changed))
    ]


def paths(landing: Landing) -> Verdict:
    problems = [f"{c.path}: {why}" for c in landing.written if (why := path_problem(c.path))]
    if not landing.repository.allow_submodules:
        problems += [f"{c.path}: {why}" for c in landing.written if (why := submodule_problem(c))]
    problems += link_problems(landing)
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
    """The agent's caps on files and lines (git's numstat of the two trees), and
    the repository's on bytes written, measured as git's blob sizes."""
    agent, repo = landing.agent, landing.repository
    files = len(landing.written)
    lines = sum(change.lines or 0 for change in landing.written)
    blobs = [change for change in landing.written if change.kind in BLOB_KINDS]
    total = sum(change.size for change in blobs)
    too_big = [
        f"{change.path}: {change.size} bytes, over the cap of {repo.max_blob_bytes} per file"
        for change in blobs
        if change.size > repo.max_blob_bytes
    ]
    detail = (
        f"{files} file(s) (cap {agent.max_changed_files}), "
        f"{lines} line(s) (cap {agent.max_changed_lines}), "
        f"{total} byte(s) written (cap {repo.max_total_bytes})"
    )
    passed = (
        files <= agent.max_changed_files
        and lines <= agent.max_changed_lines
        and total <= repo.max_total_bytes
        and not too_big
    )
    return Verdict(passed, "\n".join([detail, *too_big]))


def apply(landing: Landing) -> Verdict:
    """Git builds the tree: the branch head plus the patch (three-way if needed),
    unless a binary hunk declares more than the cap (git would inflate it first)."""
    cap = landing.repository.max_blob_bytes
    if too_big := patches.declared_over(landing.session.patch, cap):
        return Verdict(False, "Refused before git read it:\n" + "\n".join(too_big))
    try:
        tree = gitops.apply_patch(
            landing.path,
            landing.session.base_sha,
            landing.head,
            landing.session.patch,
            index=gitops.reused_index(str(landing.path)),
        )
    except gitops.MergeConflict as e:
        return Verdict(False, f"Conflicts with {landing.head[:12]}: {', '.join(e.paths)}", CONFLICT)
    except gitops.PatchDoesNotApply as e:
        return Verdict(False, f"The patch does not apply to its base: {e}")
    landing.tree, landing.new_trees = tree, []
    landing.written = gitops.tree_changes(landing.path, landing.head, tree, landing.new_trees)
    landing.files = sorted(change.path for change in landing.written)
    if not landing.written:
        return Verdict(False, f"The patch changes nothing on {landing.head[:12]}.")
    moved = "" if landing.head == landing.session.base_sha else " (the branch had moved)"
    return Verdict(True, f"Applies to {landing.head[:12]}{moved}: {len(landing.files)} path(s)")


def check(landing: Landing) -> Verdict:
    repo = landing.repository
    argv = repo.check_argv()
    if not argv:
        return Verdict(True, "No check command.")
    # Cleaned up whatever modes the check left on what it wrote.
    with tempfile.TemporaryDirectory(prefix="corral-check-", ignore_cleanup_errors=True) as scratch:
        # The apply gate runs before this one and, passed, set the tree.
        assert landing.tree is not None, "the check gate runs after the apply gate"
        gitops.checkout(landing.path, landing.tree, scratch)
        policy = sandbox.Policy(
            Path(scratch),
            network=repo.check_network,
            read_only=tuple(Path(p) for p in repo.check_read_paths if isinstance(p, str)),
            own_user=True,  # Corral as root: the check runs as nobody, not as root's uid
            die_with_parent=True,  # a lead worker killed mid-check leaves nothing running
        )
        return run_check(argv, policy, repo.check_timeout_s)


def run_check(argv: list[str], policy: sandbox.Policy, timeout: float) -> Verdict:
    """The check command in the sandbox (see workspace/sandbox.py), with a timeout."""
    env = {key: os.environ[key] for key in CHECK_ENV_KEYS if key in os.environ}
    sandboxed = sandbox.available()
    if sandboxed:
        env["TMPDIR"] = "/tmp"  # the sandbox's own; Corral's may be a hidden folder
    if not findable(argv[0], policy.writable, env.get("PATH", os.defpath)):
        return Verdict(False, f"Cannot run {argv[0]!r}: no such program", FAILED)
    try:
        proc = sandbox.spawn(
            argv,
            policy,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except sandbox.Unavailable as e:
        return Verdict(
            False,
            f"Refused to run the check outside a sandbox: {e}. Install bubblewrap, or set "
            "CORRAL_UNSANDBOXED=1 for a local single-user trial.",
            FAILED,
        )
    except OSError as e:
        return Verdict(False, f"Cannot run {argv[0]!r}: {e.strerror}", FAILED)
    note = "" if sandboxed else "Ran outside the sandbox (CORRAL_UNSANDBOXED=1).\n"
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, _ = proc.communicate()
        return Verdict(False, f"{note}Timed out after {timeout}s.\n{tail(out)}")
    finally:
        kill_group(proc.pid)  # anything the check left running
    if proc.returncode != 0:
        return Verdict(False, f"{note}Exit code {proc.returncode}.\n{tail(out)}")
    return Verdict(True, f"{note}Passed.\n{tail(out)}")


def findable(program: str, cwd: Path, path: str) -> bool:
    """Whether the check's program exists: on PATH, or a path into the checkout."""
    if "/" in program:
        return os.access(cwd / program, os.X_OK)
    return shutil.which(program, path=path) is not None


def tail(output: bytes) -> str:
    text = output.decode(errors="replace")
    if len(text) <= OUTPUT_TAIL_CHARS:
        return text
    return "[… earlier output cut]\n" + text[-OUTPUT_TAIL_CHARS:]


def review(landing: Landing) -> Verdict:
    """Whether a person must look: the rules of the branch the patch goes onto
    (never the patch's own tree: it may rewrite them), the repository's
    review_mode for paths no rule names, and the change's risk."""
    submission = landing.submission
    repo = landing.repository
    # A change set's members are reviewed once, all together, by the repository's mode.
    if member := landing.member:
        if repo.review_mode != repo.Review.HUMAN:
            return Verdict(True, "Automatic review.")
        return Verdict(True, f"Reviewed once for its change set ({member.changeset_id}).")
    if submission.reviewed_at:
        return Verdict(
            True,
            f"Approved by {submission.reviewed_by} at {submission.reviewed_at:%Y-%m-%d %H:%M}.",
        )
    decision = review_need(landing)
    if not decision.people:
        return Verdict(True, f"Automatic review: {decision.summary()}")
    people = "two people" if decision.people == 2 else "a person"
    return Verdict(None, f"Waiting for {people} to approve or reject: {decision.summary()}")


@dataclass
class ReviewNeed:
    people: int
    owners: list[str]
    why: list[str]
    risk: str
    lines: int

    def summary(self) -> str:
        why = "; ".join(self.why) or "no rule asks for a person"
        return f"{why}. Risk {self.risk}, {self.lines} lines."


def review_need(landing: Landing) -> ReviewNeed:
    """Decide and record on the submission what review it needs (DESIGN.md, Review)."""
    repo = landing.repository
    base = gitops.head_sha(landing.path, repo.branch)  # the branch itself, never the patch's
    rules = reviewrules.read(landing.path, base)
    lines = sum(change.lines or 0 for change in landing.written)
    need = reviewrules.decide(rules, landing.files, repo.review_mode == repo.Review.HUMAN)
    risk = reviews.assess(lines, need, rules.risk, landing.agent, landing.history, landing.bead)
    why = list(need.why)
    # Only a repository with rules asks for a person on risk alone (it opted in).
    at = rules.risk.person_at
    if rules.source and not need.people and at in reviewrules.LEVELS:
        if reviewrules.LEVELS.index(risk.level) >= reviewrules.LEVELS.index(at):
            need.people = 1
            why.append(f"its risk is {risk.level} (a person looks from {at})")
    why += [f"risk: {reason}" for reason in risk.why]
    submission = landing.submission  # written with its next move (Submission.review_need)
    submission.lines, submission.risk, submission.people_needed = lines, risk.level, need.people
    submission.review_why, submission.review_owners = why, need.owners
    return ReviewNeed(need.people, need.owners, why, risk.level, lines)


GATES: list[tuple[str, Callable[[Landing], Verdict]]] = [
    ("apply", apply),
    ("paths", paths),
    ("scope", scope),
    ("size", size),
    ("check", check),
    ("review", review),
]
