"""A change set's integration gate and its landing: all members or none.

The job runs on the lead queue of the change set's first repository (by
slug). The integration command runs, like the `check` gate, in the sandbox,
in a scratch folder holding each member repository at its candidate tree
(its head plus its patch) under `<slug>/`, with no Corral environment.

Landing takes every member repository's lead lock in slug order (two change
sets that share repositories cannot deadlock), checks that no head moved
since the candidates were built (if one did, those members are gated again
and the integration gate runs again), builds each member's commit on its
head, writes the journal (one row per branch move) and only then moves each
branch by compare-and-swap, marking each row as it goes. Whoever runs the
job next (a restarted lead, or reconcile()) plays the journal again: a row
whose branch is at its new commit is done, one at its old commit is moved
now; so every member's commit ends on its branch exactly once. A branch that
moved outside Corral meanwhile undoes the moves made and gates the members
again, so none of them stays.
"""

import logging
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from itertools import count
from pathlib import Path

from django.db import close_old_connections, transaction

from agents import queues
from agents.jobs import gates, lead, salvage
from agents.models import ChangeSet, ChangeSetMember, JournalStep, RevertRequest
from agents.moves import changesets
from workspace import gitops, sandbox
from workspace.scrub import scrub

log = logging.getLogger(__name__)
# Tests: the process SIGKILLs itself at the Nth journal step (see crash_point).
CRASH_ENV = "CORRAL_CHANGESET_CRASH_AT"
_steps = count(1)
Kind, State = JournalStep.Kind, JournalStep.State


def crash_point() -> None:
    """Each step of a landing passes here; the test hook kills the process at one."""
    at = os.environ.get(CRASH_ENV)
    if at and next(_steps) == int(at):
        os.kill(os.getpid(), signal.SIGKILL)


def run(changeset_id: int) -> None:
    """The change set's job: finish a landing in flight, or gate and land it."""
    close_old_connections()
    changeset = ChangeSet.objects.filter(pk=changeset_id).first()
    if changeset is None:
        return
    if changeset.status == ChangeSet.Status.GATING:
        if not integrate(changeset):
            return
        if changeset.needs_review():
            changeset.await_review()
            return
    if changeset.status in (ChangeSet.Status.GATING, ChangeSet.Status.LANDING):
        with locks(changeset):
            land(changeset)


def revert(changeset_id: int) -> None:
    """Revert every member of a landed change set, together (the same journal)."""
    close_old_connections()
    changeset = ChangeSet.objects.filter(pk=changeset_id).first()
    if changeset is None or changeset.status != ChangeSet.Status.LANDED:
        RevertRequest.finish_for(changeset_id=changeset_id)  # nothing (left) to revert
        return
    with locks(changeset):
        changeset.refresh_from_db()
        if changeset.status != ChangeSet.Status.LANDED:
            RevertRequest.finish_for(changeset=changeset)
            return
        steps = journal(changeset, Kind.REVERT)
        if not steps:
            steps = write_journal(changeset, Kind.REVERT, revert_commits(changeset))
        play(changeset, steps)


def resume_in_flight(repository_id: int) -> int:
    """For a lead starting up: finish, here and now, the change sets whose job
    its queue held and a dead lead left running (gating, landing or reverting).
    Returns how many."""
    mine = [
        c for c, _ in changesets.in_flight() if changesets.first_repository(c).pk == repository_id
    ]
    for changeset in mine:
        if changeset.status == ChangeSet.Status.LANDED:
            revert(changeset.pk)
        else:
            run(changeset.pk)
    return len(mine)


@contextmanager
def locks(changeset: ChangeSet) -> Iterator[None]:
    """Every member repository's lead lock, taken in slug order."""
    repos = {m.repository.pk: m.repository for m in changeset.member_list()}
    with ExitStack() as stack:
        for repo in sorted(repos.values(), key=lambda r: r.slug):
            stack.enter_context(queues.repo_lock(repo))
        yield
    # A drain that found a lock held left its work to the holder: ask again.
    for repo in repos.values():
        if lead.next_waiting(repo) is not None:
            queues.enqueue_drain(repo)


# The integration gate


def candidate_trees(members: list[ChangeSetMember]) -> dict[str, str]:
    return {m.repository.slug: m.tree for m in members}


def integrate(changeset: ChangeSet) -> bool:
    """Run the integration gate unless it passed on these very trees; True when it
    passed. A failure sends every member back with the command's output."""
    members = changeset.member_list()
    trees = candidate_trees(members)
    if not (changeset.integration_passed and changeset.integration_trees == trees):
        started = time.monotonic()
        verdict = integration_verdict(changeset, members)
        ms = round((time.monotonic() - started) * 1000)
        changeset.record_integration(bool(verdict.passed), scrub(verdict.detail), ms, trees)
    if changeset.integration_passed:
        return True
    reason = (
        f"Change set {changeset.pk}: the integration gate failed.\n{changeset.integration_output}"
    )
    changesets.reopen(changeset, reason)
    return False


def integration_verdict(changeset: ChangeSet, members: list[ChangeSetMember]) -> gates.Verdict:
    argv = changeset.integration_argv()
    if not argv:
        return gates.Verdict(True, "No integration command.")
    with tempfile.TemporaryDirectory(prefix="corral-integration-", ignore_cleanup_errors=True) as d:
        scratch = Path(d)
        for member in members:
            (scratch / member.repository.slug).mkdir()
            gitops.checkout(
                member.repository.canonical_path, member.tree, scratch / member.repository.slug
            )
        read_only = {
            Path(p) for m in members for p in m.repository.check_read_paths if isinstance(p, str)
        }
        policy = sandbox.Policy(
            scratch,
            network=False,
            read_only=tuple(sorted(read_only)),
            own_user=True,
            die_with_parent=True,
        )
        return gates.run_check(argv, policy, changeset.integration_timeout_s)


