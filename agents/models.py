import hashlib
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils import timezone

from agents import patches, presets
from beads.models import Bead
from workspace import gitops
from workspace.models import Repository, Workspace
from workspace.states import Transitions, move

TOKEN_PREFIX = "crl_"
SESSION_TOKEN_PREFIX = "crs_"


def hash_token(token: str) -> str:
    # Tokens are 256 random bits: a plain SHA-256 cannot be brute-forced.
    return hashlib.sha256(token.encode()).hexdigest()


class AgentQuerySet(models.QuerySet["Agent"]):
    def authenticate(self, token: str | None) -> "Agent | None":
        """The active agent this bearer token belongs to, or None.

        A session token (SESSION_TOKEN_PREFIX) stands for its agent while the
        session is live; `agent.only_session` then names the one session it may act on.
        """
        if token and token.startswith(SESSION_TOKEN_PREFIX):
            session = (
                Session.objects.filter(token_hash=hash_token(token), status__in=Session.LIVE)
                .select_related("agent")
                .first()
            )
            if session is None or not session.agent.active:
                return None
            session.agent.only_session = session.pk
            return session.agent
        if not token or not token.startswith(TOKEN_PREFIX):
            return None
        return self.filter(token_hash=hash_token(token), active=True).first()


class Agent(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    preset = models.CharField(max_length=20, choices=presets.CHOICES, default="shell")
    command = models.JSONField(default=list, blank=True, help_text="argv template")
    env = models.JSONField(default=dict, blank=True)
    session_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="empty: the repository's limit"
    )
    max_changed_files = models.PositiveIntegerField(default=50)
    max_changed_lines = models.PositiveIntegerField(default=2000)
    context_budget_chars = models.PositiveIntegerField(default=40_000)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_hint = models.CharField(max_length=12, editable=False, blank=True)
    internal = models.BooleanField(
        default=True, help_text="Run by Corral's workers; off for agents that drive the API"
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AgentQuerySet.as_manager()

    # Set on an instance, never stored: the token's plain text right after it
    # is made, and, for an agent authenticated by a session token, that session.
    plain_token: str
    only_session: uuid.UUID | None

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.command and self.preset in presets.PRESETS:
            self.command = presets.default_command(self.preset)
        if not self.token_hash:
            self.new_token()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if not isinstance(self.command, list) or not all(isinstance(a, str) for a in self.command):
            raise ValidationError({"command": "Give the command as a list of strings (an argv)."})
        if not isinstance(self.env, dict):
            raise ValidationError({"env": "Give the environment as an object of strings."})

    def new_token(self) -> str:
        """Set a fresh token and return it: the only time its plain text exists."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.token_hash = hash_token(token)
        self.token_hint = token[:8]
        self.plain_token = token
        return token

    def rotate_token(self) -> str:
        token = self.new_token()
        self.save(update_fields=["token_hash", "token_hint"])
        return token


class StateError(Exception):
    """A move its row's current status does not allow."""


class Session(Transitions, models.Model):
    class Status(models.TextChoices):
        CLAIMED = "claimed"
        QUEUED = "queued"
        RUNNING = "running"
        SUBMITTED = "submitted"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        TIMED_OUT = "timed_out", "timed out"
        OUT_OF_SCOPE = "out_of_scope", "out of scope"
        CANCELLED = "cancelled"
        LOST = "lost"

    LIVE = [Status.CLAIMED, Status.QUEUED, Status.RUNNING]
    ENDINGS = [Status.FAILED, Status.TIMED_OUT, Status.OUT_OF_SCOPE, Status.CANCELLED, Status.LOST]
    MOVES = {
        "queue": move(Status.CLAIMED, Status.QUEUED),  # a worker will run it
        # a worker runs it, or an external agent is first heard from
        "start": move([Status.CLAIMED, Status.QUEUED], Status.RUNNING),
        "submit": move(LIVE, Status.SUBMITTED),
        "succeed": move(Status.SUBMITTED, Status.SUCCEEDED),  # its submission landed
        "refused": move(Status.SUBMITTED, Status.FAILED),  # its submission did not
        # A live session ends badly.
        "fail": move(LIVE, Status.FAILED),
        "time_out": move(LIVE, Status.TIMED_OUT),
        "stop_out_of_scope": move(LIVE, Status.OUT_OF_SCOPE),
        "cancel": move(LIVE, Status.CANCELLED),
        "lose": move(LIVE, Status.LOST),
    }
    ENDING_MOVES: dict[str, str] = {
        Status.FAILED: "fail",
        Status.TIMED_OUT: "time_out",
        Status.OUT_OF_SCOPE: "stop_out_of_scope",
        Status.CANCELLED: "cancel",
        Status.LOST: "lose",
    }

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey(Agent, models.PROTECT, related_name="sessions")
    bead = models.ForeignKey(Bead, models.CASCADE, related_name="sessions")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CLAIMED)
    base_sha = models.CharField(max_length=40, blank=True)
    workdir = models.CharField(max_length=500, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    changed_files = models.JSONField(default=list, blank=True)
    patch = models.TextField(blank=True)
    # What the patch changes, read once at hand-in: {"files": n, "lines": n,
    # "binary": [paths]}. The gates, the API and the pages use it.
    patch_summary = models.JSONField(default=dict, blank=True)
    summary = models.TextField(blank=True)
    # The context pack as the agent got it: pages show it from here, so they
    # never read a session worker's disk.
    context = models.TextField(blank=True)
    context_chars = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # A token that acts as the agent for this session only, while it is live:
    # what an internal agent's process gets as CORRAL_TOKEN.
    token_hash = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    # The agent's own last sign of life: output or a heartbeat it sent (not the
    # runner's lease renewals). Quiet past CORRAL_STALL_SECONDS: stalled.
    agent_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "lease_expires_at"]),
            # The latest ended sessions of a status (a plan's time to finish) come
            # off it in order, and /metrics reads every session's duration from
            # it without the rows.
            models.Index(fields=["status", "ended_at", "started_at"]),
        ]
        permissions = [("cancel_session", "Can cancel a live session")]

    def __str__(self) -> str:
        return f"{self.agent} on {self.bead_id} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("session", args=[self.pk])

    @classmethod
    def open(cls, agent: Agent, bead: Bead) -> "Session":
        """A new session of `agent` on a just-claimed `bead`, based on its branch head."""
        repo = bead.repository
        return cls.objects.create(
            agent=agent,
            bead=bead,
            base_sha=gitops.head_sha(repo.canonical_path, repo.branch),
            lease_expires_at=timezone.now() + timedelta(seconds=settings.LEASE_SECONDS),
        )

    def time_limit_s(self) -> int:
        """The smallest of the agent's, the bead's and the repository's limits."""
        limits = [self.bead.repository.session_minutes * 60]
        if self.agent.session_minutes:
            limits.append(self.agent.session_minutes * 60)
        if self.bead.time_limit_s:
            limits.append(self.bead.time_limit_s)
        return min(limits)

    def queue(self) -> bool:
        return self.move("queue")

    def start(self, worker: str = "", pid: int | None = None) -> bool:
        return self.move("start", worker=worker, pid=pid, started_at=timezone.now())

    def submit(self, patch: str, summary: str = "") -> bool:
        """Hand the patch in; what it changes is read here, once, for everyone after."""
        changes = patches.parse(patch)
        files = sorted({p for change in changes for p in change.paths})
        return self.move(
            "submit",
            patch=patch,
            changed_files=files,
            patch_summary=patches.summarize(changes),
            summary=summary,
            ended_at=timezone.now(),
        )

    def succeed(self) -> bool:
        return self.move("succeed")

    def end(self, status: str, error: str = "") -> bool:
        """A live session ends badly: failed, timed out, out of scope, cancelled or lost."""
        if status not in self.ENDING_MOVES:
            raise ValueError(f"{status} is not an ending")
        return self.move(self.ENDING_MOVES[status], error=error, ended_at=timezone.now())

    def fail_submission(self, reason: str) -> bool:
        """Its submission was refused: the session failed after all."""
        return self.move("refused", error=reason)

    def extend_lease(self, until: datetime) -> bool:
        return bool(
            Session.objects.filter(pk=self.pk, status__in=self.LIVE).update(lease_expires_at=until)
        )

    def issue_token(self) -> str:
        """A fresh session token (its plain text exists only in the returned value)."""
        token = SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32)
        Session.objects.filter(pk=self.pk).update(token_hash=hash_token(token))
        return token

    def heartbeat(self) -> bool:
        """Extend the lease; an external agent's first sign of life starts its session."""
        until = timezone.now() + timedelta(seconds=settings.LEASE_SECONDS)
        if not self.extend_lease(until):
            self.refresh_from_db(fields=["status"])
            return False
        self.lease_expires_at = until
        self.seen()
        if self.status == self.Status.CLAIMED and not self.agent.internal:
            self.start(worker="external")
        return True

    def seen(self) -> None:
        """The agent showed a sign of life (output, or a heartbeat it sent)."""
        self.agent_seen_at = timezone.now()
        Session.objects.filter(pk=self.pk).update(agent_seen_at=self.agent_seen_at)

    def record_context(self, workdir: str, text: str) -> None:
        Session.objects.filter(pk=self.pk).update(
            workdir=workdir, context=text, context_chars=len(text)
        )
        self.workdir, self.context, self.context_chars = workdir, text, len(text)

    def append_log(self, text: str) -> int:
        """Add a chunk to the live log; returns its sequence number."""
        for _ in range(5):
            last = self.log_chunks.aggregate(n=models.Max("seq"))["n"]
            seq = 0 if last is None else last + 1
            try:
                with transaction.atomic():
                    LogChunk.objects.create(session=self, seq=seq, text=text)
                self.seen()
                return seq
            except IntegrityError:
                continue  # another writer took this seq: take the next
        raise IntegrityError("could not append to the log")


