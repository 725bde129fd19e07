"""Living with the team's remote: the upstream is the source of truth.

With push on (`Repository.follows_upstream`), the lead fetches the upstream's
branch (that one ref) before each train, on a schedule and on a push webhook,
and makes Corral's branch follow it:

- the upstream holds nothing new: nothing to do (Corral's branch may be ahead
  of it with commits not pushed yet);
- it moved forward: Corral's commits not on it yet are made again on its head,
  one commit each with message and trailers kept (a rebase without a working
  tree); one that no longer applies is dropped and its bead goes back to the
  hook, as a conflict at the apply gate does;
- its history was rewritten (what Corral last saw there is not in it): the
  repository stops landing, Corral's branch is kept at a
  `refs/corral/diverged/<UTC time>` ref, until an operator asks to rebuild on
  the upstream (rebuild()).

A push names the commit it expects to replace (gitops.push_with_lease): a
rejection means the upstream moved, so the lead follows it and pushes again, a
few times at most. The push is here, in publish(), one place: a landing by
pull request would replace this step alone.

Everything here runs with the repository's lead lock held (drain() holds it;
the jobs below take it), so it is the branch's one writer.
"""

import logging

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from agents import queues
from agents.models import Submission
from agents.moves import upstream as moves
from workspace import gitops
from workspace.models import Repository

log = logging.getLogger(__name__)
PUSH_TRIES = 3  # a rejected push: follow the upstream and push again, this many times


def follow(repo: Repository) -> bool:
    """Fetch the upstream and make the branch follow it (see the module); True
    when the repository may land. An upstream that cannot be reached is
    recorded and landing goes on: the push waits for it. What it fetches and
    makes goes to the canonical store, never to a train's quarantine."""
    with gitops.outside_quarantine(repo.canonical_path):
        return follow_here(repo)


def follow_here(repo: Repository) -> bool:
    if not repo.follows_upstream:
        return True
    if not repo.lands:
        return False
    path = repo.canonical_path
    try:
        theirs = gitops.fetch_branch(path, repo.upstream, repo.branch)
    except gitops.GitError as e:
        repo.saw_upstream("", str(e))
        return True
    ours = gitops.head_sha(path, repo.branch)
    seen = repo.upstream_sha
    if seen and seen != theirs and rewritten(repo, seen, theirs):
        stop(repo, ours, theirs)
        return False
    if theirs == ours or gitops.is_ancestor(path, theirs, ours):
        repo.saw_upstream(theirs)  # ours is the same or ahead: what is ahead is to push
        return True
    rebase(repo, ours, theirs, gitops.commits_only_in(path, ours, theirs))
    return True


def rewritten(repo: Repository, seen: str, theirs: str) -> bool:
    """What Corral last saw on the upstream is not in its history any more."""
    path = repo.canonical_path
    if not gitops.has_commit(path, seen):
        return False  # nothing to judge by (it was never fetched here): take it as new
    return not gitops.is_ancestor(path, seen, theirs)


def rebase(repo: Repository, ours: str, theirs: str, commits: list[str]) -> str:
    """Make `commits` again on `theirs`, move the branch there from `ours` (a
    compare-and-swap) and record it: renamed commits on their rows, dropped
    ones' beads back to the hook. The new head."""
    path = repo.canonical_path
    tip, renamed, dropped = theirs, {}, {}
    for commit in commits:
        try:
            tip = renamed[commit] = gitops.cherry_onto(path, commit, tip)
        except gitops.MergeConflict as e:
            dropped[commit] = f"The upstream moved and this bead's commit no longer applies: {e}."
    if not gitops.update_branch(path, repo.branch, tip, ours):
        raise gitops.GitError(f"branch {repo.branch!r} moved while following the upstream")
    moves.rebuilt(repo, renamed, dropped, theirs)
    return tip


def stop(repo: Repository, ours: str, theirs: str) -> None:
    """The upstream's history was rewritten: keep ours at a diverged ref, stop landing."""
    when = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    ref = gitops.diverged_ref(when)
    gitops.set_ref(repo.canonical_path, ref, ours)
    moves.diverged(repo, ref, theirs)
    log.warning("%s: the upstream's history was rewritten; landing stopped, ours at %s", repo, ref)


def publish(repo: Repository) -> bool:
    """Push the branch to the upstream, if it is ahead of what Corral saw there,
    with a lease on that commit; a rejection follows the upstream (rebuilding
    what is not pushed yet on its head) and pushes again, PUSH_TRIES times at
    most. Records the result on the repository; True when the upstream holds
    the branch."""
    if not repo.follows_upstream or not repo.lands:
        return False
    path = repo.canonical_path
    for _ in range(PUSH_TRIES):
        ours, theirs = gitops.head_sha(path, repo.branch), repo.upstream_sha
        if ours == theirs:  # a train pushed its commits before it landed them
            mark_pushed(repo)
            return True
        try:
            gitops.push_with_lease(path, repo.upstream, repo.branch, ours, theirs)
        except gitops.PushRejected as e:
            repo.record_push(False, str(e))
            if not follow(repo):
                return False
            continue
        except gitops.GitError as e:
            repo.record_push(False, str(e))
            return False
        pushed(repo, ours, theirs)
        return True
    repo.record_push(False, f"the upstream kept moving: {PUSH_TRIES} pushes refused in a row")
    return False


