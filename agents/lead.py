"""The lead: one per repository, it gates each submission and lands it as one commit.

Jobs run on the repository's `lead:<slug>` queue and, whatever runs them, the
commit step holds the repository's Redis lock. Every job re-reads its row and
is idempotent: a lead killed between `update-ref` and saving its row finds
its commit by the `Session:` trailer instead of committing twice. Trailers are
Corral's alone: an agent's summary goes into the message with every line git
could read as a trailer taken out, and Corral's own block is the last paragraph.
"""

import logging
import time
from collections.abc import Collection
from pathlib import Path

from django.db import close_old_connections
from django.utils import timezone

from agents import changesets, flow, gates, queues
from agents.models import GateResult, Submission
from beads.models import Bead
from workspace import gitops
from workspace.gitops import TreeChange
from workspace.models import Repository
from workspace.scrub import scrub

log = logging.getLogger(__name__)
CAS_TRIES = 3  # the branch moved under us (someone wrote to it outside the lead)
RELATED = ("repository", "session__agent", "bead")


def drain(repository_id: int) -> None:
    """Land the repository's waiting submissions, oldest first, until none wait.

    One job per repository rather than one per submission: the lock is taken
    once and the queue's bookkeeping paid once, however many are waiting.
    """
    close_old_connections()  # the lead worker lives long: drop a connection gone bad
    repo = Repository.objects.filter(pk=repository_id).first()
    if repo is None:
        return
    tried: set[int] = set()
    with queues.repo_lock(repo):
        while sub := next_waiting(repo, exclude=tried):
            tried.add(sub.pk)
            land(sub)


def next_waiting(repo: Repository, exclude: Collection[int] = ()) -> Submission | None:
    waiting = Submission.objects.filter(repository=repo, status__in=Submission.FOR_LEAD).exclude(
        pk__in=exclude
    )
    return waiting.select_related(*RELATED).order_by("queued_at", "pk").first()


def land(sub: Submission) -> None:
    """With the repository's lock held: gate the submission and commit it."""
    # One conditional UPDATE decides: ours to check, or resumed after a lead
    # died mid-job (still `checking`), or done with meanwhile.
    resumed = not sub.start_checking()
    if resumed and sub.status != sub.Status.CHECKING:
        return  # finished, or waiting for a person, meanwhile
    landing = Landing(sub)
    try:
        landing.run(resumed)
    except Exception as e:
        log.exception("lead failed on submission %s", sub.pk)
        landing.refuse(Submission.Status.FAILED, f"The lead failed: {e}")


class Landing:
    """One run of the gates and the commit for one submission."""

    def __init__(self, submission: Submission) -> None:
        self.submission = submission
        self.session = submission.session
        self.bead = submission.bead
        self.agent = self.session.agent
        self.repository = submission.repository
        self.path = self.repository.canonical_path
        self.tree: str | None = None  # the apply gate's result
        self.written: list[TreeChange] = []  # and what git would commit with it
        self.files: list[str] = []

    def run(self, resumed: bool) -> None:
        if resumed and (sha := self.already_committed()):
            return self.committed(sha)
        stale_results = resumed or self.submission.reviewed_at is not None
        for _ in range(CAS_TRIES):
            self.head = gitops.head_sha(self.path, self.repository.branch)
            if stale_results:  # an earlier run's gates: this run records its own
                GateResult.objects.filter(submission=self.submission).delete()
            stale_results = True
            if not self.pass_gates():
                return
            assert self.tree is not None  # the apply gate, passed, set it
            if changesets.hold(self.submission, self.head, self.tree):
                return  # a change set member: it lands with its siblings
            message = self.message()
            sha = gitops.commit_tree(self.path, self.tree, self.head, message, author=self.author())
            if gitops.update_branch(self.path, self.repository.branch, sha, self.head):
                return self.committed(sha)
        self.refuse(Submission.Status.FAILED, "The branch kept moving during the commit.")

    def pass_gates(self) -> bool:
        """Run every gate; True when all passed. Results are written in one go,
        and before a check command runs, so the page shows progress."""
        results: list[GateResult] = []
        try:
            for name, gate in gates.GATES:
                if name == "check" and self.repository.check_command:
                    GateResult.objects.bulk_create(results)
                    results = []
                started = time.monotonic()
                verdict = gate(self)
                results.append(
                    GateResult(
                        submission=self.submission,
                        gate=name,
                        passed=verdict.passed,
                        detail=scrub(verdict.detail),  # a check prints what the agent's code does
                        duration_ms=round((time.monotonic() - started) * 1000),
                    )
                )
                if verdict.passed is None:
                    if self.submission.await_review():
                        flow.tell_review_waiting(self.submission)
                    return False
                if not verdict.passed:
                    self.refuse(verdict.refusal, f"{name} gate: {verdict.detail}")
                    return False
            return True
        finally:
            GateResult.objects.bulk_create(results)

    def already_committed(self) -> str | None:
        return gitops.commit_with_trailer(
            self.path,
            self.repository.branch,
            self.session.base_sha,
            "Session",
            str(self.session.pk),
        )

    def trailers(self) -> list[tuple[str, str]]:
        return [
            ("Bead", self.bead.id),
            ("Agent", self.agent.name),
            ("Session", str(self.session.pk)),
        ]

    def message(self) -> str:
        """Title, the agent's summary without trailers, Corral's trailers."""
        summary = self.session.summary.strip() or "(no summary)"
        title = f"{self.bead.title} ({self.bead.id})"
        return checked_message(self.path, title, summary, self.trailers())

    def author(self) -> tuple[str, str]:
        return (self.agent.name, f"{self.agent.name}@agents.corral.invalid")

    def committed(self, sha: str) -> None:
        flow.land(self.submission, sha)

    def refuse(self, status: str, reason: str) -> None:
        if flow.refuse(self.submission, status, reason):
            changesets.member_refused(self.submission, reason)


