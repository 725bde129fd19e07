"""A session's life across tables: claimed, queued, handed in, ended badly
(failed, timed out, out of scope, cancelled, lost, over budget), or paused by
its agent's rate limit.

Models make their own single-row moves (each a conditional UPDATE, declared
in their MOVES table); a move here changes several rows and so runs in one
transaction, and the jobs that follow from it (a session to run, a drain, a
dispatch) are enqueued only once that transaction commits. A move that
loses its race changes nothing and returns False (or raises StateError where
the caller must answer someone).
"""

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents import queues
from agents.models import Agent, Session, StateError, Submission, webhooks
from agents.moves import notifications
from beads import hook
from beads.models import Bead
from knowledge import capture
from knowledge.models import Learning
from workspace.models import Repository


def claim(
    agent: Agent,
    repository: Repository | None = None,
    bead: Bead | None = None,
    repositories: list[int] | None = None,
) -> Session:
    """Claim one ready bead for `agent` and open its session (hook.NothingReady
    or hook.NotClaimable when there is none, AgentPaused after a rate limit)."""
    if paused := agent.pause_text():  # as read by the caller (a request's, dispatch's)
        raise AgentPaused(f"agent {agent.name} is {paused}")
    session = Session.to_open(agent)
    claimed = hook.claim(
        agent.name,
        hook.Opening(**session.opening()),
        repository=repository,
        bead=bead,
        repositories=repositories,
    )
    return session.opened(claimed.bead, claimed.base_sha, claimed.at)


class AgentPaused(hook.NothingReady):
    """The agent takes no work now: a rate limit paused it (409)."""


def queue_session(session: Session) -> bool:
    """A claimed session goes to the session workers."""
    with transaction.atomic():
        if not session.queue():
            return False
        queues.enqueue_session(session.pk, session_job_timeout(session))
    return True


def session_job_timeout(session: Session) -> int:
    # The agent's limit, the grace before SIGKILL, and the clone and collection.
    return session.time_limit_s() + settings.KILL_GRACE_SECONDS + 300


def hand_in(
    session: Session, patch: str, summary: str = "", learnings: Iterable[dict[str, Any]] = ()
) -> Submission:
    """The session's patch goes to its repository's lead: the session, its bead,
    a new Submission and the learnings it proposes move together."""
    with transaction.atomic():
        if not session.submit(patch, summary):
            raise StateError(f"session {session.pk} is {session.status}, not live")
        if not session.bead.submit():
            raise StateError(f"bead {session.bead_id} is {session.bead.status}, not in progress")
        repo = session.bead.repository
        submission = Submission.objects.create(session=session, repository=repo, bead=session.bead)
        for learning in learnings:
            propose_learning(session, **learning)
        queues.enqueue_drain_on_commit(repo)
    return submission


def propose_learning(session: Session, title: str, body: str, tags: Iterable[str] = ()) -> Learning:
    repo = session.bead.repository
    return capture.propose(
        repo.workspace,
        repo,
        title,
        body,
        tags=list(tags),
        files=list(session.changed_files or []),
        source={"kind": "handoff"},
        session=session,
    )


def end(session: Session, status: str, reason: str, for_the_bead: str = "") -> bool:
    """A live session ends badly (failed, timed out, out of scope, cancelled,
    lost): its bead goes back to the hook with the reason (or `for_the_bead`,
    said as the next session should read it)."""
    with transaction.atomic():
        if not session.end(status, reason):
            return False
        session.bead.fail_attempt(for_the_bead or reason)
        queues.enqueue_dispatch()  # a slot is free, and the bead may be ready again
    return True


def stop_over_budget(session: Session, reason: str, of_bead: bool) -> bool:
    """A token budget is spent: the session fails with the reason; its bead goes
    back to the hook, or, when the bead's own budget is spent, is blocked until
    a person raises the budget (another session would only spend more)."""
    with transaction.atomic():
        if not session.end(Session.Status.FAILED, reason):
            return False
        bead = session.bead
        bead.fail_attempt(reason)
        if of_bead:
            bead.block(reason)
        notifications.emit(
            webhooks.BUDGET_REACHED,
            {
                "session": str(session.pk),
                "bead": bead.pk,
                "agent": session.agent.name,
                "repository": bead.repository.slug,
                "reason": reason,
                "text": f"{session.agent.name} on {bead.pk}: {reason}",
            },
        )
        queues.enqueue_dispatch()
    return True


def worker_died(session: Session) -> bool:
    """The worker running it stopped beating: nobody watches the agent or
    will collect its work (reconcile() kills what is left of it here)."""
    return end(
        session,
        Session.Status.LOST,
        f"Its worker {session.worker} died.",
        "The session was lost: the worker running it died.",
    )


def pause(session: Session, reason: str, resets_at: datetime) -> bool:
    """The agent hit a rate limit until `resets_at`: the session ends paused,
    its bead goes back to the hook with no attempt counted, and the agent takes
    no work until the reset, or until a person resumes it when it does not
    resume by itself (auto_resume off) or was paused more than
    CORRAL_PAUSES_PER_DAY times in a day."""
    with transaction.atomic():
        if not session.pause(reason, resets_at):
            return False
        session.bead.put_back()
        agent = session.agent
        for_person = not agent.auto_resume or pauses_today(agent) > settings.PAUSES_PER_DAY
        agent.pause(resets_at, reason, for_person)
        queues.enqueue_dispatch()  # a slot is free, and the bead is ready for another agent
    return True


def pauses_today(agent: Agent) -> int:
    """The agent's sessions paused in the last 24 hours."""
    since = timezone.now() - timedelta(days=1)
    paused = Session.objects.filter(agent=agent, status=Session.Status.PAUSED)
    return paused.filter(ended_at__gte=since).count()


def release(session: Session, reason: str, rate_limited_until: datetime | None = None) -> bool:
    """The agent gives the bead back; rate limited (until then), it is paused
    as an internal agent's session is."""
    if rate_limited_until is not None:
        return pause(session, f"Released, rate limited: {reason}", rate_limited_until)
    return end(
        session,
        Session.Status.CANCELLED,
        f"Released: {reason}",
        f"Released by {session.agent}: {reason}",
    )


def cancel(session: Session, by: Any) -> bool:
    """A person stops the session; its runner sees it and kills the agent."""
    return end(
        session,
        Session.Status.CANCELLED,
        f"Cancelled by {by}.",
        f"The session was cancelled by {by}.",
    )


def lose(session: Session) -> bool:
    """Nobody heard from it within its lease."""
    return end(
        session,
        Session.Status.LOST,
        "The lease expired.",
        "The session was lost: its lease expired.",
    )