class LogChunk(models.Model):
    session = models.ForeignKey(Session, models.CASCADE, related_name="log_chunks")
    seq = models.PositiveIntegerField()
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["session", "seq"]
        constraints = [models.UniqueConstraint(fields=["session", "seq"], name="one_chunk_per_seq")]

    def __str__(self) -> str:
        return f"{self.session_id} #{self.seq}"


class Submission(Transitions, models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        CHECKING = "checking"
        AWAITING_REVIEW = "awaiting_review", "awaiting review"
        APPROVED = "approved"
        HELD = "held"  # passed its own gates; waits for its change set's siblings
        COMMITTED = "committed"
        REJECTED = "rejected"
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
        "commit": move([Status.CHECKING, Status.APPROVED, Status.HELD], Status.COMMITTED),
        "reject_by_person": move(Status.AWAITING_REVIEW, Status.REJECTED),
        # The lead ends it without a commit (a held one: its change set was refused).
        "reject": move([Status.QUEUED, Status.CHECKING, Status.HELD], Status.REJECTED),
        "conflict": move([Status.QUEUED, Status.CHECKING], Status.CONFLICT),
        "fail": move([Status.QUEUED, Status.CHECKING], Status.FAILED),
        # A change set member: held for its siblings, or gated again on a moved head.
        "hold": move(Status.CHECKING, Status.HELD),
        "requeue": move(Status.HELD, Status.QUEUED),
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
    pushed_at = models.DateTimeField(null=True, blank=True)
    push_error = models.TextField(blank=True)

    class Meta:
        ordering = ["queued_at"]
        indexes = [
            models.Index(fields=["repository", "status", "queued_at"]),
            # Problems count refusals per bead and find waiting work off it.
            models.Index(fields=["status", "bead"]),
            # /metrics reads the landed submissions' times from it without the rows.
            models.Index(fields=["status", "finished_at", "queued_at"]),
            # The lead queue's latest finished submissions, read in order.
            models.Index(fields=["repository", "finished_at", "id"]),
        ]
        permissions = [("review_submission", "Can approve or reject a submission")]

    def __str__(self) -> str:
        return f"submission for {self.bead_id} ({self.get_status_display()})"

    def get_absolute_url(self) -> str:
        return reverse("submission", args=[self.pk])

    def start_checking(self, at: datetime | None = None) -> bool:
        """`at`: when its landing started (a train's members share it)."""
        return self.move("start_checking", started_at=at or timezone.now())

    def await_review(self) -> bool:
        return self.move("await_review")

    def approve(self, user: Any) -> bool:
        return self.move("approve", reviewed_by=user, reviewed_at=timezone.now())

    def commit(self, sha: str) -> bool:
        return self.move("commit", commit_sha=sha, finished_at=timezone.now())

    @classmethod
    def commit_all(
        cls, subs: Sequence["Submission"], shas: Mapping[int, str]
    ) -> list["Submission"]:
        """commit() for many submissions at once (a lead's train); `shas`: {pk: its
        commit}. The submissions that moved."""
        return cls.move_many("commit", subs, {"commit_sha": shas}, finished_at=timezone.now())

    def hold(self) -> bool:
        return self.move("hold")

    def requeue(self) -> bool:
        """A held member whose branch moved: the lead gates it again on the new head."""
        return self.move("requeue", queued_at=timezone.now(), started_at=None)

    def reject(self, user: Any, reason: str) -> bool:
        """A person turns the submission down while it waits for review."""
        now = timezone.now()
        return self.move(
            "reject_by_person", reason=reason, reviewed_by=user, reviewed_at=now, finished_at=now
        )

    def refuse(self, status: str, reason: str) -> bool:
        """The lead ends it without a commit: rejected by a gate, conflict, or failed."""
        if status not in self.REFUSALS:
            raise ValueError(f"{status} is not a refusal")
        return self.move(self.REFUSALS[status], reason=reason, finished_at=timezone.now())


class GateResult(models.Model):
    class Gate(models.TextChoices):
        PATHS = "paths"
        SCOPE = "scope"
        SIZE = "size"
        APPLY = "apply"
        CHECK = "check"
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


class ChangeSet(Transitions, models.Model):
    """Beads in several repositories that land together or not at all (agents/changesets.py)."""

    class Status(models.TextChoices):
        OPEN = "open"  # members being worked on; each is held once its own gates pass
        GATING = "gating"  # every member held: the integration gate, then the landing
        AWAITING_REVIEW = "awaiting_review", "awaiting review"
        LANDING = "landing"  # the journal is being written and played
        LANDED = "landed"
        REFUSED = "refused"
        REVERTED = "reverted"

    ACTIVE = [Status.OPEN, Status.GATING, Status.AWAITING_REVIEW, Status.LANDING]
    MOVES = {
        "gate": move(Status.OPEN, Status.GATING),  # the last member was held
        "await_review": move(Status.GATING, Status.AWAITING_REVIEW),
        "approve": move(Status.AWAITING_REVIEW, Status.GATING),
        "start_landing": move(Status.GATING, Status.LANDING),
        "finish": move(Status.LANDING, Status.LANDED),
        # integration failed, a member was refused, a head moved: members back to work
        "reopen": move([Status.GATING, Status.AWAITING_REVIEW, Status.LANDING], Status.OPEN),
        # a member bead ran out of attempts (it was sent back, so the set is open)
        "refuse": move(Status.OPEN, Status.REFUSED),
        "revert": move(Status.LANDED, Status.REVERTED),
    }

    workspace = models.ForeignKey(Workspace, models.CASCADE, related_name="changesets")
    title = models.CharField(max_length=500)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    integration_command = models.JSONField(
        default=list, blank=True, help_text="argv; empty: the workspace's integration command"
    )
    integration_timeout_s = models.PositiveIntegerField(default=600)
    integration_passed = models.BooleanField(null=True, blank=True)
    integration_output = models.TextField(blank=True)
    integration_ms = models.PositiveIntegerField(default=0)
    integration_trees = models.JSONField(
        default=dict, blank=True, help_text="{slug: tree} the integration gate last judged"
    )
    attempts = models.PositiveIntegerField(default=0)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    landed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"change set {self.pk}: {self.title}"

    def get_absolute_url(self) -> str:
        return reverse("changeset", args=[self.pk])

    def member_list(self) -> "list[ChangeSetMember]":
        """Members in lock order: by their repository's slug."""
        related = ("bead", "repository", "submission__session__agent")
        return list(self.members.select_related(*related).order_by("repository__slug", "bead_id"))

    def integration_argv(self) -> list[str]:
        return list(self.integration_command) or self.workspace.integration_argv()

    def needs_review(self) -> bool:
        """A member repository reviews by hand: a person approves the change set, once."""
        human = Repository.Review.HUMAN
        return self.members.filter(repository__review_mode=human).exists() and not self.reviewed_at

    def start_gating(self) -> bool:
        return self.move("gate")

    def await_review(self) -> bool:
        return self.move("await_review")

    def approve(self, user: Any) -> bool:
        return self.move("approve", reviewed_by=user, reviewed_at=timezone.now())

    def start_landing(self) -> bool:
        return self.move("start_landing")

    def finish(self) -> bool:
        return self.move("finish", landed_at=timezone.now())

    def reopen(self, reason: str) -> bool:
        """Back to work: the reason goes to the page, and one attempt is counted."""
        return self.move(
            "reopen", reason=reason, attempts=models.F("attempts") + 1, reviewed_at=None
        )

    def refuse(self, reason: str) -> bool:
        return self.move("refuse", reason=reason)

    def revert(self) -> bool:
        return self.move("revert")

    def record_integration(self, passed: bool, output: str, ms: int, trees: dict[str, str]) -> None:
        fields = dict(
            integration_passed=passed,
            integration_output=output,
            integration_ms=ms,
            integration_trees=trees,
        )
        ChangeSet.objects.filter(pk=self.pk).update(**fields)
        for key, value in fields.items():
            setattr(self, key, value)


class ChangeSetMember(models.Model):
    """A bead of a change set; `active` while the change set is, so a bead is in
    at most one active change set (a partial unique index)."""

    changeset = models.ForeignKey(ChangeSet, models.CASCADE, related_name="members")
    bead = models.ForeignKey(Bead, models.CASCADE, related_name="changeset_members")
    repository = models.ForeignKey(Repository, models.CASCADE, related_name="+")
    active = models.BooleanField(default=True)
    # The held submission and the candidate it was gated as: head + patch = tree.
    submission = models.ForeignKey(
        Submission, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    head = models.CharField(max_length=40, blank=True)
    tree = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["changeset", "repository__slug", "bead_id"]
        constraints = [
            models.UniqueConstraint(fields=["changeset", "bead"], name="bead_once_per_changeset"),
            models.UniqueConstraint(
                fields=["bead"],
                condition=models.Q(active=True),
                name="bead_in_one_active_changeset",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bead_id} in change set {self.changeset_id}"

    @property
    def held(self) -> bool:
        """Its submission passed its own gates and waits for its siblings."""
        return self.submission is not None and self.submission.status == Submission.Status.HELD


class JournalStep(models.Model):
    """One branch move of a change set's landing (or revert), written before it is made."""

    class Kind(models.TextChoices):
        LAND = "land"
        REVERT = "revert"

    class State(models.TextChoices):
        PLANNED = "planned"
        ADVANCED = "advanced"
        UNDONE = "undone"

    changeset = models.ForeignKey(ChangeSet, models.CASCADE, related_name="journal")
    seq = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    member = models.ForeignKey(ChangeSetMember, models.CASCADE, related_name="+")
    old_sha = models.CharField(max_length=40)
    new_sha = models.CharField(max_length=40)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PLANNED)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["changeset", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["changeset", "seq"], name="one_journal_step_per_seq")
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.member.bead_id}: {self.state}"


# Tokens, prices, budgets and webhooks are models of this app, kept in modules of their own.
from agents.budgets import Budget  # noqa: E402, F401
from agents.usage import Price, TokenUsage  # noqa: E402, F401
from agents.webhooks import Delivery, Webhook  # noqa: E402, F401
