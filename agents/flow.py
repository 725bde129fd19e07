"""Every move that spans tables: bead → hook → session → submission → commit.

Models make their own single-row moves (each a conditional UPDATE, declared
in their MOVES table); a move here changes several rows and so runs in one
transaction, and the jobs that follow from it (a session to run, a drain, a
dispatch, a push) are enqueued only once that transaction commits. A move
that loses its race changes nothing and returns False (or raises StateError
where the caller must answer someone).
"""

from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from agents import queues, webhooks
from agents.models import Agent, Session, StateError, Submission
from beads import hook, scopes
from beads.models import Bead, Dependency, Plan
from knowledge import capture, feedback
from knowledge.models import Learning
from workspace import audit, roles
from workspace.models import Repository
from workspace.scrub import scrub


def claim(
    agent: Agent,
    repository: Repository | None = None,
    bead: Bead | None = None,
    repositories: list[int] | None = None,
) -> Session:
    """Claim one ready bead for `agent` and open its session (hook.NothingReady
    or hook.NotClaimable when there is none)."""
    return hook.claim(
        agent.name,
        lambda claimed: Session.open(agent, claimed),
        repository=repository,
        bead=bead,
        repositories=repositories,
    )


class FilingRefused(Exception):
    """The caller may not file this bead (403); the message says why."""


def file_bead(
    bead: Bead,
    discovered_from: Bead | None,
    agent: Agent | None = None,
    person: Any = None,
    via: str = "the API",
) -> Bead:
    """File a new bead (not yet saved) and its discovered-from dependency, together.

    A person's bead is open at once, if their role lets them file here
    (person_may_file). An agent's comes from a bead it works on: it names
    that bead as discovered_from and must hold a live session on it (a
    session token: that very session); the new bead goes to the same
    repository, its scope must lie within that bead's (beads.scopes.beyond),
    and it is proposed, for a person to accept, unless the repository lets
    agents file ready work (agents_file_ready). Internal agents then never
    run what an agent wrote until a person has looked at it.

    A person's bead is audited as filed through `via`.
    Raises FilingRefused (403) or ValidationError (422, naming the field).
    """
    with transaction.atomic():
        if agent is not None:
            admit_agents_bead(bead, discovered_from, agent)
        else:
            admit_persons_bead(bead, person)
        bead.save()
        if discovered_from is not None:
            Dependency.objects.create(
                issue=bead, depends_on=discovered_from, type=Dependency.Type.DISCOVERED_FROM
            )
        if agent is None:
            audit.record(
                audit.Action.BEAD_EDIT,
                bead,
                repository=bead.repository,
                detail=f"filed through {via}",
                actor=person,
            )
    return bead


def person_may_file(person: Any, repository: Repository) -> bool:
    """Whether a person may file beads in `repository`: their role's permission
    (operators and admins). Per-repository rules would go here."""
    return bool(getattr(person, "is_authenticated", False) and person.has_perm(roles.FILE_BEADS))


def admit_persons_bead(bead: Bead, person: Any) -> None:
    if not person_may_file(person, bead.repository):
        raise FilingRefused(roles.refusal(roles.FILE_BEADS))
    bead.filed_by = person
    bead.status = Bead.Status.OPEN


def admit_agents_bead(bead: Bead, parent: Bead | None, agent: Agent) -> None:
    if parent is None:
        raise ValidationError(
            {"discovered_from": "An agent files a bead from the bead it works on: name it."}
        )
    if not holds_live_session(agent, parent):
        raise FilingRefused(
            f"You hold no live session on {parent.pk}: an agent files beads only from "
            "the bead it is working on."
        )
    if bead.repository_id != parent.repository_id:
        raise FilingRefused(
            f"An agent files beads only in the repository it works in "
            f"({parent.repository.slug}), not in {bead.repository.slug}."
        )
    beyond = scopes.beyond(bead.scope, parent.scope, parent.repository.allow_unscoped)
    if beyond:
        raise ValidationError(
            {
                "scope": f"{', '.join(beyond)} may reach beyond the scope of {parent.pk} "
                f"({', '.join(parent.scope) or 'none'}). Give patterns under it; a person "
                "can widen the scope once the bead is filed."
            }
        )
    bead.filed_by_agent = agent.name
    ready = bead.repository.agents_file_ready
    bead.status = Bead.Status.OPEN if ready else Bead.Status.PROPOSED


def holds_live_session(agent: Agent, bead: Bead) -> bool:
    """Whether the agent works on the bead now (a session token: in its own session)."""
    sessions = Session.objects.filter(agent=agent, bead=bead, status__in=Session.LIVE)
    only = getattr(agent, "only_session", None)
    if only is not None:
        sessions = sessions.filter(pk=only)
    return sessions.exists()


def send_back(bead: Bead, reason: str) -> None:
    """A failed attempt: the bead goes back to the hook, or is blocked once its
    attempts run out (tell_blocked then tells the webhooks)."""
    bead.fail_attempt(reason)


