"""The lead: one per repository, it gates each submission and lands it as one commit.

Jobs of every repository run on the one `lead` queue, served by a fixed number
of lead workers (`manage.py lead`); whatever runs them, a repository's commit
step holds its Redis lock, so repositories land in parallel and each has one
writer at a time. Every job re-reads its row and
is idempotent: a lead killed between `update-ref` and saving its row finds
its commit by the `Session:` trailer instead of committing twice. Trailers are
Corral's alone: an agent's summary goes into the message with every line git
could read as a trailer taken out, and Corral's own block is the last paragraph."""

import logging
import time
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections
from django.db.models import QuerySet
from django.utils import timezone

from agents import queues
from agents.jobs import gates, salvage, upstream
from agents.models import ChangeSetMember, GateResult, Submission
from agents.moves import changesets, notifications, outcomes
from agents.reports import reviews
from workspace import gitops
from workspace.gitops import TreeChange
from workspace.models import Repository
from workspace.scrub import scrub

log = logging.getLogger(__name__)
CAS_TRIES = 3  # the branch moved under us (someone wrote to it outside the lead)
RELATED = ("repository", "session__agent", "bead")
FOREIGN_TRAILERS = "the commit message would carry trailers that are not Corral's"
TRAIN = 20  # members of a train at most


# A drain lands trains for this long before it queues its follow-up behind the
# other repositories' jobs: a busy repository does not hold a lead worker
# forever, and a job's bookkeeping is paid once a second, not once a train.
DRAIN_S = 1.0


def drain(repository_id: int) -> None:
    """Land the repository's waiting submissions, oldest first, until none wait.

    One job per repository rather than one per submission: the lock is taken
    once and the queue's bookkeeping paid once, however many are waiting.
    A drain that finds the lock held by a live holder leaves: the holder looks
    for waiting work again after it lets go (the loop below, and revert()).
    It waits longer than the lock lives, so a holder that died is outwaited.
    """
    close_old_connections()  # the lead worker lives long: drop a connection gone bad
    repo = Repository.objects.filter(pk=repository_id).first()
    if repo is None:
        return
    tried: set[int] = set()
    while next_waiting(repo, exclude=tried) is not None:
        with queues.repo_lock(repo, wait_s=settings.LEAD_LOCK_SECONDS + 1) as held:
            if not held:
                return
            deadline, over = time.monotonic() + DRAIN_S, False
            # One query per train: board_train() re-checks each row.
            while not over and (train := list(waiting(repo, tried)[: train_length(repo)])):
                if not upstream.follow(repo):  # its history was rewritten: nothing lands
                    return
                tried.update(sub.pk for sub in train)
                land_train(repo, train)
                upstream.publish(repo)
                over = time.monotonic() >= deadline
        if over and next_waiting(repo, exclude=tried) is not None:
            queues.enqueue_drain(repo)  # the rest after what other repositories queued
            return


def train_length(repo: Repository) -> int:
    # With a check command, each member's check would hold the branch for the
    # whole train, and a lead dying would lose them all: one at a time then.
    # Through pull requests, each bead is a request of its own.
    return 1 if repo.check_command or repo.lands_via_pr else TRAIN


def waiting(repo: Repository, exclude: Collection[int] = ()) -> QuerySet[Submission]:
    """The repository's submissions for the lead, oldest first."""
    rows = Submission.objects.filter(repository=repo, status__in=Submission.FOR_LEAD)
    return rows.exclude(pk__in=exclude).select_related(*RELATED).order_by("queued_at", "pk")


def next_waiting(repo: Repository, exclude: Collection[int] = ()) -> Submission | None:
    return waiting(repo, exclude).first()


def land_train(repo: Repository, subs: Sequence[Submission]) -> None:
    """With the repository's lock held: gate each submission onto the commit of
    the one before it and commit it there (still one commit per bead), then
    move the branch once for all of them by compare-and-swap: a train, as merge
    queues batch. A member refused or left for a person drops out and the
    others go on. If the branch moved meanwhile, nothing of the train has
    landed and it is built again on the new head."""
    if repo.lands_via_pr:
        return propose_train(repo, subs)
    landings = board_train(subs, timezone.now())
    # What git writes meanwhile stays out of the canonical store: each landing
    # that passed its gates moves its own objects there, before the branch moves.
    with gitops.quarantined(repo.canonical_path):
        # The upstream refusing the train's push (someone pushed) is a move too.
        for _ in range(CAS_TRIES + upstream.PUSH_TRIES):
            try:
                head = gitops.head_sha(repo.canonical_path, repo.branch)
                aboard = build(landings, head)
                while foreign := foreign_trailers(repo, aboard):  # rare: built again without them
                    for landing in foreign:
                        landing.drop(f"The lead failed: {FOREIGN_TRAILERS}")
                    landings = [landing for landing in landings if landing not in foreign]
                    aboard = build(landings, head)
                pushed = upstream.push_train(repo, aboard[-1].sha, head) if aboard else ""
                if pushed == upstream.AGAIN:
                    landings = aboard  # the upstream moved: built again on its new head
                    continue
                moved = bool(aboard) and gitops.update_branch(
                    repo.canonical_path, repo.branch, aboard[-1].sha, head
                )
                if not moved and pushed == upstream.PUSHED:  # the upstream holds the train:
                    moved = upstream.follow(repo) or True  # the branch follows it there
            except Exception as e:  # the branch is gone, git fails: nothing of the train landed
                for landing in landings:
                    if landing.submission.status == Submission.Status.CHECKING:  # not done with
                        landing.failed(e)
                return
            if not aboard:
                return
            if moved:
                return depart(aboard)
            landings = aboard
    for landing in landings:
        landing.refuse(Submission.Status.FAILED, "The branch kept moving during the commit.")


