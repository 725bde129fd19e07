"""Agents, their sessions and the sessions' live logs."""

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, models, transaction
from django.urls import reverse
from django.utils import timezone

from agents import patches, presets
from beads.models import Bead
from workspace import scrub
from workspace.secrets import EncryptedJSONField
from workspace.states import Transitions, move
from workspace.tokens import hash_token

TOKEN_PREFIX = "crl_"
SESSION_TOKEN_PREFIX = "crs_"


class AgentQuerySet(models.QuerySet["Agent"]):
    def taking_work(self, now: datetime | None = None) -> "AgentQuerySet":
        """Those not paused after a rate limit (Agent.pause)."""
        return self.exclude(paused_for_person=True).exclude(paused_until__gt=now or timezone.now())

    def paused(self, now: datetime | None = None) -> "AgentQuerySet":
        """Those paused after a rate limit, now."""
        return self.filter(
            models.Q(paused_for_person=True) | models.Q(paused_until__gt=now or timezone.now())
        )

    def authenticate(self, token: str | None) -> "Agent | None":
        """The active agent this bearer token belongs to, or None.

        A session token (SESSION_TOKEN_PREFIX) stands for its agent while the
        session is live; `agent.only_session` then names the one session it may
        act on, and `agent.only_repository` the one repository it reaches.
        """
        if token and token.startswith(SESSION_TOKEN_PREFIX):
            session = (
                Session.objects.filter(token_hash=hash_token(token), status__in=Session.LIVE)
                .select_related("agent")
                .annotate(bead_repository=models.F("bead__repository_id"))
                .first()
            )
            if session is None or not session.agent.active:
                return None
            session.agent.only_session = session.pk
            session.agent.only_repository = session.bead_repository
            return session.agent
        if not token or not token.startswith(TOKEN_PREFIX):
            return None
        return self.filter(token_hash=hash_token(token), active=True).first()