def tell_blocked(sender: type[Bead], bead: Bead, reason: str, **kwargs: Any) -> None:
    """beads.signals.blocked's receiver: the webhooks that want it hear of every block."""
    webhooks.emit(
        webhooks.BEAD_BLOCKED,
        {
            "bead": bead.pk,
            "repository": bead.repository.slug,
            "title": bead.title,
            "reason": reason,
            "text": f"{bead.pk} ({bead.title}) is blocked: {reason}",
        },
    )


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
        send_back(session.bead, for_the_bead or reason)
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
        send_back(bead, reason)
        if of_bead:
            bead.block(reason)
        webhooks.emit(
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


def release(session: Session, reason: str) -> bool:
    """The agent gives the bead back."""
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


def land(submission: Submission, sha: str) -> None:
    """The lead committed `sha`: the submission, session and bead are done,
    the learnings it was given get credit, a parent epic whose last child this
    was closes, and its dependents may now be ready."""
    land_train([(submission, sha)])


def land_train(landed: Sequence[tuple[Submission, str]]) -> None:
    """The lead moved the branch once for these commits (a train, one commit per
    bead): each lands as land() says, all in one transaction, with one ask for
    a push and one for a dispatch. The rows move together, a fixed number of
    queries for the whole train (see land_rows)."""
    if not landed:
        return
    repo = landed[0][0].repository
    with transaction.atomic():
        if not land_rows(landed):
            return
        if repo.push and repo.upstream:
            queues.after_commit(lambda: queues.enqueue_push(repo))
        queues.enqueue_dispatch()


def land_rows(landed: Sequence[tuple[Submission, str]]) -> list[Submission]:
    """The submissions committed, their sessions succeeded, their beads closed,
    and what follows from that; the submissions that moved (a submission
    done with meanwhile does not). Each step is one move or query for all."""
    shas = {submission.pk: sha for submission, sha in landed}
    committed = Submission.commit_all([submission for submission, _ in landed], shas)
    if not committed:
        return []
    beads = [submission.bead for submission in committed]
    Bead.land_all(beads, {s.bead_id: shas[s.pk] for s in committed})
    sessions = [submission.session for submission in committed]
    Session.move_many("succeed", sessions)
    feedback.settle_all(sessions, landed=True)
    close_finished_parents(beads)
    Plan.finish_landed(beads)
    tell_finished_plans(beads)
    return committed


def close_finished_parents(beads: Sequence[Bead]) -> list[Bead]:
    """Close each parent whose children have now all closed, and theirs in turn."""
    closed = []
    kind = Dependency.Type.PARENT_CHILD
    parents = Bead.objects.filter(dependents__issue__in=beads, dependents__type=kind)
    for parent in parents.exclude(status=Bead.Status.CLOSED).distinct():
        if parent.close_if_children_closed():
            closed += [parent, *close_finished_parents([parent])]
    return closed


def tell_review_waiting(submission: Submission) -> None:
    bead = submission.bead
    webhooks.emit(
        webhooks.REVIEW_WAITING,
        {
            "submission": submission.pk,
            "bead": bead.pk,
            "repository": submission.repository.slug,
            "title": bead.title,
            "url": settings.CORRAL_URL + submission.get_absolute_url(),
            "text": f"Review waiting: {bead.pk} {bead.title}",
        },
        key=f"review:{submission.pk}:{submission.started_at}",
    )


def tell_finished_plans(beads: Sequence[Bead]) -> None:
    """A plan all of whose beads have now landed is done: its webhooks hear so, once."""
    for plan in Plan.objects.filter(waves__beads__in=beads).distinct():
        beads_of_plan = Bead.objects.filter(waves__plan=plan)
        if not beads_of_plan.exclude(status=Bead.Status.CLOSED).exists():
            webhooks.emit(
                webhooks.PLAN_DONE,
                {
                    "plan": plan.name,
                    "beads": sorted(beads_of_plan.values_list("pk", flat=True)),
                    "text": f"Plan {plan.name} is done: every bead has landed.",
                },
                key=f"plan-done:{plan.pk}",
            )


def refuse(submission: Submission, status: str, reason: str) -> bool:
    """The lead turns a submission down (a gate, a conflict, a failure): the
    session failed after all and the bead goes back to the hook. The reason
    quotes gate output (a check's, from the agent's code): its secrets are
    scrubbed before it is stored where the next session and pages read it."""
    reason = scrub(reason)
    with transaction.atomic():
        if not submission.refuse(status, reason):
            return False
        submission.session.fail_submission(reason)
        send_back(submission.bead, reason)
        feedback.settle(submission.session, landed=False)
        capture.from_refusal(submission.session, reason)
        queues.enqueue_dispatch()
    return True


class ReviewRefused(Exception):
    """This person may not decide on this submission; the message says why."""


def reviews_own_bead(submission: Submission, user: Any) -> bool:
    """The repository wants review by another person, and `user` filed the bead."""
    filed_by = submission.bead.filed_by_id
    return (
        submission.repository.review_by_other
        and filed_by is not None
        and filed_by == getattr(user, "pk", None)
    )


def review(submission: Submission, user: Any, approve: bool, reason: str = "") -> bool:
    """A person's decision on a submission awaiting review; False if it was not
    waiting. Raises ReviewRefused when the repository wants someone other than
    the bead's filer to review it and `user` filed it."""
    if reviews_own_bead(submission, user):
        raise ReviewRefused(
            f"You filed {submission.bead_id}, and {submission.repository.name} wants its "
            "work reviewed by another person: ask another operator to approve or reject it."
        )
    with transaction.atomic():
        if approve:
            if not submission.approve(user):
                return False
            queues.enqueue_drain_on_commit(submission.repository)
            return True
        if not submission.reject(user, reason or f"Rejected by {user}."):
            return False
        submission.session.fail_submission(submission.reason)
        send_back(submission.bead, submission.reason)
        feedback.settle(submission.session, landed=False)
        capture.from_rejection(submission.session, reason, str(user))
        queues.enqueue_dispatch()
    return True


def request_revert(bead: Bead) -> bool:
    """Ask the lead to revert a closed bead's commit; False if there is none."""
    if bead.status != Bead.Status.CLOSED or not bead.commit_sha:
        return False
    queues.enqueue_revert(bead.repository, bead.pk)
    return True


def reverted(bead: Bead, revert_sha: str) -> bool:
    """The lead landed the revert: the bead is open again and may be claimed."""
    with transaction.atomic():
        if not bead.revert_landed(revert_sha):
            return False
        queues.enqueue_dispatch()
    return True
