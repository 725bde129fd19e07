"""Pull-request mode: following the requests Corral opened on the forge.

A repository with `land_via = pr` lands nothing on its branch by itself: the
lead pushes each bead's one commit to `corral/<bead>` on the upstream and the
submission is `proposed` (agents/jobs/lead.py propose_train). This job, one per
repository at a time on the lead queue (`forge-<slug>`), looks at each proposed
submission: it opens its request if none is recorded (opening twice finds the
one open), reads its state and the checks on its commit, merges it by rebase
once they pass, and when the forge has merged it, fetches the upstream's
branch, moves Corral's branch to it (a fast-forward, by compare-and-swap) and
lands the submission with the commit the forge made. A request closed without
a merge, or (with `forge_checks_gate`) a failed check, sends the bead back with
the reviewers' words or the checks as its next session's context.

Idempotent: every write is a conditional move of the row as read, and a
merged request found again finds the submission committed. Rate limits and a
forge out of reach leave everything as it is until the next poll.
"""

import logging

from django.db import close_old_connections

from agents import queues
from agents.models import GateResult, Submission
from agents.moves import outcomes
from workspace import forges, gitops
from workspace.forges import base
from workspace.models import Repository

log = logging.getLogger(__name__)
REMARKS_SHOWN = 20  # reviewers' remarks carried into the next context, newest last
REMARK_CHARS = 1500


def forge_for(repo: Repository) -> forges.Forge:
    return forges.adapter(repo.forge, repo.forge_url, repo.forge_repo, repo.forge_token)


def poll(repository_id: int) -> None:
    """Look at every proposed submission of the repository once."""
    close_old_connections()
    repo = Repository.objects.filter(pk=repository_id).first()
    if repo is None or not repo.lands_via_pr:
        return
    proposed = Submission.objects.filter(repository=repo, status=Submission.Status.PROPOSED)
    subs = list(proposed.select_related("bead", "session__agent").order_by("queued_at", "pk"))
    if not subs:
        return
    forge = forge_for(repo)
    for sub in subs:
        try:
            follow(repo, forge, sub)
        except forges.RateLimited as e:
            note(sub, f"The forge's rate limit: waiting {e.wait_s:.0f} s.")
            return  # every later call would fail the same way: the next poll
        except (forges.ForgeError, gitops.GitError) as e:
            note(sub, str(e))


def follow(repo: Repository, forge: forges.Forge, sub: Submission) -> None:
    if sub.proposal_number is None:
        opened = forge.open(gitops.proposal_branch(sub.bead_id), repo.branch, title(sub), body(sub))
        sub.opened(opened.number, opened.url)
        sub.refresh_from_db()
        if sub.proposal_number is None:
            return
    proposal = forge.get(sub.proposal_number)
    if proposal.state == base.MERGED:
        return merged(repo, sub)
    if proposal.state == base.CLOSED:
        said = remarks(forge.remarks(sub.proposal_number))
        outcomes.withdraw(
            sub,
            f"The pull request {sub.proposal_url or sub.proposal_number} was closed "
            f"without merging.{said}",
        )
        return
    checks = forge.checks(proposal.head_sha or sub.proposal_sha)
    state = base.summary(checks)
    if repo.forge_checks_gate:
        record_checks(sub, checks, state)
    if state == base.FAILURE:
        failed = [c for c in checks if c.state == base.FAILURE]
        reason = "forge gate: " + "; ".join(
            f"{c.name} failed" + (f": {c.summary}" if c.summary else "") for c in failed
        )
        if repo.forge_checks_gate:
            forge.close(sub.proposal_number, f"Corral: {reason}")
            outcomes.withdraw(sub, reason)
        else:
            note(sub, f"Waiting: {reason} (the request stays open for people)")
        return
    if state == base.PENDING:
        note(sub, "Waiting for the forge's checks.")
        return
    result = forge.merge(sub.proposal_number, proposal.head_sha or sub.proposal_sha)
    if result.merged:
        return merged(repo, sub)
    note(sub, f"In the merge queue: {result.message}" if result.queued else result.message)


