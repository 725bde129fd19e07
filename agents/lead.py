"""The lead: one per repository, it gates each submission and lands it as one commit.

Jobs run on the repository's `lead:<slug>` queue and, whatever runs them, the
commit step holds the repository's Redis lock. Every job re-reads its row and
is idempotent: a lead killed between `update-ref` and saving its row finds
its commit by the `Session:` trailer instead of committing twice.
"""

import logging
import time

from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from agents import gates, patches, queues
from agents.models import GateResult, Submission
from beads.models import Bead
from knowledge.models import Learning
from workspace import gitops

log = logging.getLogger(__name__)
CAS_TRIES = 3  # the branch moved under us (someone wrote to it outside the lead)


IN_FLIGHT = [Submission.Status.QUEUED, Submission.Status.CHECKING, Submission.Status.APPROVED]
RELATED = ("repository", "session__agent", "bead")


def drain(repository_id):
    """Land the repository's waiting submissions, oldest first, until none wait.

    One job per repository rather than one per submission: the lock is taken
    once and the queue's bookkeeping paid once, however many are waiting.
    """
    from workspace.models import Repository

    close_old_connections()  # the lead worker lives long: drop a connection gone bad
    repo = Repository.objects.filter(pk=repository_id).first()
    if repo is None:
        return
    tried = set()
    with queues.repo_lock(repo):
        while sub := next_waiting(repo, exclude=tried):
            tried.add(sub.pk)
            land(sub)


def next_waiting(repo, exclude=()):
    waiting = Submission.objects.filter(repository=repo, status__in=IN_FLIGHT).exclude(
        pk__in=exclude
    )
    return waiting.select_related(*RELATED).order_by("queued_at", "pk").first()


def process_submission(submission_id):
    """Gate and land one submission. Safe to run twice, or after a crash."""
    sub = Submission.objects.select_related(*RELATED).filter(pk=submission_id).first()
    if sub is None or sub.status not in IN_FLIGHT:
        return
    with queues.repo_lock(sub.repository):
        land(sub)


def land(sub):
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

    def __init__(self, submission):
        self.submission = submission
        self.session = submission.session
        self.bead = submission.bead
        self.agent = self.session.agent
        self.repository = submission.repository
        self.path = self.repository.canonical_path
        self.tree = None

    def run(self, resumed):
        if resumed and (sha := self.already_committed()):
            return self.committed(sha)
        try:
            self.changes = patches.parse(self.session.patch)
        except patches.PatchError as e:
            return self.refuse(Submission.Status.REJECTED, f"paths gate: {e}")
        self.files = sorted({p for change in self.changes for p in change.paths})
        stale_results = resumed or self.submission.reviewed_at is not None
        for _ in range(CAS_TRIES):
            self.head = gitops.head_sha(self.path, self.repository.branch)
            if stale_results:  # an earlier run's gates: this run records its own
                GateResult.objects.filter(submission=self.submission).delete()
            stale_results = True
            if not self.pass_gates():
                return
            sha = gitops.commit_tree(
                self.path, self.tree, self.head, self.message(), author=self.author()
            )
            if gitops.update_branch(self.path, self.repository.branch, sha, self.head):
                return self.committed(sha)
        self.refuse(Submission.Status.FAILED, "The branch kept moving during the commit.")

    def pass_gates(self):
        """Run every gate; True when all passed. Results are written in one go,
        and before a check command runs, so the page shows progress."""
        results = []
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
                        detail=verdict.detail,
                        duration_ms=round((time.monotonic() - started) * 1000),
                    )
                )
                if verdict.passed is None:
                    self.submission.await_review()
                    return False
                if not verdict.passed:
                    self.refuse(verdict.refusal, f"{name} gate: {verdict.detail}")
                    return False
            return True
        finally:
            GateResult.objects.bulk_create(results)

    def already_committed(self):
        return gitops.commit_with_trailer(
            self.path, self.repository.branch, self.session.base_sha, f"Session: {self.session.pk}"
        )

    def message(self):
        summary = self.session.summary.strip() or "(no summary)"
        trailers = f"Bead: {self.bead.id}\nAgent: {self.agent.name}\nSession: {self.session.pk}"
        return f"{self.bead.title} ({self.bead.id})\n\n{summary}\n\n{trailers}\n"

    def author(self):
        return (self.agent.name, f"{self.agent.name}@agents.corral.invalid")

    def committed(self, sha):
        with transaction.atomic():
            self.submission.commit(sha)
            self.bead.land(sha)
            self.session.succeed()
            # Learnings that were in this session's context helped it land.
            Learning.objects.filter(injections__session=self.session).update(
                helpful=F("helpful") + 1
            )
        if self.repository.push and self.repository.upstream:
            queues.enqueue_push(self.repository)
        queues.enqueue_dispatch()  # its dependents may be ready now

    def refuse(self, status, reason):
        with transaction.atomic():
            if self.submission.refuse(status, reason):
                self.session.fail_submission(reason)
                self.bead.fail_attempt(reason)


def review(submission, user, approve, reason=""):
    """A person's decision on a submission awaiting review; False if it was not waiting."""
    with transaction.atomic():
        if approve:
            if not submission.approve(user):
                return False
            queues.enqueue_submission(submission)
            return True
        if not submission.reject(user, reason or f"Rejected by {user}."):
            return False
        submission.session.fail_submission(submission.reason)
        submission.bead.fail_attempt(submission.reason)
        return True


def revert(bead_id):
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
                repo.canonical_path, repo.branch, target, f"Reverts: {target}"
            )
            sha = sha or land_revert(bead, target)
        except gitops.GitError as e:
            Bead.objects.filter(pk=bead.pk).update(last_failure=f"Revert failed: {e}")
            return
        bead.revert_landed(sha)


def land_revert(bead, target):
    repo, path = bead.repository, bead.repository.canonical_path
    # A commit whose parent is the target and whose tree is the target's
    # parent's: merged into head, it undoes exactly the target's change.
    undo = gitops.commit_tree(
        path, gitops.tree_of(path, gitops.parent_of(path, target)), target, "undo"
    )
    message = (
        f'Revert "{bead.title}" ({bead.id})\n\nThis reverts commit {target}.\n\n'
        f"Bead: {bead.id}\nReverts: {target}\n"
    )
    for _ in range(CAS_TRIES):
        head = gitops.head_sha(path, repo.branch)
        sha = gitops.commit_tree(path, gitops.merge_trees(path, head, undo), head, message)
        if gitops.update_branch(path, repo.branch, sha, head):
            return sha
    raise gitops.GitError("the branch kept moving during the revert")


def push_branch(repository_id):
    """Fast-forward the upstream to the branch; a failure is recorded, and the lead
    supervisor enqueues the push again a minute later."""
    from workspace.models import Repository

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