class Agent(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    preset = models.CharField(max_length=20, choices=presets.CHOICES, default="shell")
    command = models.JSONField(default=list, blank=True, help_text="argv template")
    # API keys and the like: stored encrypted, never shown again (workspace/secrets.py).
    env = EncryptedJSONField(default=dict, blank=True)
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
    auto_resume = models.BooleanField(
        default=True,
        help_text="After a rate limit, take work again at its reset time; off: stay paused "
        "until a person resumes it",
    )
    # A rate limit's pause (Agent.pause): no work until `paused_until`, or, when
    # `paused_for_person` (auto-resume off, or past the day's cap of pauses),
    # until a person resumes it. An elapsed pause is left as it was, for the record.
    paused_until = models.DateTimeField(null=True, blank=True, editable=False)
    paused_for_person = models.BooleanField(default=False, editable=False)
    paused_reason = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = AgentQuerySet.as_manager()

    # Set on an instance, never stored: the token's plain text right after it
    # is made, and, for an agent authenticated by a session token, that session.
    plain_token: str
    only_session: uuid.UUID | None
    only_repository: int | None

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

    def pause(self, until: datetime, reason: str, for_person: bool) -> bool:
        """A rate limit until `until`: no work for it before then (a later reset
        stands, whoever pauses it meanwhile); `for_person`: none until a person
        resumes it. Conditional UPDATEs; True if this call moved the reset."""
        rows = Agent.objects.filter(pk=self.pk)
        later = rows.filter(models.Q(paused_until=None) | models.Q(paused_until__lt=until))
        moved = bool(later.update(paused_until=until, paused_reason=reason))
        if for_person:
            rows.update(paused_for_person=True, paused_reason=reason)
        self.refresh_from_db(fields=["paused_until", "paused_for_person", "paused_reason"])
        return moved

    def resume(self) -> bool:
        """A person lets it take work again now; False if it was not paused."""
        paused = models.Q(paused_for_person=True) | models.Q(paused_until__gt=timezone.now())
        won = bool(
            Agent.objects.filter(paused, pk=self.pk).update(
                paused_until=None, paused_for_person=False, paused_reason=""
            )
        )
        self.refresh_from_db(fields=["paused_until", "paused_for_person", "paused_reason"])
        return won

    def is_paused(self, now: datetime | None = None) -> bool:
        if self.paused_for_person:
            return True
        return self.paused_until is not None and self.paused_until > (now or timezone.now())

    def pause_text(self) -> str:
        """Why it takes no work, in a person's words; "" when it takes work."""
        if not self.is_paused():
            return ""
        if self.paused_for_person:
            return f"paused until a person resumes it: {self.paused_reason}"
        assert self.paused_until is not None  # is_paused() said so
        until = timezone.localtime(self.paused_until)
        return f"paused until {until:%Y-%m-%d %H:%M}: {self.paused_reason}"

    def live_sessions(self) -> "models.QuerySet[Session]":
        """Its live sessions; for a session token, that session only (if still live)."""
        sessions = Session.objects.filter(agent=self, status__in=Session.LIVE)
        if (only := getattr(self, "only_session", None)) is not None:
            sessions = sessions.filter(pk=only)
        return sessions

    def live_repository_ids(self) -> list[int]:
        """The repositories it holds a live session in: where it reads and proposes learnings."""
        ids = self.live_sessions().values_list("bead__repository_id", flat=True)
        return sorted(set(ids))


class StateError(Exception):
    """A move its row's current status does not allow."""


EXTERNAL = "external"  # the worker of a session an agent outside Corral drives


def since(now: datetime, start: str) -> models.Expression:
    """`now - <start column>` as the row holds it, worked out in the UPDATE that
    writes `now` (an instance read earlier may not have the column's value)."""
    return models.ExpressionWrapper(
        models.Value(now, output_field=models.DateTimeField()) - models.F(start),
        output_field=models.DurationField(),
    )


def ended() -> dict[str, Any]:
    """A session's end and how long it ran, for the move that ends it."""
    now = timezone.now()
    return {"ended_at": now, "run_time": since(now, "started_at")}


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
        PAUSED = "paused"  # its agent hit a rate limit: no attempt counted

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
        # Its agent hit a rate limit: not the bead's fault (lifecycle.pause).
        "pause": move(LIVE, Status.PAUSED),
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
    # Durations written by the move that ends them, in its own UPDATE, so
    # /metrics' histograms count ranges of a column (no date arithmetic per row).
    start_delay = models.DurationField(null=True, blank=True)  # created_at to started_at
    run_time = models.DurationField(null=True, blank=True)  # started_at to ended_at
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
    # Paused: when its agent's rate limit resets (from the CLI's message, or a default wait).
    resets_at = models.DateTimeField(null=True, blank=True)
    # A token that acts as the agent for this session only, while it is live:
    # what an internal agent's process gets as CORRAL_TOKEN.
    token_hash = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    # The agent's own last sign of life: output or a heartbeat it sent (not the
    # runner's lease renewals). Quiet past CORRAL_STALL_SECONDS: stalled.
    agent_seen_at = models.DateTimeField(null=True, blank=True)
    # The end of the agent's last log call, held back because it may be the
    # beginning of a secret the next call completes (workspace.scrub.Stream):
    # never shown as it is.
    log_held = models.TextField(blank=True, editable=False)
    # The agent CLI's own conversation id, read from its output (agents/presets.py
    # says where): the same agent's next session on the bead resumes it.
    cli_session = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "lease_expires_at"]),
            # The latest ended sessions of a status (a plan's time to finish) come
            # off it in order, and /metrics reads every session's duration from
            # it without the rows.
            models.Index(fields=["status", "ended_at", "started_at"]),
            # /metrics' histograms: range counts off these alone (see corral/metrics.py).
            models.Index(fields=["run_time"], name="session_run_time"),
            models.Index(fields=["start_delay"], name="session_start_delay"),
        ]
        permissions = [("cancel_session", "Can cancel a live session")]

    def __str__(self) -> str:
        return f"{self.agent} on {self.bead_id} ({self.get_status_display()})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.fill_durations()
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("session", args=[self.pk])

    @classmethod
    def to_open(cls, agent: Agent) -> "Session":
        """A session of `agent` not saved yet: the claim's statement inserts it
        (`opening()`) beside the bead it moves, and `opened()` completes it."""
        return cls(
            agent=agent,
            lease_expires_at=timezone.now() + timedelta(seconds=settings.LEASE_SECONDS),
        )

    def opening(self) -> dict[str, Any]:
        """This unsaved session as the row the hook's claim inserts (hook.Opening's fields)."""
        fields = [f for f in self._meta.concrete_fields if f.attname not in ("bead_id", "base_sha")]
        return dict(
            table=self._meta.db_table,
            values={
                f.column: f.get_db_prep_save(getattr(self, f.attname), connection) for f in fields
            },
            types={f.column: f.db_type(connection) or "text" for f in fields},
            pk_column=self._meta.pk.column,
            bead_column=Session.bead.field.column,
            sha_column="base_sha",
            stamped=(Session._meta.get_field("created_at").column,),
        )

    def opened(self, bead: Bead, base_sha: str, at: datetime) -> "Session":
        """The session as the claim inserted it (created `at` the claim)."""
        self.bead, self.base_sha, self.created_at = bead, base_sha, at
        self._state.adding, self._state.db = False, connection.alias
        return self

    def time_limit_s(self) -> int:
        """The smallest of the agent's, the bead's and the repository's limits."""
        limits = [self.bead.repository.session_minutes * 60]
        if self.agent.session_minutes:
            limits.append(self.agent.session_minutes * 60)
        if self.bead.time_limit_s:
            limits.append(self.bead.time_limit_s)
        return min(limits)

    def fill_durations(self) -> None:
        """A row written whole (the admin, a fixture, a bulk_create that calls
        this) gets the durations its moves would have written."""
        if self.start_delay is None and self.started_at is not None and self.worker != EXTERNAL:
            self.start_delay = self.started_at - self.created_at
        if self.run_time is None and self.started_at is not None and self.ended_at is not None:
            self.run_time = self.ended_at - self.started_at

    def queue(self) -> bool:
        return self.move("queue")

    def start(self, worker: str = "", pid: int | None = None) -> bool:
        """Running; a session worker's start (not an external agent's first sign
        of life) also writes its start_delay, the dispatch latency."""
        now = timezone.now()
        delay = since(now, "created_at") if worker != EXTERNAL else None
        return self.move("start", worker=worker, pid=pid, started_at=now, start_delay=delay)

    def submit(self, patch: str, summary: str = "") -> bool:
        """Hand the patch in; what it changes is read here, once, for everyone after."""
        changes = patches.parse(patch)
        files = sorted({p for change in changes for p in change.paths})
        won = self.move(
            "submit",
            patch=patch,
            changed_files=files,
            patch_summary=patches.summarize(changes),
            summary=summary,
            **ended(),
        )
        if won:
            self.show_held_log()
        return won

    def succeed(self) -> bool:
        return self.move("succeed")

    def end(self, status: str, error: str = "") -> bool:
        """A live session ends badly: failed, timed out, out of scope, cancelled or lost."""
        if status not in self.ENDING_MOVES:
            raise ValueError(f"{status} is not an ending")
        won = self.move(self.ENDING_MOVES[status], error=error, **ended())
        if won:
            self.show_held_log()
        return won

    def pause(self, reason: str, resets_at: datetime) -> bool:
        """A live session ends paused: its agent hit a rate limit until `resets_at`."""
        return self.move("pause", error=reason, resets_at=resets_at, **ended())

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
            self.start(worker=EXTERNAL)
        return True

    def seen(self) -> None:
        """The agent showed a sign of life (output, or a heartbeat it sent)."""
        self.agent_seen_at = timezone.now()
        Session.objects.filter(pk=self.pk).update(agent_seen_at=self.agent_seen_at)

    def keep_context(self, text: str) -> bool:
        """Keep the pack given through the API, unless one was kept already
        (a conditional UPDATE: of two calls at once, one keeps its pack)."""
        kept = Session.objects.filter(pk=self.pk, context_chars=0).update(
            context=text, context_chars=len(text)
        )
        if kept:
            self.context, self.context_chars = text, len(text)
        return bool(kept)

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

    def append_agent_log(self, text: str) -> int:
        """Add what the agent sent to the live log, without the secrets it shows
        (its token, key shapes, its agent's env values). An end that may be a
        secret's beginning waits in log_held for the next call, or the session's
        end, to be scrubbed whole. Returns the last chunk's seq (-1: none yet)."""
        secrets = scrub.env_secrets(self.agent.env)
        for _ in range(5):
            held = Session.objects.filter(pk=self.pk).values_list("log_held", flat=True).get()
            stream = scrub.Stream(secrets, held=held)
            shown = stream.feed(text)
            with transaction.atomic():
                rows = Session.objects.filter(pk=self.pk, log_held=held)
                if not rows.update(log_held=stream.held):
                    continue  # another call moved the held end: feed it again
                if shown:
                    return self.append_log(shown)
            last = self.log_chunks.aggregate(n=models.Max("seq"))["n"]
            return -1 if last is None else last
        raise IntegrityError("could not append to the log")

    def show_held_log(self) -> None:
        """The session ended: what its last log call held back is shown, scrubbed
        (nothing more will come to complete it)."""
        held = Session.objects.filter(pk=self.pk).values_list("log_held", flat=True).first()
        if held and Session.objects.filter(pk=self.pk, log_held=held).update(log_held=""):
            secrets = scrub.env_secrets(self.agent.env)
            self.append_log(scrub.Stream(secrets, held=held).finish())


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
