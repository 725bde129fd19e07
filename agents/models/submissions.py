"""Submissions (a session's patch on its way to the lead) and their gate results."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from agents.models.sessions import Session
from beads.models import Bead
from workspace.models import Repository
from workspace.states import Transitions, move


class Risk(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class AlreadyApproved(Exception):
    """This person's approval is in already: the rule wants another person."""


class Submission(Transitions, models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        CHECKING = "checking"
        AWAITING_REVIEW = "awaiting_review", "awaiting review"
        APPROVED = "approved"
        HELD = "held"  # passed its own gates; waits for its change set's siblings
        PROPOSED = "proposed"  # pull-request mode: its commit waits on the forge for a merge
        COMMITTED = "committed"
        REJECTED = "rejected"
        # A person sent it back with comments on its lines (ReviewComment): the
        # bead's next session is given them.
        CHANGES_REQUESTED = "changes_requested", "changes requested"
        CONFLICT = "conflict"
        FAILED = "failed"

    # Not finished yet (the lead page's queue), and the part of those the lead
    # takes up by itself (a submission awaiting review waits for a person).
    UNFINISHED = [
        Status.QUEUED,
        Status.CHECKING,
        Status.AWAITING_REVIEW,
        Status.APPROVED,
        Status.HELD,
        Status.PROPOSED,
    ]
    FOR_LEAD = [Status.QUEUED, Status.CHECKING, Status.APPROVED]
    REFUSALS: dict[str, str] = {
        Status.REJECTED: "reject",
        Status.CONFLICT: "conflict",
        Status.FAILED: "fail",
    }
    MOVES = {
        "start_checking": move([Status.QUEUED, Status.APPROVED], Status.CHECKING),
        "await_review": move(Status.CHECKING, Status.AWAITING_REVIEW),
        "approve": move(Status.AWAITING_REVIEW, Status.APPROVED),
        "commit": move(
            [Status.CHECKING, Status.APPROVED, Status.HELD, Status.PROPOSED], Status.COMMITTED
        ),
        "reject_by_person": move(Status.AWAITING_REVIEW, Status.REJECTED),
        "request_changes": move(Status.AWAITING_REVIEW, Status.CHANGES_REQUESTED),
        # The lead ends it without a commit (a held one: its change set was refused).
        "reject": move([Status.QUEUED, Status.CHECKING, Status.HELD], Status.REJECTED),
        # Pull-request mode: the commit is pushed to `corral/<bead>` and a request opened;
        # closed without a merge (or its forge check failed), the bead goes back.
        "propose": move(Status.CHECKING, Status.PROPOSED),
        "withdraw": move(Status.PROPOSED, Status.REJECTED),
        "conflict": move([Status.QUEUED, Status.CHECKING], Status.CONFLICT),
        "fail": move([Status.QUEUED, Status.CHECKING], Status.FAILED),
        # A change set member: held for its siblings, or gated again on a moved head.
        "hold": move(Status.CHECKING, Status.HELD),
        "requeue": move(Status.HELD, Status.QUEUED),
        # its commit, not pushed yet, no longer applied on the upstream's new head
        "unland": move(Status.COMMITTED, Status.CONFLICT),
    }

    session = models.OneToOneField(Session, models.CASCADE, related_name="submission")
    repository = models.ForeignKey(Repository, models.CASCADE, related_name="submissions")
    bead = models.ForeignKey(Bead, models.CASCADE, related_name="submissions")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    commit_sha = models.CharField(max_length=40, blank=True)
    reason = models.TextField(blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # queued_at to finished_at, written by the commit's own UPDATE (/metrics' histogram).
    landing_time = models.DurationField(null=True, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    push_error = models.TextField(blank=True)
    # Pull-request mode: the commit proposed, its request on the forge, what the
    # forge last said of it (a merge it refused, checks still running).
    proposal_sha = models.CharField(max_length=40, blank=True)
    proposal_number = models.PositiveIntegerField(null=True, blank=True)
    proposal_url = models.CharField(max_length=500, blank=True)
    proposal_note = models.TextField(blank=True)
    # What review it needs, decided by the lead's review gate from the rules of
    # the branch it goes onto (workspace/reviewrules.py) and its risk.
    lines = models.PositiveIntegerField(default=0, help_text="lines added and removed")
    risk = models.CharField(max_length=10, choices=Risk.choices, blank=True)
    people_needed = models.PositiveSmallIntegerField(default=0)
    approvals = models.PositiveSmallIntegerField(default=0)
    review_why = models.JSONField(default=list, blank=True)  # why it needs a person, and its risk
    review_owners = models.JSONField(default=list, blank=True)  # users or groups asked first
    review_requested_at = models.DateTimeField(null=True, blank=True)  # began waiting for people
    first_review_at = models.DateTimeField(null=True, blank=True)  # a person's first decision

    class Meta:
        ordering = ["queued_at"]
        indexes = [
            models.Index(fields=["repository", "status", "queued_at"]),
            # Problems count refusals per bead and find waiting work off it.
            models.Index(fields=["status", "bead"]),
            # /metrics reads the landed submissions' times from it without the rows.
            models.Index(fields=["status", "finished_at", "queued_at"]),
            models.Index(fields=["landing_time"], name="submission_landing_time"),
            # The lead queue's latest finished submissions, read in order.
            models.Index(fields=["repository", "finished_at", "id"]),
            # The review figures read the decisions of a window of days.
            models.Index(fields=["first_review_at"]),
        ]
        permissions = [("review_submission", "Can approve or reject a submission")]

    def __str__(self) -> str:
        return f"submission for {self.bead_id} ({self.get_status_display()})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.fill_durations()
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("submission", args=[self.pk])

    def start_checking(self, at: datetime | None = None) -> bool:
        """`at`: when its landing started (a train's members share it)."""
        return self.move("start_checking", started_at=at or timezone.now())

    REVIEW_NEED = ("lines", "risk", "people_needed", "review_why", "review_owners")

    def review_need(self) -> dict[str, Any]:
        """What the review gate decided of it (set on this object, not yet
        written): it is written with the move that follows, so that a train
        writes it for all its members in one UPDATE."""
        return {name: getattr(self, name) for name in self.REVIEW_NEED}

    def await_review(self) -> bool:
        return self.move("await_review", review_requested_at=timezone.now(), **self.review_need())

    def approve(self, user: Any) -> bool:
        """One person's approval, recorded (an `Approval`); the one that makes up
        the people needed moves it to approved, in the same conditional UPDATE
        that counts it (its SET reads the count as it was, so two approving at
        once are counted one after the other). False if it was not waiting;
        AlreadyApproved if `user` approved it already."""
        with transaction.atomic():
            try:
                with transaction.atomic():
                    Approval.objects.create(submission=self, person=user)
            except IntegrityError:
                self.refresh_from_db(fields=["status"])
                if self.status != self.Status.AWAITING_REVIEW:
                    return False  # decided meanwhile: that, not the repeat, is the news
                raise AlreadyApproved from None
            sources, target = self.MOVES["approve"]
            now = timezone.now()
            last = Q(approvals__gte=F("people_needed") - 1)  # the count before this one

            def if_last(name: str, value: Any) -> Case:
                field = Submission._meta.get_field(name)
                assert isinstance(field, models.Field)  # a column, not a relation's far side
                return Case(When(last, then=Value(value)), default=F(name), output_field=field)

            won = Submission.objects.filter(pk=self.pk, status__in=sources).update(
                approvals=F("approvals") + 1,
                status=if_last("status", target),
                reviewed_by=if_last("reviewed_by", getattr(user, "pk", None)),
                reviewed_at=if_last("reviewed_at", now),
                first_review_at=Coalesce(F("first_review_at"), Value(now)),
            )
            if not won:
                transaction.set_rollback(True)  # its Approval row goes too
        self.refresh_from_db(
            fields=["status", "approvals", "reviewed_by", "reviewed_at", "first_review_at"]
        )
        return bool(won)

    def approvers(self) -> list[Any]:
        return [a.person for a in self.approval_set.select_related("person")]

    def fill_durations(self) -> None:
        """A committed row written whole gets the duration its commit would have written."""
        if self.landing_time is None and self.status == self.Status.COMMITTED and self.finished_at:
            self.landing_time = self.finished_at - self.queued_at

    def commit(self, sha: str) -> bool:
        now = timezone.now()
        return self.move(
            "commit", commit_sha=sha, finished_at=now, landing_time=now - self.queued_at
        )

    @classmethod
    def commit_all(
        cls, subs: Sequence["Submission"], shas: Mapping[int, str]
    ) -> list["Submission"]:
        """commit() for many submissions at once (a lead's train); `shas`: {pk: its
        commit}. The submissions that moved."""
        now = timezone.now()
        # Each row's queued_at as read: a requeue moves it, and then its status,
        # so a row read before one cannot win the commit's conditional UPDATE.
        took = {sub.pk: now - sub.queued_at for sub in subs}
        need = {name: {sub.pk: getattr(sub, name) for sub in subs} for name in cls.REVIEW_NEED}
        each = {"commit_sha": shas, "landing_time": took, **need}
        return cls.move_many("commit", subs, each, finished_at=now)

    def propose(self, sha: str) -> bool:
        """Its commit is on `corral/<bead>` upstream; the forge's request decides."""
        return self.move("propose", proposal_sha=sha, **self.review_need())

    def withdraw(self, reason: str) -> bool:
        """Its request was closed without a merge, or a forge check failed."""
        return self.move("withdraw", reason=reason, finished_at=timezone.now())

    def opened(self, number: int, url: str) -> bool:
        """The request the forge opened for it (once: a second opener changes nothing)."""
        rows = Submission.objects.filter(
            pk=self.pk, status=self.Status.PROPOSED, proposal_number=None
        )
        if not rows.update(proposal_number=number, proposal_url=url):
            return False
        self.proposal_number, self.proposal_url = number, url
        return True

    def unland(self, reason: str) -> bool:
        return self.move("unland", reason=reason, finished_at=timezone.now())

    def hold(self) -> bool:
        return self.move("hold")

    def requeue(self) -> bool:
        """A held member whose branch moved: the lead gates it again on the new head,
        so what was said of it before (its reason) no longer holds."""
        return self.move("requeue", queued_at=timezone.now(), started_at=None, reason="")

    def reject(self, user: Any, reason: str) -> bool:
        """A person turns the submission down while it waits for review."""
        now = timezone.now()
        return self.move(
            "reject_by_person",
            reason=reason,
            reviewed_by=user,
            reviewed_at=now,
            finished_at=now,
            first_review_at=Coalesce(F("first_review_at"), Value(now)),
        )

    def request_changes(self, user: Any, reason: str) -> bool:
        """A person sends it back for another try, its line comments for the agent."""
        now = timezone.now()
        return self.move(
            "request_changes",
            reason=reason,
            reviewed_by=user,
            reviewed_at=now,
            finished_at=now,
            first_review_at=Coalesce(F("first_review_at"), Value(now)),
        )

    def refuse(self, status: str, reason: str) -> bool:
        """The lead ends it without a commit: rejected by a gate, conflict, or failed."""
        if status not in self.REFUSALS:
            raise ValueError(f"{status} is not a refusal")
        return self.move(self.REFUSALS[status], reason=reason, finished_at=timezone.now())


class Approval(models.Model):
    """One person's approval of a submission: a rule may want two people, so
    each is kept, one per person (a unique constraint)."""

    submission = models.ForeignKey(Submission, models.CASCADE)
    person = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="+")
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["submission", "person"], name="one_approval_per_person")
        ]

    def __str__(self) -> str:
        return f"{self.person} approved submission {self.submission_id}"


