import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pathspec
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Case, F, Q, Value, When
from django.urls import reverse
from django.utils import timezone

from beads import ids, signals
from workspace.models import Repository, Workspace
from workspace.states import Transitions, move

MAX_ID_TRIES = 20
MAX_ATTEMPTS = 3  # failed attempts before a bead is blocked for a person to look at
# A bead sent back for the same reason as the time before waits this long
# before the hook offers it again (the second time in a row, the third, any
# later), unless something changed meanwhile (Bead.clear_wait): an agent
# would meet the same refusal again.
BACKOFF_SECONDS = (30, 120, 600)


class Bead(Transitions, models.Model):
    class Status(models.TextChoices):
        PROPOSED = "proposed"  # filed by an agent: waits for a person to accept it
        OPEN = "open"
        IN_PROGRESS = "in_progress", "in progress"
        REVIEW = "review"
        BLOCKED = "blocked"
        DEFERRED = "deferred"
        CLOSED = "closed"

    class Origin(models.TextChoices):
        """Where a bead came from when no person or agent filed it (filed_by, filed_by_agent)."""

        UNRECORDED = "", "not recorded"  # filed before Corral kept it
        IMPORT = "import", "a bd import"
        DEMO = "demo", "the demo"

    class Type(models.TextChoices):
        TASK = "task"
        BUG = "bug"
        FEATURE = "feature"
        EPIC = "epic"
        CHORE = "chore"

    # People may close, reopen, defer and block only beads no session holds.
    IDLE = [Status.PROPOSED, Status.OPEN, Status.BLOCKED, Status.DEFERRED]
    HELD = [Status.IN_PROGRESS, Status.REVIEW]
    MOVES = {
        "accept": move(Status.PROPOSED, Status.OPEN),  # a person takes an agent's proposal
        "start": move(Status.OPEN, Status.IN_PROGRESS),  # claimed from the hook
        "submit": move(Status.IN_PROGRESS, Status.REVIEW),
        "land": move(Status.REVIEW, Status.CLOSED),
        # released, lost, timed out, out of scope, refused by the lead
        "send_back": move(HELD, Status.OPEN),
        "revert": move(Status.CLOSED, Status.OPEN),
        # set by people (and an epic whose last child closed)
        "close": move(IDLE, Status.CLOSED),
        "reopen": move([Status.CLOSED, Status.BLOCKED, Status.DEFERRED], Status.OPEN),
        "defer": move([Status.OPEN, Status.BLOCKED], Status.DEFERRED),
        "block": move([Status.OPEN, Status.DEFERRED], Status.BLOCKED),
    }

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    repository = models.ForeignKey(Repository, models.CASCADE, related_name="beads")
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    design = models.TextField(blank=True)
    acceptance_criteria = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    priority = models.PositiveSmallIntegerField(
        default=2, validators=[MaxValueValidator(4)], help_text="0 is the highest"
    )
    issue_type = models.CharField(max_length=20, choices=Type.choices, default=Type.TASK)
    labels = models.JSONField(default=list, blank=True)
    scope = models.JSONField(
        default=list, blank=True, help_text="gitignore-style patterns of the paths it may change"
    )
    assignee = models.CharField(max_length=100, blank=True)
    time_limit_s = models.PositiveIntegerField(
        null=True, blank=True, help_text="a session time limit in seconds, tighter than the others"
    )
    attempts = models.PositiveIntegerField(default=0)
    last_failure = models.TextField(blank=True, help_text="why the last attempt came back")
    # The back-off after repeated refusals (BACKOFF_SECONDS): the hook offers
    # the bead no sooner than `not_before`; `failure_key` is the last failure's
    # fingerprint (failure_key()), `repeats` how many times in a row it came
    # back for that same reason, after the first.
    not_before = models.DateTimeField(null=True, blank=True, editable=False)
    failure_key = models.CharField(max_length=16, blank=True, editable=False)
    repeats = models.PositiveSmallIntegerField(default=0, editable=False)
    commit_sha = models.CharField(max_length=40, blank=True)
    filed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="the person who filed it (empty: an agent, an import or the demo)",
    )
    filed_by_agent = models.CharField(max_length=100, blank=True)
    origin = models.CharField(
        max_length=10, choices=Origin.choices, blank=True, editable=False, default=""
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.TextField(blank=True)
    # From a bd import (beads/jsonl.py). bd's fields Corral does not model, and
    # the original of a value Corral stored differently, as they came.
    extra = models.JSONField(default=dict, blank=True, editable=False)
    # Dependencies on beads Corral does not have (bd's external references): kept, never blocking.
    external_dependencies = models.JSONField(default=list, blank=True, editable=False)
    # bd's pinned beads stay open, are never ready and block nothing.
    pinned = models.BooleanField(default=False, editable=False)
    # bd's ephemeral beads and non-work types (agent, gate, message...) are never ready.
    not_work = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["priority", "created_at"]
        indexes = [
            models.Index(fields=["repository", "status", "priority", "created_at"]),
            models.Index(fields=["status", "priority", "created_at"]),
            # The hook pages read the open beads' readiness columns from the index
            # alone, never from the table's rows.
            models.Index(
                fields=["repository", "status", "priority", "created_at", "id"]
                + ["pinned", "not_work", "issue_type", "not_before"]
            ),
            # The beads waiting out a back-off (the hook page lists them): few,
            # and only they are in it. Led by status: SQLite, without statistics,
            # takes an equality on status over a range on not_before alone, and
            # read every open bead for the few waiting (135 ms at 100,000).
            models.Index(
                fields=["status", "not_before", "id"],
                condition=models.Q(not_before__isnull=False),
                name="bead_waiting",
            ),
            # The bead list's order: its first page without sorting every bead.
            models.Index(fields=["priority", "-created_at", "id"]),
            # The usage page's landed beads (the latest, and how many landed on the
            # first try) off the index alone: not every closed bead's row. Not led
            # by status: SQLite, without statistics, then took it for the hook's
            # `status = 'open'` and read every open bead for a wave's few.
            models.Index(fields=["closed_at", "status", "commit_sha", "attempts"]),
            # With it SQLite counts /metrics' sessions per repository off indexes
            # alone (each repository's beads, then their sessions by bead_id);
            # without it, it reads each session's bead row (26 ms vs 49 ms, 50,000).
            models.Index(fields=["id", "repository"]),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(priority__lte=4), name="priority_0_to_4"),
        ]
        permissions = [("revert_bead", "Can revert a closed bead's commit")]

    # What the API's detail schema lists (set by the views that show it).
    dependency_list: "list[Dependency]"

    def __str__(self) -> str:
        return f"{self.id}: {self.title}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.id:
            return super().save(*args, **kwargs)
        self._save_with_new_id(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("bead", args=[self.id])

    def filer(self) -> str:
        """Who or what filed it, as the bead page says it."""
        if self.filed_by is not None:
            return str(self.filed_by.get_username())
        if self.filed_by_agent:
            return f"agent {self.filed_by_agent}"
        if self.origin == self.Origin.IMPORT and self.extra.get("created_by"):
            return f"a bd import (created by {self.extra['created_by']} in bd)"
        return str(self.get_origin_display())

    def out_of_attempts(self) -> bool:
        """Blocked because its failed attempts ran out, not by a person."""
        return self.status == self.Status.BLOCKED and self.attempts >= MAX_ATTEMPTS

    def _save_with_new_id(self, *args: Any, **kwargs: Any) -> None:
        kwargs["force_insert"] = True
        prefix = self.repository.bead_prefix
        existing = Bead.objects.filter(repository__bead_prefix=prefix).count()
        tries = ids.candidates(prefix, self.title, existing)
        for _ in range(MAX_ID_TRIES):
            self.id = next(tries)
            try:
                with transaction.atomic():
                    return super().save(*args, **kwargs)
            except IntegrityError:
                if not Bead.objects.filter(pk=self.id).exists():
                    raise  # not an ID clash: let the caller see the real error
        self.id = ""
        raise IntegrityError(f"no free bead ID for prefix {prefix!r} after {MAX_ID_TRIES} tries")

    def clean(self) -> None:
        if not isinstance(self.labels, list) or not all(isinstance(x, str) for x in self.labels):
            raise ValidationError({"labels": "Give a list of strings."})
        if not isinstance(self.scope, list) or not all(isinstance(x, str) for x in self.scope):
            raise ValidationError({"scope": "Give a list of path patterns."})
        errors = {
            name: problem
            for name, values, multiline in self.texts()
            if (problem := control_characters(values, multiline))
        }
        if errors:
            raise ValidationError(errors)

    def texts(self) -> list[tuple[str, list[str], bool]]:
        """(field, its text values, whether it may span lines) for what people and agents write."""
        single = [("title", [self.title]), ("assignee", [self.assignee])]
        single += [("labels", self.labels), ("scope", self.scope)]
        multi = ["description", "design", "acceptance_criteria", "notes"]
        return [(name, values, False) for name, values in single] + [
            (name, [getattr(self, name)], True) for name in multi
        ]

    # Transitions. Each returns True when this call made the move.

    def accept(self) -> bool:
        return self.move("accept")

    def start(self, assignee: str) -> bool:
        # Its wait (if any) is over, or the hook would not have offered it.
        return self.move("start", assignee=assignee, not_before=None)

    def submit(self) -> bool:
        return self.move("submit")

    def land(self, commit_sha: str) -> bool:
        return self.move(
            "land", commit_sha=commit_sha, closed_at=timezone.now(), close_reason="committed"
        )

    @classmethod
    def land_all(cls, beads: Sequence["Bead"], shas: Mapping[str, str]) -> list["Bead"]:
        """land() for many beads at once (a lead's train); `shas`: {bead id: its commit}.
        The beads that moved."""
        each = {"commit_sha": shas}
        return cls.move_many(
            "land", beads, each, closed_at=timezone.now(), close_reason="committed"
        )

    def send_back(self, reason: str) -> bool:
        """A held bead returns to the hook (released, lost, timed out, rejected),
        to wait out a back-off if it came back for the same reason as last time."""
        return self.move(
            "send_back",
            assignee="",
            attempts=F("attempts") + 1,
            last_failure=reason,
            **backoff(reason, timezone.now()),
        )

    def put_back(self) -> bool:
        """A held bead returns to the hook through no fault of its own (its
        agent hit a rate limit): no attempt counted, its last failure and
        back-off as they were."""
        return self.move("send_back", assignee="")

    def waits(self, now: datetime | None = None) -> bool:
        """Whether the hook holds it back now, after repeated refusals."""
        return self.not_before is not None and self.not_before > (now or timezone.now())

    def waiting(self, now: datetime | None = None) -> str:
        """Why the hook holds it back, in a person's words; "" if it does not."""
        if not self.waits(now):
            return ""
        assert self.not_before is not None  # waits() said so
        times = "twice" if self.repeats <= 1 else f"{self.repeats + 1} times in a row"
        until = timezone.localtime(self.not_before)
        shown = (
            f"{until:%H:%M}" if until.date() == timezone.localdate() else f"{until:%Y-%m-%d %H:%M}"
        )
        return f"refused {times} for the same reason: waits until {shown}"

    @classmethod
    def clear_wait(cls, beads: "models.QuerySet[Bead]") -> int:
        """Something changed for these beads (a comment, an approved learning, a
        dependency landed, an edit): they need not wait out their back-off, and
        a refusal for the same reason starts it again from the first wait.
        updated_at stays: an edit form opened before it is not refused for it."""
        return int(beads.filter(not_before__isnull=False).update(not_before=None, repeats=0))

    def fail_attempt(self, reason: str) -> bool:
        """Back to the hook after a failed attempt; blocked once attempts run out."""
        if not self.send_back(reason):
            return False
        if self.attempts >= MAX_ATTEMPTS:
            self.block(f"Blocked after {self.attempts} failed attempts. Last: {reason}")
        return True

    def revert_landed(self, revert_sha: str) -> bool:
        """Its commit was reverted: the bead is open again."""
        return self.move(
            "revert",
            commit_sha="",
            closed_at=None,
            close_reason="",
            last_failure=f"Its commit was reverted by {revert_sha[:12]}.",
        )

    def unland(self, reason: str) -> bool:
        """Its commit never reached the upstream and no longer applies there: open
        again, the reason for the next session (the move a revert makes)."""
        return self.move(
            "revert", commit_sha="", closed_at=None, close_reason="", last_failure=reason
        )

    def close(self, reason: str = "closed by hand") -> bool:
        return self.move("close", closed_at=timezone.now(), close_reason=reason)

    def reopen(self) -> bool:
        # A person wants it tried again: no back-off left to wait out.
        return self.move("reopen", closed_at=None, close_reason="", not_before=None, repeats=0)

    def defer(self) -> bool:
        return self.move("defer")

    def block(self, reason: str = "") -> bool:
        if not self.move("block", last_failure=reason):
            return False
        signals.blocked.send(sender=Bead, bead=self, reason=reason)
        return True

    def set_priority(self, priority: int) -> bool:
        now = timezone.now()
        won = bool(Bead.objects.filter(pk=self.pk).update(priority=priority, updated_at=now))
        if won:
            self.priority, self.updated_at = priority, now
        return won

    def paths_outside_scope(self, paths: Iterable[str]) -> list[str]:
        """The paths its scope does not allow (gitignore-style patterns)."""
        spec = pathspec.GitIgnoreSpec.from_lines(self.scope)
        return [p for p in paths if not spec.match_file(p)]

    def blockers(self) -> "models.QuerySet[Bead]":
        """Beads this one waits for through `blocks` dependencies."""
        return Bead.objects.filter(dependents__issue=self, dependents__type=Dependency.Type.BLOCKS)

    def parents(self) -> "models.QuerySet[Bead]":
        """The epics (or other beads) this one is a child of."""
        kind = Dependency.Type.PARENT_CHILD
        return Bead.objects.filter(dependents__issue=self, dependents__type=kind)

    def children(self) -> "models.QuerySet[Bead]":
        kind = Dependency.Type.PARENT_CHILD
        return Bead.objects.filter(dependencies__depends_on=self, dependencies__type=kind)

    def close_if_children_closed(self) -> bool:
        """An epic closes when its last child closes; True if this call closed it."""
        children = self.children()
        if not children.exists() or children.exclude(status=self.Status.CLOSED).exists():
            return False
        return self.close(reason="all its children landed")


# What varies between two runs of the same failure: numbers (counts, times,
# line numbers), hashes and random names (a check's scratch folder).
VARYING = re.compile(r"corral-check-\w+|\w*\d\w*")


def failure_key(reason: str) -> str:
    """A fingerprint of why an attempt failed, equal for the same failure seen
    twice: the check's timing, a commit's SHA or a scratch folder's name differ."""
    text = " ".join(VARYING.sub("#", reason).split())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def backoff(reason: str, now: datetime) -> dict[str, Any]:
    """The changes that set a bead's back-off as it goes back with `reason`, in
    the send-back's own UPDATE: each reads the row as it was, so the streak
    and the wait follow from the failure stored before, whoever else moves it."""
    key = failure_key(reason)
    same = Q(failure_key=key)
    waits = [
        When(same & Q(repeats=n), then=Value(now + timedelta(seconds=s)))
        for n, s in enumerate(BACKOFF_SECONDS[:-1])
    ]
    waits.append(When(same, then=Value(now + timedelta(seconds=BACKOFF_SECONDS[-1]))))
    return {
        "failure_key": key,
        "repeats": Case(
            When(same, then=F("repeats") + 1),
            default=Value(0),
            output_field=models.PositiveSmallIntegerField(),
        ),
        "not_before": Case(*waits, default=Value(None), output_field=models.DateTimeField()),
    }


def with_bead_counts(repositories: Iterable["Repository"]) -> list["Repository"]:
    """The repositories, each with `count_<status>` and `count_total` set.

    One GROUP BY over the (repository, status, ...) index, not a join of every
    bead with Count(filter=...) per status. COUNT(*), not COUNT(id): SQLite
    answers it from the index alone (the text primary key is not in it).
    """
    repos = list(repositories)
    rows = Bead.objects.filter(repository__in=[r.pk for r in repos]).values_list(
        "repository_id", "status"
    )
    rows = rows.order_by()  # the model's ordering would join the GROUP BY
    counts = {(repo, status): n for repo, status, n in rows.annotate(n=models.Count("*"))}
    for repo in repos:
        for status in Bead.Status.values:
            setattr(repo, f"count_{status}", counts.get((repo.pk, status), 0))
        total = sum(counts.get((repo.pk, s), 0) for s in Bead.Status.values)
        repo.count_total = total  # type: ignore[attr-defined]  # for the page
    return repos


# C0 control characters: a NUL cannot be stored in PostgreSQL nor put in a
# commit message, and the others garble a terminal or a page. Multi-line
# text keeps tab, newline and carriage return (a browser's textarea sends CRLF).
# A single line (a title: a commit's subject) refuses DEL and C1 too, the
# bidirectional controls (U+202E shows `exe.txt` as `txt.exe`: a subject that
# reads as something else) and the Unicode line breaks (U+0085, U+2028, U+2029).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def control_characters(values: Iterable[str], multiline: bool = False) -> str:
    """Why these texts are refused (a message naming the first bad character), or ""."""
    pattern = CONTROL_IN_TEXT if multiline else CONTROL
    for value in values:
        if isinstance(value, str) and (match := pattern.search(value)):
            code = f"U+{ord(match.group()):04X}"
            allowed = " (tab and line breaks are allowed)" if multiline else ""
            return f"Contains the control character {code}; remove it{allowed}."
    return ""


class DependencyCycle(ValidationError):
    pass


class Dependency(models.Model):
    class Type(models.TextChoices):
        BLOCKS = "blocks"
        PARENT_CHILD = "parent-child"
        RELATED = "related"
        DISCOVERED_FROM = "discovered-from"
        CONDITIONAL_BLOCKS = "conditional-blocks"  # from bd: blocks readiness as `blocks` does

    # The types that keep a bead from being ready while the other bead is active.
    BLOCKING = (Type.BLOCKS, Type.CONDITIONAL_BLOCKS)

    issue = models.ForeignKey(Bead, models.CASCADE, related_name="dependencies")
    depends_on = models.ForeignKey(Bead, models.CASCADE, related_name="dependents")
    type = models.CharField(max_length=20, choices=Type.choices, default=Type.BLOCKS)
    created_at = models.DateTimeField(auto_now_add=True)
    # From a bd import: created_by and any key Corral does not model, as they came.
    extra = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        verbose_name_plural = "dependencies"
        # The hook walks down parent-child links from blocked parents (beads/hook.py):
        # this index holds only those links, so the walk never reads the others.
        indexes = [
            models.Index(
                fields=["depends_on", "issue"],
                condition=models.Q(type="parent-child"),
                name="dependency_parent_child",
            )
        ]
        constraints = [
            models.UniqueConstraint(fields=["issue", "depends_on"], name="one_dependency_per_pair"),
            models.CheckConstraint(
                condition=~models.Q(issue=models.F("depends_on")), name="no_self_dependency"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.issue_id} {self.type} on {self.depends_on_id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # The check and the insert happen under one lock, so two people adding
        # the two halves of a cycle at once cannot both succeed.
        with transaction.atomic():
            if self.type == self.Type.BLOCKS:
                lock_dependency_graph()
                self.clean()
            super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.issue_id and self.issue_id == self.depends_on_id:
            raise ValidationError("A bead cannot depend on itself.")
        if self.type == self.Type.BLOCKS and self.issue_id and self.depends_on_id:
            self.refuse_cycle()

    def refuse_cycle(self) -> None:
        """Raise DependencyCycle if `depends_on` already waits, through blocks, on `issue`."""
        path = blocks_path(self.depends_on_id, self.issue_id)
        if path:
            chain = " → ".join([self.issue_id, *path])
            raise DependencyCycle(f"This would make a cycle of blocking dependencies: {chain}.")


def advisory_lock(key: int) -> None:
    """Serialize a check-then-write with others of its kind, until the transaction ends.

    SQLite's IMMEDIATE transactions already serialize all writers.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def lock_dependency_graph() -> None:
    advisory_lock(0xBEAD)


def lock_plans() -> None:
    advisory_lock(0x91A5)


def blocks_path(start: str, goal: str) -> list[str] | None:
    """The chain of bead IDs from `start` to `goal` along blocks edges, or None."""
    previous: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier:
        edges = Dependency.objects.filter(
            issue_id__in=frontier, type=Dependency.Type.BLOCKS
        ).values_list("issue_id", "depends_on_id")
        frontier = []
        for issue_id, depends_on_id in edges:
            if depends_on_id in previous:
                continue
            previous[depends_on_id] = issue_id
            if depends_on_id == goal:
                chain = [goal]
                while (step := previous[chain[-1]]) is not None:
                    chain.append(step)
                return list(reversed(chain))
            frontier.append(depends_on_id)
    return None


class Plan(Transitions, models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        DONE = "done"

    MOVES = {
        "activate": move(Status.DRAFT, Status.ACTIVE),
        "finish": move(Status.ACTIVE, Status.DONE),
    }

    workspace = models.ForeignKey(Workspace, models.CASCADE, related_name="plans")
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    max_agents_per_wave = models.PositiveIntegerField(default=4)
    created_at = models.DateTimeField(auto_now_add=True)
    # Bumped by every edit: an edit made against an older version is refused
    # ("the plan changed"), never written over another person's.
    version = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("plan", args=[self.pk])

    def activate(self) -> bool:
        """Draft → active, refused if one of its beads is already in another active plan."""
        with transaction.atomic():
            lock_plans()  # two plans sharing a bead, activated at once: one is refused
            taken = WaveBead.objects.filter(
                bead__in=WaveBead.objects.filter(plan=self).values("bead"),
                plan__status=self.Status.ACTIVE,
            ).exclude(plan=self)
            if taken.exists():
                names = ", ".join(sorted(taken.values_list("bead_id", flat=True)))
                raise ValidationError(f"Already in another active plan: {names}.")
            return self.move("activate")

    def finish(self) -> bool:
        return self.move("finish")

    @classmethod
    def finish_landed(cls, beads: "Iterable[Bead]") -> int:
        """Finish each active plan of `beads` whose beads have all closed; how many."""
        plans = cls.objects.filter(status=cls.Status.ACTIVE, wavebead__bead__in=beads).distinct()
        pending = WaveBead.objects.filter(plan=models.OuterRef("pk")).exclude(
            bead__status=Bead.Status.CLOSED
        )
        return sum(plan.finish() for plan in plans.exclude(models.Exists(pending)))


class Wave(models.Model):
    plan = models.ForeignKey(Plan, models.CASCADE, related_name="waves")
    number = models.PositiveIntegerField()
    beads: "models.ManyToManyField[Bead, WaveBead]" = models.ManyToManyField(
        Bead, through="WaveBead", related_name="waves", blank=True
    )

    class Meta:
        ordering = ["plan", "number"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "number"], name="one_wave_number_per_plan")
        ]

    def __str__(self) -> str:
        return f"{self.plan} · wave {self.number}"


class WaveBead(models.Model):
    """A bead in a wave. The plan is repeated here so the database keeps a
    bead to one wave per plan."""

    wave = models.ForeignKey(Wave, models.CASCADE)
    bead = models.ForeignKey(Bead, models.CASCADE)
    plan = models.ForeignKey(Plan, models.CASCADE, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["plan", "bead"], name="one_wave_per_plan")]

    def __str__(self) -> str:
        return f"{self.bead_id} in {self.wave}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.plan_id = self.wave.plan_id
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self.plan_id = self.wave.plan_id
        others = WaveBead.objects.filter(bead_id=self.bead_id).exclude(pk=self.pk)
        if others.filter(plan_id=self.plan_id).exists():
            raise ValidationError({"bead": "This bead is already in another wave of this plan."})
        active = Plan.Status.ACTIVE
        if self.wave.plan.status == active and others.filter(plan__status=active).exists():
            raise ValidationError({"bead": "This bead is already in another active plan."})


class Comment(models.Model):
    """A note on a bead by a person or an agent (bd's comments). Agents see the
    recent ones in their context pack."""

    MAX_CHARS = 10_000

    bead = models.ForeignKey(Bead, models.CASCADE, related_name="comments")
    person = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    agent = models.CharField(
        max_length=100, blank=True, help_text="the agent's name, if one wrote it"
    )
    # A comment imported from bd: its author as bd named them (text, no account).
    author_name = models.CharField(max_length=200, blank=True)
    text = models.TextField(max_length=MAX_CHARS)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # bd's keys Corral does not model (its id, issue_id...), given back on export.
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["bead", "created_at"])]

    def __str__(self) -> str:
        return f"{self.author} on {self.bead_id}"

    @classmethod
    def add(cls, bead: Bead, text: str, person: Any = None, agent: str = "") -> "Comment":
        """Save a comment, or raise ValidationError naming what is wrong with it.
        Something was said about the bead: it need not wait out a back-off."""
        comment = cls(bead=bead, text=text, person=person, agent=agent)
        comment.full_clean(exclude=["bead", "person"])
        with transaction.atomic():
            comment.save()
            Bead.clear_wait(Bead.objects.filter(pk=bead.pk))
        return comment

    @property
    def author(self) -> str:
        if self.agent:
            return f"agent {self.agent}"
        if self.person:
            return self.person.get_username()
        return self.author_name or "someone"

    def bd_author(self) -> str:
        """The author as bd writes it: a name."""
        if self.agent:
            return self.agent
        return self.person.get_username() if self.person else self.author_name

    def clean(self) -> None:
        if not self.text.strip():
            raise ValidationError({"text": "Write something."})
        if len(self.text) > self.MAX_CHARS:
            raise ValidationError({"text": f"At most {self.MAX_CHARS} characters."})
        if problem := control_characters([self.text], multiline=True):
            raise ValidationError({"text": problem})