def pushed(repo: Repository, ours: str, theirs: str) -> None:
    count = len(gitops.commits_only_in(repo.canonical_path, ours, theirs)) if theirs else 0
    repo.saw_upstream(ours)
    repo.record_push(True, f"pushed {count} commit(s), up to {ours[:12]}")
    mark_pushed(repo)


def mark_pushed(repo: Repository) -> None:
    """Every commit on the branch is on the upstream: so are the submissions'."""
    Submission.objects.filter(
        repository=repo, status=Submission.Status.COMMITTED, pushed_at=None
    ).update(pushed_at=timezone.now(), push_error="")


AGAIN, PUSHED, LOCAL = "again", "pushed", "local"  # what push_train() says


def push_train(repo: Repository, tip: str, head: str) -> str:
    """A train built on `head` up to `tip` goes to the upstream before the branch
    moves, so that a person's push meanwhile costs building the train again
    (as when the branch moves) rather than rebasing commits already landed.
    AGAIN when the upstream refused it: the branch now follows the upstream's
    new head, and the train is to be built again on it. PUSHED: the upstream
    holds it. LOCAL: not pushed now (push off, the upstream unreachable, its
    history rewritten): it lands here as before, left to publish() or a rebuild."""
    if not repo.follows_upstream or not repo.lands or not repo.upstream_sha:
        return LOCAL
    path = repo.canonical_path
    if not gitops.has_commit(path, repo.upstream_sha):
        return LOCAL
    try:
        if not gitops.is_ancestor(path, repo.upstream_sha, head):
            return LOCAL  # the branch does not hold what the upstream does: publish() sorts it out
        gitops.push_with_lease(path, repo.upstream, repo.branch, tip, repo.upstream_sha)
    except gitops.PushRejected as e:
        repo.record_push(False, str(e))
        return AGAIN if follow(repo) else LOCAL  # stopped: land here, kept for a rebuild
    except gitops.GitError as e:
        repo.record_push(False, str(e))
        return LOCAL
    pushed_count = len(gitops.commits_only_in(path, tip, repo.upstream_sha))
    repo.saw_upstream(tip)
    repo.record_push(True, f"pushed {pushed_count} commit(s), up to {tip[:12]}")
    return PUSHED


def follow_upstream(repository_id: int) -> None:
    """The job of the schedule and of the push webhook (and of a push asked for
    after a landing): follow the upstream, then push what is not there yet."""
    close_old_connections()
    repo = Repository.objects.filter(pk=repository_id).first()
    if repo is None or not repo.follows_upstream or not repo.lands:
        return
    with queues.repo_lock(repo, wait_s=settings.LEAD_LOCK_SECONDS + 1) as held:
        if not held:
            queues.enqueue_follow(repo)  # the holder is busy: look again after it
            return
        if follow(repo):
            publish(repo)
        waiting = Submission.objects.filter(repository=repo, status__in=Submission.FOR_LEAD)
        if waiting.exists():
            queues.enqueue_drain(repo)  # a drain that met a diverged upstream left them


def push_after_landing(repository_id: int) -> None:
    """A landing outside a train (a revert, a change set) asked for a push:
    nothing to do when the upstream holds the branch already."""
    repo = Repository.objects.filter(pk=repository_id).first()
    if repo is None or not repo.follows_upstream:
        return
    if gitops.head_sha(repo.canonical_path, repo.branch) != repo.upstream_sha:
        follow_upstream(repository_id)


def rebuild(repository_id: int) -> None:
    """An operator chose "rebuild on the upstream" after a rewritten upstream:
    the branch starts again from the upstream's head, and Corral's commits that
    were never pushed (those of the diverged ref not in what Corral last saw
    there) are made again on it, a bead whose commit no longer applies going
    back to the hook. Then landing resumes and the rebuilt commits are pushed.
    Run twice, the second finds the branch on the upstream already."""
    close_old_connections()
    repo = Repository.objects.filter(pk=repository_id).first()
    if repo is None or repo.landing != Repository.Landing.REBUILDING:
        return
    path = repo.canonical_path
    with queues.repo_lock(repo, wait_s=settings.LEAD_LOCK_SECONDS + 1) as held:
        if not held:
            queues.enqueue_rebuild(repo)
            return
        theirs = gitops.fetch_branch(path, repo.upstream, repo.branch)
        ours = gitops.head_sha(path, repo.branch)
        if not gitops.is_ancestor(path, theirs, ours):  # not done by a run before
            kept = git_ref_sha(repo) or ours
            seen = repo.upstream_sha
            unpushed = gitops.commits_only_in(path, kept, seen) if seen else []
            rebase(repo, ours, theirs, unpushed)
        else:
            moves.rebuilt(repo, {}, {}, theirs)
        repo.refresh_from_db()
        publish(repo)
    queues.enqueue_drain(repo)


def git_ref_sha(repo: Repository) -> str:
    if not repo.diverged_ref:
        return ""
    done = gitops.git_call(
        repo.canonical_path, "rev-parse", "--verify", "--quiet", repo.diverged_ref
    )
    return done.stdout if done.returncode == 0 else ""


def enqueue_follows() -> int:
    """The schedule (the lead supervisor, every CORRAL_UPSTREAM_FETCH_SECONDS):
    a follow for every repository that follows its upstream."""
    repos = Repository.objects.filter(active=True, push=True, landing=Repository.Landing.FOLLOWING)
    count = 0
    for repo in repos.exclude(upstream=""):
        queues.enqueue_follow(repo)
        count += 1
    return count
