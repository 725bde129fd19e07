"""Drive the demo to the end in this process: `manage.py demo --run`.

Each round claims a few ready demo beads from the hook for the demo agents,
runs their sessions one after another (agents.jobs.runner.run_session: a private
clone, the demo agent carrying out the edits in the description, the patch
handed in), then lands what was submitted by running each demo repository's
lead queue in burst mode, here, and closes the epics whose children have all
landed. It stops when no demo bead is open, in progress or in review, or
when a round changes nothing; then it says what is stuck and why.

demo-infra stays in human review, as seeded: the run approves each of its
submissions as the demo (the user `corral-demo`, who cannot log in) and says
so, then its lead lands it. The lead runs the check again after an approval,
as it does for a person's, so demo-infra's check runs twice per submission.

Nothing here is a shortcut: the claims, sessions, gates and commits are
Corral's own, as its workers would run them. It needs Redis for the lead
queues and locks, and refuses to start while Corral's workers (`manage.py
up`) listen on this Redis, since they would take the same work.
"""

import signal
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from types import FrameType

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet
from rq import SimpleWorker, Worker

from agents import queues
from agents.jobs import lead, reconcile
from agents.jobs.runner import run_session
from agents.models import Agent, Session, Submission
from agents.moves import lifecycle, outcomes
from beads import hook
from beads.models import Bead, Dependency
from corral import demo
from knowledge import curate
from knowledge.models import Learning
from workspace import gitops
from workspace.models import Repository

CLAIMS_PER_ROUND = 4  # sessions per round, the demo agents taking turns
UNFINISHED = [Bead.Status.OPEN, Bead.Status.IN_PROGRESS, Bead.Status.REVIEW]
REVIEWER = "corral-demo"
REFUSED = [Submission.Status.REJECTED, Submission.Status.CONFLICT, Submission.Status.FAILED]


class RunError(Exception):
    """The run cannot start; the message is one line fit to show a person."""


@dataclass
class Outcome:
    landed: list[Bead] = field(default_factory=list)  # in the order they closed
    epics: list[Bead] = field(default_factory=list)  # closed because their children landed
    stuck: list[tuple[Bead, str]] = field(default_factory=list)  # (bead, why): did not land
    rounds: int = 0
    seconds: float = 0.0
    nothing_to_do: bool = False

    @property
    def ok(self) -> bool:
        return not self.stuck


def redis_problem(url: str) -> str | None:
    """Why Redis at `url` does not answer, in one line; None when it does."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except (redis.RedisError, OSError) as e:
        return (str(e).splitlines() or [type(e).__name__])[0]
    finally:
        client.close()
    return None


def check_redis() -> None:
    problem = redis_problem(settings.REDIS_URL)
    if problem:
        raise RunError(
            f"demo --run needs Redis, and REDIS_URL={settings.REDIS_URL} does not answer "
            f"({problem}): start Redis and set REDIS_URL, or use `manage.py up`, which starts "
            "one and runs the demo agents itself"
        )


def check_no_workers(repos: Collection[Repository]) -> None:
    """Refuse while Corral's own workers would take the same sessions and submissions."""
    ours = {queues.SESSIONS} | {queues.lead_queue_name(repo) for repo in repos}
    busy = sorted(
        worker.name
        for worker in Worker.all(connection=queues.connection())
        if ours & set(worker.queue_names())
    )
    if busy:
        raise RunError(
            f"Corral's workers are running on this Redis ({', '.join(busy[:3])}), e.g. under "
            "`manage.py up`: they land the demo themselves; stop them to drive it with demo --run"
        )


