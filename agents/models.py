import hashlib
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils import timezone

from agents import presets
from beads.models import Bead
from workspace.models import Repository
from workspace.states import Transitions

TOKEN_PREFIX = "crl_"
SESSION_TOKEN_PREFIX = "crs_"


def hash_token(token):
    # Tokens are 256 random bits: a plain SHA-256 cannot be brute-forced.
    return hashlib.sha256(token.encode()).hexdigest()


class AgentQuerySet(models.QuerySet):
    def authenticate(self, token):
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

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        if not self.command and self.preset in presets.PRESETS:
            self.command = presets.default_command(self.preset)
        if not self.token_hash:
            self.new_token()
        super().save(*args, **kwargs)

    def clean(self):
        if not isinstance(self.command, list) or not all(isinstance(a, str) for a in self.command):
            raise ValidationError({"command": "Give the command as a list of strings (an argv)."})
        if not isinstance(self.env, dict):
            raise ValidationError({"env": "Give the environment as an object of strings."})

    def new_token(self):
        """Set a fresh token and return it: the only time its plain text exists."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.token_hash = hash_token(token)
        self.token_hint = token[:8]
        self.plain_token = token
        return token

    def rotate_token(self):
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
    summary = models.TextField(blank=True)
    context_chars = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # A token that acts as the agent for this session only, while it is live:
    # what an internal agent's process gets as CORRAL_TOKEN.
    token_hash = models.CharField(max_length=64, blank=True, db_index=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "lease_expires_at"])]

    def __str__(self):
        return f"{self.agent} on {self.bead_id} ({self.get_status_display()})"

    def get_absolute_url(self):
        return reverse("session", args=[self.pk])

    def queue(self):
        return self.transition(self.Status.QUEUED, self.Status.CLAIMED)

    def start(self, worker="", pid=None):
        return self.transition(
            self.Status.RUNNING,
            [self.Status.CLAIMED, self.Status.QUEUED],
            worker=worker,
            pid=pid,
            started_at=timezone.now(),
        )

    def submit(self, patch, changed_files, summary=""):
        return self.transition(
            self.Status.SUBMITTED,
            self.LIVE,
            patch=patch,
            changed_files=changed_files,
            summary=summary,
            ended_at=timezone.now(),
        )

    def succeed(self):
        return self.transition(self.Status.SUCCEEDED, self.Status.SUBMITTED)

    def end(self, status, error=""):
        """A live session ends badly: failed, timed out, out of scope, cancelled or lost."""
        if status not in self.ENDINGS:
            raise ValueError(f"{status} is not an ending")
        return self.transition(status, self.LIVE, error=error, ended_at=timezone.now())

    def fail_submission(self, reason):
        """Its submission was refused: the session failed after all."""
        return self.transition(self.Status.FAILED, self.Status.SUBMITTED, error=reason)

    def hand_in(self, patch, summary=""):
        """Submit the session's patch: the session, its bead and a new Submission
        move together, and the lead gets the submission once this commits."""
        from agents import patches, queues

        files = sorted({p for change in patches.parse(patch) for p in change.paths})
        with transaction.atomic():
            if not self.submit(patch, files, summary):
                raise StateError(f"session {self.pk} is {self.status}, not live")
            if not self.bead.submit():
                raise StateError(f"bead {self.bead_id} is {self.bead.status}, not in progress")
            submission = Submission.objects.create(
                session=self, repository=self.bead.repository, bead=self.bead
            )
            queues.enqueue_submission(submission)
        return submission

    def extend_lease(self, until):
        return bool(
            Session.objects.filter(pk=self.pk, status__in=self.LIVE).update(lease_expires_at=until)
        )

    def issue_token(self):
        """A fresh session token (its plain text exists only in the returned value)."""
        token = SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32)
        Session.objects.filter(pk=self.pk).update(token_hash=hash_token(token))
        return token

    def heartbeat(self):
        """Extend the lease; an external agent's first sign of life starts its session."""
        until = timezone.now() + timedelta(seconds=settings.LEASE_SECONDS)
        if not self.extend_lease(until):
            self.refresh_from_db(fields=["status"])
            return False
        self.lease_expires_at = until
        if self.status == self.Status.CLAIMED and not self.agent.internal:
            self.start(worker="external")
        return True

    def release(self, reason):
        """The agent gives the bead back: the session ends, the bead returns to the hook."""
        with transaction.atomic():
            if not self.end(self.Status.CANCELLED, f"Released: {reason}"):
                return False
            self.bead.fail_attempt(f"Released by {self.agent}: {reason}")
        return True

    def cancel(self, by):
        """A person stops the session; its runner kills the agent, the bead goes back."""
        with transaction.atomic():
            if not self.end(self.Status.CANCELLED, f"Cancelled by {by}."):
                return False
            self.bead.fail_attempt(f"The session was cancelled by {by}.")
        return True

    def lose(self):
        """Nobody heard from it within its lease: the bead returns to the hook."""
        with transaction.atomic():
            if not self.end(self.Status.LOST, "The lease expired."):
                return False
            self.bead.fail_attempt("The session was lost: its lease expired.")
        return True

    def append_log(self, text):
        """Add a chunk to the live log; returns its sequence number."""
        for _ in range(5):
            last = self.log_chunks.aggregate(n=models.Max("seq"))["n"]
            seq = 0 if last is None else last + 1
            try:
                with transaction.atomic():
                    LogChunk.objects.create(session=self, seq=seq, text=text)
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

    def __str__(self):
        return f"{self.session_id} #{self.seq}"