def revert(bead_id: str) -> None:
    """Land one commit that reverts a closed bead's commit, and reopen the bead."""
    bead = Bead.objects.select_related("repository").filter(pk=bead_id).first()
    if bead is None or bead.status != Bead.Status.CLOSED or not bead.commit_sha:
        return
    repo = bead.repository
    with queues.repo_lock(repo):
        bead.refresh_from_db()
        if bead.status != Bead.Status.CLOSED or not bead.commit_sha:
            return
        target = bead.commit_sha
        try:
            sha = gitops.commit_with_trailer(
                repo.canonical_path, repo.branch, target, "Reverts", target
            )
            sha = sha or land_revert(bead, target)
        except gitops.GitError as e:
            Bead.objects.filter(pk=bead.pk).update(last_failure=f"Revert failed: {e}")
            return
        flow.reverted(bead, sha)


def land_revert(bead: Bead, target: str) -> str:
    repo, path = bead.repository, bead.repository.canonical_path
    # A commit whose parent is the target and whose tree is the target's
    # parent's: merged into head, it undoes exactly the target's change.
    undo = gitops.commit_tree(
        path, gitops.tree_of(path, gitops.parent_of(path, target)), target, "undo"
    )
    message = checked_message(
        path,
        f'Revert "{bead.title}" ({bead.id})',
        f"This reverts commit {target}.",
        [("Bead", bead.id), ("Reverts", target)],
    )
    for _ in range(CAS_TRIES):
        head = gitops.head_sha(path, repo.branch)
        sha = gitops.commit_tree(path, gitops.merge_trees(path, head, undo), head, message)
        if gitops.update_branch(path, repo.branch, sha, head):
            return sha
    raise gitops.GitError("the branch kept moving during the revert")


def checked_message(path: Path, title: str, body: str, trailers: list[tuple[str, str]]) -> str:
    """The commit message; GitError if git would read any trailer but `trailers`."""
    message = gitops.commit_message(title, body, trailers)
    expected = [(key, gitops.one_line(value)) for key, value in trailers]
    if gitops.trailers_of(path, message) != expected:
        raise gitops.GitError("the commit message would carry trailers that are not Corral's")
    return message


def push_branch(repository_id: int) -> None:
    """Fast-forward the upstream to the branch; a failure is recorded, and the lead
    supervisor enqueues the push again a minute later."""
    repo = Repository.objects.get(pk=repository_id)
    if not (repo.push and repo.upstream):
        return
    pending = Submission.objects.filter(
        repository=repo, status=Submission.Status.COMMITTED, pushed_at=None
    )
    pending_ids = list(pending.values_list("pk", flat=True))
    try:
        gitops.push(repo.canonical_path, repo.upstream, repo.branch)
    except gitops.GitError as e:
        Submission.objects.filter(pk__in=pending_ids).update(push_error=str(e))
        return
    Submission.objects.filter(pk__in=pending_ids).update(pushed_at=timezone.now(), push_error="")


def requeue_waiting(repository: Repository) -> int:
    """For a lead starting up: if submissions wait, a drain is queued for them
    (a drain job left `started` by a lead that died never finishes: it is
    replaced). Returns how many wait."""
    waiting = Submission.objects.filter(
        repository=repository, status__in=Submission.FOR_LEAD
    ).count()
    if waiting:
        queues.enqueue_drain(repository)
    return waiting