class Run:
    def __init__(self, say: Callable[[str], object]) -> None:
        self.say = say
        self.repos = list(Repository.objects.filter(slug__in=demo.demo_slugs()).order_by("pk"))
        self.repo_ids = [repo.pk for repo in self.repos]
        self.agents = list(
            Agent.objects.filter(name__in=demo.AGENTS, preset="demo", active=True).order_by("name")
        )
        self.reviewer: AbstractBaseUser | None = None

    def beads(self) -> QuerySet[Bead]:
        return Bead.objects.filter(repository__in=self.repo_ids)

    def execute(self) -> Outcome:
        """Drive the demo until it is done or stuck; returns an Outcome."""
        started = time.monotonic()
        outcome = Outcome()
        if not self.repos:
            raise RunError("there is no demo workspace to run; `manage.py demo` seeds one")
        if not self.agents:
            raise RunError(
                f"the demo agents ({', '.join(demo.AGENTS)}, preset demo) are missing or inactive"
            )
        check_no_workers(self.repos)
        if not self.unfinished().exists():
            outcome.nothing_to_do = True
            outcome.stuck = self.stuck()
            return outcome
        self.commits_before = {repo.pk: commit_count(repo) for repo in self.repos}
        todo = self.unfinished().count()
        self.say(
            f"Driving the demo: {todo} open beads in "
            f"{', '.join(repo.slug for repo in self.repos)} with "
            f"{' and '.join(agent.name for agent in self.agents)}."
        )
        for repo in self.repos:
            lead.requeue_waiting(repo)  # submissions a stopped lead left behind
        self.expire_lost_sessions()
        leftovers = list(  # claimed for the demo agents, never run (e.g. by dispatch)
            Session.objects.filter(
                bead__repository__in=self.repo_ids,
                agent__in=self.agents,
                status__in=[Session.Status.CLAIMED, Session.Status.QUEUED],
            ).select_related("agent", "bead")
        )
        while True:
            outcome.rounds += 1
            before = self.state()
            sessions = leftovers + self.claim()
            leftovers = []
            if sessions:
                taken = ", ".join(f"{s.agent.name} takes {s.bead_id}" for s in sessions)
                self.say(f"round {outcome.rounds}: {taken}")
            for session in sessions:
                self.run_session(session)
            epics_closed = set(self.closed_epic_ids())
            self.land(outcome)
            self.approve_learnings()
            self.report_epics(outcome, epics_closed)
            if not self.unfinished().exists() or self.state() == before:
                break
        outcome.stuck = self.stuck()
        outcome.seconds = time.monotonic() - started
        return outcome

    def expire_lost_sessions(self) -> None:
        """Hand back the beads of sessions whose lease expired, e.g. a run cut short:
        the product's own reconcile(), as the ticker runs it under `manage.py up`."""
        lost = reconcile.reconcile()["lost"]
        if lost:
            self.say(f"  {lost} bead(s) went back to the hook: their sessions were lost")

    def closed_epic_ids(self) -> QuerySet[Bead, str]:
        epics = self.beads().filter(issue_type=Bead.Type.EPIC, status=Bead.Status.CLOSED)
        return epics.values_list("pk", flat=True)

    def unfinished(self) -> QuerySet[Bead]:
        return self.beads().filter(status__in=UNFINISHED)

    def state(self) -> tuple[list[tuple[str, str, int]], list[tuple[int, str]]]:
        """What a round can change: every demo bead's and submission's status."""
        beads = self.beads().values_list("pk", "status", "attempts")
        subs = Submission.objects.filter(repository__in=self.repo_ids).values_list("pk", "status")
        return sorted(beads), sorted(subs)

    def claim(self) -> list[Session]:
        sessions = []
        for n in range(CLAIMS_PER_ROUND):
            agent = self.agents[n % len(self.agents)]
            try:
                session = lifecycle.claim(agent, repositories=self.repo_ids)
            except hook.NothingReady:
                break
            sessions.append(session)
        return sessions

    def run_session(self, session: Session) -> None:
        session.queue()
        try:
            run_session(session.pk)
        except KeyboardInterrupt:
            # Its agent is stopped already; hand the bead back now, not when the lease ends.
            session.refresh_from_db()
            lifecycle.cancel(session, "demo --run, interrupted")
            raise
        session.refresh_from_db()
        if session.status != Session.Status.SUBMITTED:
            error = session.error or session.get_status_display()
            said = last_log_line(session)
            said = f" Its log ends: {said}" if said else ""
            self.say(f"  {session.bead_id} came back from {session.agent.name}: {error}{said}")

    def land(self, outcome: Outcome) -> None:
        """Run the lead queues; approve what waits for review; report what landed."""
        already = set(self.beads().filter(status=Bead.Status.CLOSED).values_list("pk", flat=True))
        in_flight = list(
            Submission.objects.filter(
                repository__in=self.repo_ids, status__in=Submission.UNFINISHED
            ).values_list("pk", flat=True)
        )
        for repo in self.repos:
            run_lead(repo)
        waiting = Submission.objects.filter(
            repository__in=self.repo_ids, status=Submission.Status.AWAITING_REVIEW
        ).select_related("bead", "repository")
        approved = set()
        for sub in waiting:
            self.say(
                f"  approving {sub.repository.slug} submission {sub.pk} for {sub.bead_id} "
                f'"{sub.bead.title}" as the demo ({sub.repository.slug} is in human review)'
            )
            if outcomes.review(sub, self.demo_reviewer(), approve=True):
                approved.add(sub.repository_id)
        for repo in self.repos:
            if repo.pk in approved:
                run_lead(repo)
        for sub in Submission.objects.filter(pk__in=in_flight, status__in=REFUSED):
            self.say(f"  {sub.bead_id} was refused by the lead: {first_line(sub.reason)}")
        closed = (
            self.beads()
            .filter(status=Bead.Status.CLOSED, close_reason="committed")
            .exclude(pk__in=already)
            .select_related("repository")
            .order_by("closed_at")
        )
        for bead in closed:
            outcome.landed.append(bead)
            self.say(
                f'  landed {bead.id} "{bead.title}" as {bead.commit_sha[:10]} '
                f"in {bead.repository.slug}"
            )

    def approve_learnings(self) -> None:
        """Approve, as the demo, the candidate learnings the demo's refusals taught, so
        the retry and the beads after it are given them (the demo's trap, demo/README.md).
        Outside the demo a person approves candidates on the knowledge page."""
        captured = Learning.objects.filter(
            status=Learning.Status.CANDIDATE, source_bead__repository__in=self.repo_ids
        ).select_related("source_bead")
        for learning in captured.order_by("pk"):
            if curate.approve(learning).approved:
                self.say(
                    f'  approving learning #{learning.pk} "{learning.title}" as the demo: '
                    f"{learning.source_bead_id}'s refusal taught it; from now on it is injected"
                )

    def demo_reviewer(self) -> AbstractBaseUser:
        """The user the run approves as: named for the demo, without a usable password."""
        if self.reviewer is None:
            User = get_user_model()
            self.reviewer = User.objects.filter(**{User.USERNAME_FIELD: REVIEWER}).first()
            if self.reviewer is None:
                self.reviewer = User.objects.create_user(REVIEWER, password=None, is_active=False)
        return self.reviewer

    def report_epics(self, outcome: Outcome, before: Collection[str]) -> None:
        """Say which epics closed this round: the lead closes an epic when its last
        child lands (agents.moves.outcomes.land), as it does outside the demo."""
        epics = self.beads().filter(issue_type=Bead.Type.EPIC, status=Bead.Status.CLOSED)
        for epic in epics.exclude(pk__in=before):
            outcome.epics.append(epic)
            children = len(children_of(epic))
            self.say(f'  closed epic {epic.id} "{epic.title}": its {children} children have landed')

    def stuck(self) -> list[tuple[Bead, str]]:
        """(bead, why) for each demo bead still unfinished, or blocked by failed attempts."""
        beads = self.beads().select_related("repository").order_by("repository", "priority")
        stuck = []
        for bead in beads:
            if bead.status in UNFINISHED:
                stuck.append((bead, self.why(bead)))
            elif bead.status == Bead.Status.BLOCKED and bead.attempts:
                stuck.append((bead, bead.last_failure or "blocked after failed attempts"))
        return stuck

    def why(self, bead: Bead) -> str:
        last = f" Last failure: {bead.last_failure}" if bead.last_failure else ""
        if bead.status == Bead.Status.IN_PROGRESS:
            session = bead.sessions.filter(status__in=Session.LIVE).select_related("agent").first()
            if session is None:
                return f"in progress, but no live session holds it.{last}"
            lease = session.lease_expires_at
            until = f", its lease runs until {lease:%H:%M:%S}" if lease else ""
            return (
                f"in progress: session {session.pk} of {session.agent} is {session.status}{until}."
            )
        if bead.status == Bead.Status.REVIEW:
            sub = bead.submissions.order_by("-queued_at").first()
            state = f"its submission {sub.pk} is {sub.get_status_display()}" if sub else ""
            return f"in review: {state or 'no submission'}.{last}"
        if bead.issue_type == Bead.Type.EPIC:
            children = children_of(bead)
            open_ids = [c.id for c in children if c.status != Bead.Status.CLOSED]
            if not children:
                return "an epic with no children: close it by hand."
            return f"an epic waiting for its children {', '.join(open_ids)}.{last}"
        return f"open: {hook.why_not_ready(bead)}.{last}"

    def summary(self, outcome: Outcome) -> list[str]:
        beads = list(self.beads().order_by("repository", "priority"))
        closed = sum(b.status == Bead.Status.CLOSED for b in beads)
        stuck_ids = {bead.pk for bead, _ in outcome.stuck}
        left = [
            f'{b.id} "{b.title}" ({b.get_status_display().lower()})'
            for b in beads
            if b.status != Bead.Status.CLOSED and b.pk not in stuck_ids
        ]
        lines = []
        if outcome.nothing_to_do:
            done = "Nothing more can run" if outcome.stuck else "Everything is done"
            lines.append(
                f"{done}: no demo bead is open, in progress or in review; "
                f"{closed} of {len(beads)} demo beads are closed."
            )
        else:
            epics = f" and closed {len(outcome.epics)} epic(s)" if outcome.epics else ""
            lines.append(
                f"Landed {len(outcome.landed)} bead(s){epics} in {outcome.rounds} round(s), "
                f"{outcome.seconds:.1f} s: {closed} of {len(beads)} demo beads are closed."
            )
            per_repo = ", ".join(
                f"{repo.slug} +{commit_count(repo) - self.commits_before[repo.pk]} "
                f"(now {commit_count(repo)})"
                for repo in self.repos
            )
            lines.append(f"Commits: {per_repo}.")
        if left:
            lines.append("Left as they are (deferred or blocked by a person): " + "; ".join(left))
        for bead, why in outcome.stuck:
            lines.append(f'Stuck: {bead.id} "{bead.title}" in {bead.repository.slug}: {why}')
        return lines


def children_of(epic: Bead) -> list[Bead]:
    return list(
        Bead.objects.filter(
            dependencies__depends_on=epic, dependencies__type=Dependency.Type.PARENT_CHILD
        ).distinct()
    )


class LeadBurst(SimpleWorker):
    """A lead worker in this process. Ctrl-C lets the job in hand finish (a lead job
    is safe to stop only between jobs), then stops the whole run, not just the burst."""

    interrupted = False

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True
        super().request_stop(signum, frame)


def run_lead(repo: Repository) -> None:
    """Run the repository's lead queue here until it is empty, as its lead worker would."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    worker = LeadBurst([queues.lead_queue(repo)], connection=queues.connection())
    try:
        worker.work(burst=True, logging_level="WARNING")
    finally:
        for sig, handler in handlers.items():  # the worker installs its own
            signal.signal(sig, handler)
    if worker.interrupted:
        raise KeyboardInterrupt


def commit_count(repo: Repository) -> int:
    out = gitops.git_run(repo.canonical_path, "rev-list", "--count", f"refs/heads/{repo.branch}")
    return int(out)


def last_log_line(session: Session) -> str:
    text = "".join(session.log_chunks.order_by("seq").values_list("text", flat=True))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]