# Landing, with the locks held


def journal(changeset: ChangeSet, kind: str) -> list[JournalStep]:
    steps = changeset.journal.filter(kind=kind).exclude(state=State.UNDONE)
    return list(steps.select_related("member__repository").order_by("seq"))


def land(changeset: ChangeSet) -> None:
    changeset.refresh_from_db()
    steps = journal(changeset, Kind.LAND)
    if not steps:  # nothing moved yet: check the heads, build, journal
        if changeset.status not in (ChangeSet.Status.GATING, ChangeSet.Status.LANDING):
            return
        members = changeset.member_list()
        if moved := moved_heads(members):
            names = ", ".join(m.repository.slug for m in moved)
            changesets.rebuild(changeset, moved, f"{names} moved since the candidates were built.")
            return
        if changeset.status == ChangeSet.Status.GATING and not changeset.start_landing():
            return
        steps = write_journal(changeset, Kind.LAND, member_commits(changeset, members))
    elif changeset.status != ChangeSet.Status.LANDING:
        return
    play(changeset, steps)


def moved_heads(members: list[ChangeSetMember]) -> list[ChangeSetMember]:
    return [
        m
        for m in members
        if gitops.head_sha(m.repository.canonical_path, m.repository.branch) != m.head
    ]


class MemberLanding(lead.Landing):
    """A member's commit: the lead's message, with the change set's trailer."""

    changeset_id: int

    def trailers(self) -> list[tuple[str, str]]:
        return [*super().trailers(), ("Changeset", str(self.changeset_id))]


def member_commits(
    changeset: ChangeSet, members: list[ChangeSetMember]
) -> list[tuple[ChangeSetMember, str, str]]:
    """(member, head, new commit) for each: its candidate tree on its head."""
    built = []
    for member in members:
        assert member.submission is not None  # every member is held
        landing = MemberLanding(member.submission)
        landing.changeset_id = changeset.pk
        path = member.repository.canonical_path
        sha = gitops.commit_tree(
            path, member.tree, member.head, landing.message(), author=landing.author()
        )
        built.append((member, member.head, sha))
    return built


def revert_commits(changeset: ChangeSet) -> list[tuple[ChangeSetMember, str, str]]:
    """(member, head, revert commit) for each landed member, on its current head."""
    built = []
    for member in changeset.member_list():
        bead, repo = member.bead, member.repository
        path, target = repo.canonical_path, bead.commit_sha
        undo = gitops.commit_tree(
            path, gitops.tree_of(path, gitops.parent_of(path, target)), target, "undo"
        )
        head = gitops.head_sha(path, repo.branch)
        message = lead.checked_message(
            path,
            f'Revert "{bead.title}" ({bead.id})',
            f"This reverts commit {target}, with the rest of change set {changeset.pk}.",
            [("Bead", bead.id), ("Reverts", target), ("Changeset", str(changeset.pk))],
        )
        sha = gitops.commit_tree(path, gitops.merge_trees(path, head, undo), head, message)
        built.append((member, head, sha))
    return built


def write_journal(
    changeset: ChangeSet, kind: str, moves: list[tuple[ChangeSetMember, str, str]]
) -> list[JournalStep]:
    """Every branch move, written down (one transaction) before any is made."""
    crash_point()
    start = changeset.journal.count()
    with transaction.atomic():
        JournalStep.objects.bulk_create(
            JournalStep(
                changeset=changeset, seq=start + n, kind=kind, member=m, old_sha=o, new_sha=s
            )
            for n, (m, o, s) in enumerate(moves)
        )
    crash_point()
    return journal(changeset, kind)


def play(changeset: ChangeSet, steps: list[JournalStep]) -> None:
    """Make each journaled move not yet made, then finish; undo all if one cannot be made."""
    for step in steps:
        if step.state == State.ADVANCED:
            continue
        repo = step.member.repository
        path = repo.canonical_path
        head = gitops.head_sha(path, repo.branch)
        if head == step.old_sha and gitops.update_branch(
            path, repo.branch, step.new_sha, step.old_sha
        ):
            crash_point()
        elif head != step.new_sha and not contains(path, head, step.new_sha):
            why = f"{repo.slug} moved outside Corral during the landing."
            return undo(changeset, steps, why)
        step.move("advance")
        crash_point()
    shas = {step.member_id: step.new_sha for step in steps}
    if steps[0].kind == Kind.LAND:
        changesets.landed(changeset, shas)
        salvage.prune([step.member.bead_id for step in steps])  # their work has landed
    else:
        changesets.reverted(changeset, shas)


def contains(path: Path, head: str, sha: str) -> bool:
    """Whether `sha` is already in the history of `head`."""
    return gitops.git_call(path, "merge-base", "--is-ancestor", sha, head).returncode == 0


def undo(changeset: ChangeSet, steps: list[JournalStep], reason: str) -> None:
    """A branch could not be moved: put back the ones that were, so none stays."""
    for step in steps:
        repo = step.member.repository
        if step.state == State.ADVANCED and not gitops.update_branch(
            repo.canonical_path, repo.branch, step.old_sha, step.new_sha
        ):
            log.error("change set %s: cannot undo %s on %s", changeset.pk, step.pk, repo.slug)
            continue
        step.move("undo")
    if steps[0].kind == Kind.LAND:
        changesets.rebuild(changeset, changeset.member_list(), reason)
