"""Reverting a landed bead: one commit that undoes its commit, built under the
repository's lock, and the bead open again.
"""

from agents import queues
from agents.jobs.lead import CAS_TRIES, checked_message, next_waiting
from agents.models import RevertRequest
from agents.moves import outcomes
from beads.models import Bead
from workspace import gitops


def revert(bead_id: str) -> None:
    """Land one commit that reverts a closed bead's commit, and reopen the bead.
    Its revert request is done once the bead is reopened, or found with
    nothing to revert, or the revert failed (saying why on the bead); only a
    crash leaves it waiting, for reconcile() to enqueue this again."""
    bead = Bead.objects.select_related("repository").filter(pk=bead_id).first()
    if bead is None or bead.status != Bead.Status.CLOSED or not bead.commit_sha:
        RevertRequest.finish_for(bead_id=bead_id)
        return
    repo = bead.repository
    with queues.repo_lock(repo):
        revert_locked(bead)
    if next_waiting(repo) is not None:  # a drain that found the lock held left them to us
        queues.enqueue_drain(repo)


def revert_locked(bead: Bead) -> None:
    bead.refresh_from_db()
    if bead.status != Bead.Status.CLOSED or not bead.commit_sha:
        RevertRequest.finish_for(bead=bead)
        return
    target = bead.commit_sha
    try:
        sha = gitops.find_commit_with_trailer(
            bead.repository.canonical_path, bead.repository.branch, target, "Reverts", target
        )
        sha = sha or land_revert(bead, target)
    except gitops.GitError as e:
        Bead.objects.filter(pk=bead.pk).update(last_failure=f"Revert failed: {e}")
        RevertRequest.finish_for(bead=bead)
        return
    outcomes.bead_reverted(bead, sha)  # and the request is done with it


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