class Submission(Transitions, models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        CHECKING = "checking"
        AWAITING_REVIEW = "awaiting_review", "awaiting review"
        APPROVED = "approved"
        COMMITTED = "committed"
        REJECTED = "rejected"
        CONFLICT = "conflict"
        FAILED = "failed"

    IN_FLIGHT = [Status.QUEUED, Status.CHECKING, Status.AWAITING_REVIEW, Status.APPROVED]

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
        indexes = [models.Index(fields=["repository", "status", "queued_at"])]

    def __str__(self):
        return f"submission for {self.bead_id} ({self.get_status_display()})"

    def get_absolute_url(self):
        return reverse("submission", args=[self.pk])

    def start_checking(self):
        return self.transition(
            self.Status.CHECKING,
            [self.Status.QUEUED, self.Status.APPROVED],
            started_at=timezone.now(),
        )

    def await_review(self):
        return self.transition(self.Status.AWAITING_REVIEW, self.Status.CHECKING)

    def approve(self, user):
        return self.transition(
            self.Status.APPROVED,
            self.Status.AWAITING_REVIEW,
            reviewed_by=user,
            reviewed_at=timezone.now(),
        )

    def commit(self, sha):
        return self.transition(
            self.Status.COMMITTED,
            [self.Status.CHECKING, self.Status.APPROVED],
            commit_sha=sha,
            finished_at=timezone.now(),
        )

    def reject(self, user, reason):
        """A person turns the submission down while it waits for review."""
        return self.transition(
            self.Status.REJECTED,
            self.Status.AWAITING_REVIEW,
            reason=reason,
            reviewed_by=user,
            reviewed_at=timezone.now(),
            finished_at=timezone.now(),
        )

    def refuse(self, status, reason):
        """The lead ends it without a commit: rejected by a gate, conflict, or failed."""
        if status not in (self.Status.REJECTED, self.Status.CONFLICT, self.Status.FAILED):
            raise ValueError(f"{status} is not a refusal")
        return self.transition(
            status,
            [self.Status.QUEUED, self.Status.CHECKING],
            reason=reason,
            finished_at=timezone.now(),
        )


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

    def __str__(self):
        return f"{self.gate}: {self.outcome}"

    @property
    def outcome(self):
        return {True: "pass", False: "fail", None: "waiting"}[self.passed]