class GateResult(models.Model):
    class Gate(models.TextChoices):
        PATHS = "paths"
        SCOPE = "scope"
        SIZE = "size"
        APPLY = "apply"
        CHECK = "check"
        FORGE = "forge"  # the forge's checks on a proposed commit (pull-request mode)
        REVIEW = "review"

    submission = models.ForeignKey(Submission, models.CASCADE, related_name="gate_results")
    gate = models.CharField(max_length=10, choices=Gate.choices)
    passed = models.BooleanField(null=True, help_text="empty: still waiting (a review)")
    detail = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["submission", "created_at", "id"]

    def __str__(self) -> str:
        return f"{self.gate}: {self.outcome}"

    @property
    def outcome(self) -> str:
        return {True: "pass", False: "fail", None: "waiting"}[self.passed]


class ReviewComment(models.Model):
    """A person's comment on one line of a submission's diff. Comments on a
    submission sent back with "request changes" go into the bead's next
    context pack and its API answer (`review_comments`)."""

    class Side(models.TextChoices):
        NEW = "new"  # a line of the candidate (added or context): its number there
        OLD = "old"  # a removed line: its number in the base

    submission = models.ForeignKey(Submission, models.CASCADE, related_name="review_comments")
    path = models.TextField(help_text="the file as the diff names it (display only)")
    line = models.PositiveIntegerField()
    side = models.CharField(max_length=3, choices=Side.choices, default=Side.NEW)
    line_text = models.TextField(blank=True, help_text="the line commented on, as shown")
    text = models.TextField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["submission", "path", "line"])]

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.side}): {self.text[:40]}"

    @property
    def author_name(self) -> str:
        return self.author.get_username() if self.author is not None else "(a deleted account)"

    @classmethod
    def pending_for(cls, bead_id: str) -> list["ReviewComment"]:
        """The comments the bead's next session must address: those of its last
        submission a person decided on, when that decision asked for changes
        (a later approval or landing settles them)."""
        decided = (
            Submission.objects.filter(bead_id=bead_id)
            .filter(
                models.Q(reviewed_by__isnull=False) | models.Q(status=Submission.Status.COMMITTED)
            )
            .order_by("-queued_at", "-pk")
            .values_list("pk", "status")
            .first()
        )
        if decided is None or decided[1] != Submission.Status.CHANGES_REQUESTED:
            return []
        return list(cls.objects.filter(submission_id=decided[0]).select_related("author"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "submission": self.submission_id,
            "path": self.path,
            "line": self.line,
            "side": self.side,
            "line_text": self.line_text,
            "text": self.text,
            "author": self.author_name,
            "created_at": self.created_at.isoformat(),
        }


def review_pack_text(comments: Sequence[ReviewComment]) -> str:
    """The comments as the context pack gives them: file, line, text, author."""
    lines = []
    for c in comments:
        where = f"`{c.path}` line {c.line}" + (" (a removed line)" if c.side == "old" else "")
        lines.append(f"- {where}, {c.author_name}: {c.text.strip()}")
        if c.line_text.strip():
            lines.append(f"  the line: `{c.line_text.strip()}`")
    return "\n".join(lines)