def merged(repo: Repository, sub: Submission) -> None:
    """The forge merged it: Corral's branch follows the upstream's, and the
    submission lands with the commit the forge's rebase made."""
    with queues.repo_lock(repo) as held:
        if not held:
            return
        path = repo.canonical_path
        tip = gitops.fetch_upstream_head(path, repo.upstream, repo.branch)
        head = gitops.head_sha(path, repo.branch)
        if tip != head:
            if not gitops.is_ancestor(path, head, tip):
                note(sub, "The upstream's branch does not descend from Corral's: not followed.")
                return
            if not gitops.update_branch(path, repo.branch, tip, head):
                return  # moved meanwhile: the next poll
        base_sha = sub.session.base_sha
        sha = gitops.find_trailer_between(path, base_sha, tip, "Session", str(sub.session_id))
        if sha is None:
            note(sub, "Merged on the forge, but its commit is not on the upstream's branch yet.")
            return
    outcomes.land(sub, sha)


def record_checks(sub: Submission, checks: list[base.Check], state: str) -> None:
    """The forge gate's result, shown with the other gates: one row, kept current."""
    detail = "\n".join(f"{c.name}: {c.state}" + (f" ({c.url})" if c.url else "") for c in checks)
    passed = {base.SUCCESS: True, base.FAILURE: False}.get(state)
    row = GateResult.objects.filter(submission=sub, gate=GateResult.Gate.FORGE).first()
    if row is None:
        GateResult.objects.create(
            submission=sub, gate=GateResult.Gate.FORGE, passed=passed, detail=detail or "no checks"
        )
    else:
        GateResult.objects.filter(pk=row.pk).update(passed=passed, detail=detail or "no checks")


def note(sub: Submission, text: str) -> None:
    """What the forge last said of a waiting submission (no move: it still waits)."""
    Submission.objects.filter(pk=sub.pk, status=Submission.Status.PROPOSED).update(
        proposal_note=text[:2000]
    )


def title(sub: Submission) -> str:
    return f"{gitops.one_line(sub.bead.title)} ({sub.bead_id})"


def body(sub: Submission) -> str:
    """The bead's description and the commit's trailers (the commit carries them too)."""
    summary = sub.session.summary.strip() or "(no summary)"
    trailers = f"Bead: {sub.bead_id}\nAgent: {sub.session.agent.name}\nSession: {sub.session_id}"
    return f"{sub.bead.description.strip()}\n\n{summary}\n\n{trailers}".strip()


def remarks(said: list[base.Remark]) -> str:
    """The reviewers' words, for the bead's next session."""
    mine = [r for r in said if r.author != "corral" and r.body.strip()][-REMARKS_SHOWN:]
    if not mine:
        return ""
    lines = [f"- {r.author} ({r.kind}): {r.body.strip()[:REMARK_CHARS]}" for r in mine]
    return " The reviewers said:\n" + "\n".join(lines)


def on_forge_event(repository: Repository, kind: str, payload: dict) -> bool:
    """A forge's webhook said something changed (a pull_request or merge_request
    event, a check): look again now. The payload is only a hint (it is not
    trusted beyond naming the repository); the poll reads the forge itself."""
    if kind not in ("pull_request", "merge_request", "check_run", "check_suite", "status"):
        return False
    if not repository.lands_via_pr:
        return False
    queues.enqueue_forge_poll(repository)
    return True


def poll_due() -> int:
    """For the lead supervisor: a poll for every repository with a proposal waiting."""
    ids = Submission.objects.filter(status=Submission.Status.PROPOSED).values_list(
        "repository_id", flat=True
    )
    repos = list(Repository.objects.filter(pk__in=set(ids), land_via=Repository.LandVia.PR))
    for repo in repos:
        queues.enqueue_forge_poll(repo)
    return len(repos)
