"""What following the upstream does to the rows (agents/jobs/upstream.py does
the git): commits made again on the upstream's head, a bead whose commit no
longer applies there back to the hook, a repository stopped when the
upstream's history was rewritten, and people's moves: push on or off, rebuild
on the upstream. Each one transaction, follow-up jobs enqueued once it commits.
"""

from collections.abc import Mapping

from django.db import transaction
from django.http import HttpRequest

from agents import queues
from agents.models import Submission
from beads.models import Bead
from workspace import audit
from workspace.models import Repository


def rebuilt(
    repo: Repository, renamed: Mapping[str, str], dropped: Mapping[str, str], upstream: str
) -> None:
    """The branch was built again on the upstream's `upstream`: each commit of
    `renamed` is now its new one (on its submission and bead), each of
    `dropped` never reached the upstream and no longer applies there (its
    submission a conflict, its bead open again with the reason). A repository
    being rebuilt lands again."""
    with transaction.atomic():
        for old, new in renamed.items():
            Submission.objects.filter(repository=repo, commit_sha=old).update(commit_sha=new)
            Bead.objects.filter(repository=repo, commit_sha=old).update(commit_sha=new)
        for old, reason in dropped.items():
            for sub in Submission.objects.filter(repository=repo, commit_sha=old).select_related(
                "bead"
            ):
                if sub.unland(reason):
                    sub.bead.unland(reason)
        if dropped:
            queues.enqueue_dispatch()
        if repo.landing == Repository.Landing.REBUILDING:
            repo.resume(upstream)
        else:
            repo.saw_upstream(upstream)


def diverged(repo: Repository, ref: str, upstream: str) -> bool:
    """The upstream's history was rewritten: stop landing (once, whoever saw it
    first), ours kept at `ref`. What Corral last saw there stays recorded: the
    commits after it are the ones a rebuild makes again."""
    with transaction.atomic():
        stopped = repo.diverge(ref)
        if stopped:
            audit.record(
                audit.Action.UPSTREAM_DIVERGED,
                repo.slug,
                repository=repo,
                actor_name="lead",
                detail=f"upstream now at {upstream[:12]}; Corral's branch kept at {ref}",
            )
    return stopped


def request_rebuild(repo: Repository, request: HttpRequest) -> bool:
    """An operator chose "rebuild on the upstream"; False if the repository was
    not stopped (or another person asked first)."""
    with transaction.atomic():
        if not repo.ask_rebuild():
            return False
        audit.record(audit.Action.UPSTREAM_REBUILD, repo.slug, repository=repo, request=request)
        queues.after_commit(lambda: queues.enqueue_rebuild(repo))
    return True


def set_push(repo: Repository, on: bool, request: HttpRequest) -> bool:
    """Turn following and pushing to the upstream on or off (a conditional
    UPDATE); False if it already was. Turned on, the lead follows at once."""
    with transaction.atomic():
        changed = bool(Repository.objects.filter(pk=repo.pk, push=not on).update(push=on))
        repo.push = on
        if changed:
            action = audit.Action.PUSH_ON if on else audit.Action.PUSH_OFF
            audit.record(action, repo.slug, repository=repo, request=request)
            if on and repo.upstream:
                queues.after_commit(lambda: queues.enqueue_follow(repo))
    return changed