def propose_train(repo: Repository, subs: Sequence[Submission]) -> None:
    """Pull-request mode: gate each submission onto the branch's head and commit
    it there as in a landing, but push the commit to `corral/<bead>` on the
    upstream instead of moving the branch; the submission is `proposed` and the
    forge's request decides (agents/jobs/forge.py). Corral's branch moves only
    when it follows the upstream after a merge."""
    landings = board_train(subs, timezone.now())
    with gitops.quarantined(repo.canonical_path):
        for landing in landings:
            try:
                head = gitops.head_sha(repo.canonical_path, repo.branch)
                if not (sha := landing.board(head)):
                    continue
                if foreign_trailers(repo, [landing]):
                    landing.drop(f"The lead failed: {FOREIGN_TRAILERS}")
                    continue
                branch = gitops.proposal_branch(landing.bead.id)
                gitops.push_proposal(repo.canonical_path, repo.upstream, sha, branch)
            except Exception as e:  # the upstream refused the push, git failed
                landing.failed(e)
                continue
            outcomes.propose(landing.submission, sha, landing.results)


def build(landings: Sequence["Landing"], head: str) -> list["Landing"]:
    """Each landing's commit on the one before it, from `head`; those that made one."""
    tip, aboard = head, []
    for landing in landings:
        if sha := landing.board(tip):
            tip = sha
            aboard.append(landing)
    return aboard


def foreign_trailers(repo: Repository, aboard: Sequence["Landing"]) -> list["Landing"]:
    """The landings whose commit message git reads trailers in that are not
    Corral's (an agent's summary smuggling one in): one git process for all."""
    found = gitops.trailers_of_commits(repo.canonical_path, [landing.sha for landing in aboard])
    return [landing for landing in aboard if found.get(landing.sha) != landing.expected_trailers()]


def board_train(subs: Sequence[Submission], started: datetime) -> list["Landing"]:
    """The landings of those of `subs` that are ours to gate, with a fixed
    number of queries for the train, not a few per member."""
    # One conditional UPDATE decides for all: ours to check, or resumed after
    # a lead died mid-job (still `checking`), or done with meanwhile.
    checking = {sub.pk for sub in Submission.move_many("start_checking", subs, started_at=started)}
    members = changesets.memberships(sub.bead_id for sub in subs)
    agents = {sub.session.agent_id for sub in subs}
    rates = reviews.refusal_rates(subs[0].repository, agents) if subs else {}
    return [
        landing
        for sub in subs
        if (
            landing := boarding(
                sub,
                sub.pk not in checking,
                members.get(sub.bead_id),
                rates.get(sub.session.agent_id),
            )
        )
    ]


def boarding(
    sub: Submission,
    resumed: bool,
    member: ChangeSetMember | None,
    history: tuple[int, int] | None = None,
) -> "Landing | None":
    """The landing of one member of a train (`resumed`: it was `checking`
    already, or done with), else None; `member`: its place in a change set;
    `history`: its agent's (refused, finished) here."""
    if resumed and sub.status != sub.Status.CHECKING:
        return None  # finished, or waiting for a person, meanwhile
    landing = Landing(
        sub, stale_results=resumed or sub.reviewed_at is not None, member=member, history=history
    )
    try:
        if resumed and (sha := landing.already_committed()):
            landing.committed(sha)  # the lead before died between update-ref and its rows
            return None
    except Exception as e:
        landing.failed(e)
        return None
    return landing


def depart(aboard: Sequence["Landing"]) -> None:
    """The branch holds the train: its gate results and rows, in one transaction."""
    results = [r for landing in aboard for r in landing.results]
    outcomes.land_many([(landing.submission, landing.sha) for landing in aboard], results)
    salvage.prune([landing.submission.bead_id for landing in aboard])  # their work has landed


class Landing:
    """One run of the gates and the commit for one submission."""

    def __init__(
        self,
        submission: Submission,
        stale_results: bool = False,
        member: ChangeSetMember | None = None,
        history: tuple[int, int] | None = None,
    ) -> None:
        self.submission = submission
        self.member = member  # its place in an open change set (board_train looked)
        self.history = history or (0, 0)  # its agent's (refused, finished) here
        self.session = submission.session
        self.bead = submission.bead
        self.agent = self.session.agent
        self.repository = submission.repository
        self.path = self.repository.canonical_path
        self.stale_results = stale_results  # an earlier run's are in the database
        self.head = ""  # what the patch goes onto: the branch, or the train's last commit
        self.tree: str | None = None  # the apply gate's result
        self.written: list[TreeChange] = []  # and what git would commit with it
        self.new_trees: list[str] = []  # and the trees it made
        self.files: list[str] = []
        self.results: list[GateResult] = []  # not yet written
        self.sha = ""

    def board(self, parent: str) -> str | None:
        """Gate the patch onto `parent` and commit it there; the commit, or None
        when it was refused or waits for a person."""
        self.head = parent
        try:
            if self.stale_results:  # an earlier run's gates: this run records its own
                GateResult.objects.filter(submission=self.submission).delete()
            self.stale_results = self.repository.check_command != ""  # written before a check
            if not self.pass_gates():
                return None  # what git wrote for it stays in the quarantine
            assert self.tree is not None  # the apply gate, passed, set it
            if self.member:
                self.save_results()
                self.move_out_of_quarantine()  # the change set lands its tree later
                changesets.hold(self.submission, parent, self.tree, self.member)
                return None  # a change set member: it lands with its siblings
            message = self.message()
            self.sha = gitops.write_commit(
                self.path, self.tree, parent, message, author=self.author()
            )
            self.move_out_of_quarantine()
        except Exception as e:
            self.failed(e)
            return None
        gitops.reused_index(str(self.path)).committed(self.tree, self.sha)
        return self.sha

    def move_out_of_quarantine(self) -> None:
        """Its objects (the tree git built, its new trees and blobs, its commit) go
        to the canonical store: it passed every gate."""
        if quarantine := gitops.quarantine_of(self.path):
            blobs = [c.new_id for c in self.written if c.kind in gates.BLOB_KINDS]
            commit = [self.sha] if self.sha else []
            quarantine.migrate([str(self.tree), *self.new_trees, *blobs, *commit])

    def pass_gates(self) -> bool:
        """Run every gate; True when all passed. Results are written in one go:
        with the refusal, before a check command runs (so the page shows
        progress), or with the train's rows (depart)."""
        self.results = []
        for name, gate in gates.GATES:
            if name == "check" and self.repository.check_command:
                self.save_results()
            started = time.monotonic()
            verdict = gate(self)
            self.results.append(
                GateResult(
                    submission=self.submission,
                    gate=name,
                    passed=verdict.passed,
                    detail=scrub(verdict.detail),  # a check prints what the agent's code does
                    duration_ms=round((time.monotonic() - started) * 1000),
                )
            )
            if verdict.passed is None:
                self.save_results()
                if self.submission.await_review():
                    notifications.tell_review_waiting(self.submission)
                return False
            if not verdict.passed:
                self.save_results()
                self.refuse(verdict.refusal, f"{name} gate: {verdict.detail}")
                return False
        return True

    def save_results(self) -> None:
        GateResult.objects.bulk_create(self.results)
        self.results = []

    def failed(self, e: Exception) -> None:
        log.exception("lead failed on submission %s", self.submission.pk)
        self.drop(f"The lead failed: {e}")

    def drop(self, reason: str) -> None:
        self.save_results()
        self.refuse(Submission.Status.FAILED, reason)

    def already_committed(self) -> str | None:
        return gitops.find_commit_with_trailer(
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
        """Title, the agent's summary without trailers, Corral's trailers (the
        train checks how git reads them, for all its commits at once)."""
        summary = self.session.summary.strip() or "(no summary)"
        title = f"{self.bead.title} ({self.bead.id})"
        return gitops.commit_message(title, summary, self.trailers())

    def expected_trailers(self) -> list[tuple[str, str]]:
        return [(key, gitops.one_line(value)) for key, value in self.trailers()]

    def author(self) -> tuple[str, str]:
        return (self.agent.name, f"{self.agent.name}@agents.corral.invalid")

    def committed(self, sha: str) -> None:
        outcomes.land(self.submission, sha)

    def refuse(self, status: str, reason: str) -> None:
        if outcomes.refuse(self.submission, status, reason):
            changesets.member_refused(self.submission, reason)


def checked_message(path: Path, title: str, body: str, trailers: list[tuple[str, str]]) -> str:
    """The commit message; GitError if git would read any trailer but `trailers`."""
    message = gitops.commit_message(title, body, trailers)
    expected = [(key, gitops.one_line(value)) for key, value in trailers]
    if gitops.trailers_of(path, message) != expected:
        raise gitops.GitError(FOREIGN_TRAILERS)
    return message


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
