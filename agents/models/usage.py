"""Tokens each session used, by kind and model, and what they cost.

Tokens are the truth; money is derived from a price table people edit in the
admin. Usage reaches Corral by three channels, each kept apart per session
(one row per session, model and channel):

- `claude-code`: Claude Code's `--output-format stream-json` lines. Each
  `assistant` message carries its turn's `usage` (repeated, with the same
  message id, for each content block of the turn: counted once); the final
  `result` line carries the run's totals, per model in `modelUsage`, which
  then replace what the turns added up to.
- `codex`: `codex exec --json` lines. `turn.completed` carries one turn's
  `usage` (added up); the `token_count` events of Codex's event stream carry
  the running `total_token_usage` (the latest wins).
- `reported`: what the agent says itself, through the API or
  `corral usage --input N --output M` (added up).

What an agent prints is hostile input: a line that is not one of these
shapes, or holds anything but whole non-negative numbers, counts for nothing."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import models, transaction
from django.db.models import F, Sum
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

CLAUDE, CODEX, REPORTED = "claude-code", "codex", "reported"
KINDS = ("input", "output", "cache_read", "cache_write")
MAX_TOKENS = 10**12  # more than any session: a bigger number is a lie or a bug
UNKNOWN_MODEL = "unknown"


@dataclass
class Counts:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def add(self, other: "Counts") -> None:
        for kind in KINDS:
            setattr(self, kind, getattr(self, kind) + getattr(other, kind))

    def total(self) -> int:
        return sum(getattr(self, kind) for kind in KINDS)

    def minus(self, other: "Counts") -> "Counts":
        return Counts(**{kind: getattr(self, kind) - getattr(other, kind) for kind in KINDS})

    def as_dict(self) -> dict[str, int]:
        return {kind: getattr(self, kind) for kind in KINDS}


def tokens(value: Any) -> int:
    """A token count from hostile JSON: a whole number in range, else 0."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value if 0 <= value <= MAX_TOKENS else 0


class TokenUsage(models.Model):
    """A session's tokens on one model by one channel: running totals."""

    session = models.ForeignKey("agents.Session", models.CASCADE, related_name="usage")
    # The session's agent and its bead's repository, copied when the row is made
    # (save()): the usage page sums every row per agent, and the last days' per
    # repository, and joining each row to its session and bead took most of that.
    agent = models.ForeignKey("agents.Agent", models.CASCADE, related_name="+", editable=False)
    repository = models.ForeignKey(
        "workspace.Repository", models.CASCADE, related_name="+", editable=False
    )
    model = models.CharField(max_length=100, default=UNKNOWN_MODEL)
    channel = models.CharField(max_length=20)
    input = models.PositiveBigIntegerField(default=0)
    output = models.PositiveBigIntegerField(default=0)
    cache_read = models.PositiveBigIntegerField(default=0)
    cache_write = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The day its session was opened (when its tokens count), copied with the agent.
    day = models.DateField(null=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["session", "model", "channel"], name="one_usage_row_per_channel"
            )
        ]
        verbose_name_plural = "token usage"

    def __str__(self) -> str:
        return f"{self.session_id} {self.model} ({self.channel})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Saved with its session's agent, repository and day, and what it adds
        (or takes back) added to that day's rollup in the same transaction."""
        if self.agent_id is None or self.repository_id is None or self.day is None:
            # Through the field, not an import: agents.models imports this module,
            # and Corral's packages are imported at module level only.
            session_model: Any = self._meta.get_field("session").related_model
            sessions = session_model._default_manager
            self.agent_id, self.repository_id, opened = (
                sessions.filter(pk=self.session_id)
                .values_list("agent_id", "bead__repository_id", "created_at")
                .get()
            )
            self.day = timezone.localdate(opened)
        with transaction.atomic():
            before = Counts()
            if not self._state.adding and self.pk is not None:
                old = TokenUsage.objects.select_for_update().filter(pk=self.pk).values(*KINDS)
                before = Counts(**(old.first() or {}))
            super().save(*args, **kwargs)
            UsageDay.add(self, self.counts().minus(before))

    def counts(self) -> Counts:
        return Counts(**{kind: getattr(self, kind) for kind in KINDS})

    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write

    @classmethod
    def put(cls, session_id: Any, channel: str, model: str, total: Counts) -> None:
        """Set a parsed channel's running total (the reader holds the whole of it)."""
        cls.objects.update_or_create(
            session_id=session_id,
            model=model,
            channel=channel,
            defaults={**total.as_dict(), "updated_at": timezone.now()},
        )

    @classmethod
    def report(cls, session_id: Any, model: str, more: Counts) -> None:
        """Add what the agent reports itself (a conditional increment: reports may race)."""
        with transaction.atomic():
            row, _ = cls.objects.get_or_create(session_id=session_id, model=model, channel=REPORTED)
            cls.objects.filter(pk=row.pk).update(
                **{kind: F(kind) + getattr(more, kind) for kind in KINDS},
                updated_at=timezone.now(),
            )
            UsageDay.add(row, more)

    @classmethod
    def totals_by_model(
        cls, rows: "models.QuerySet[TokenUsage] | None" = None
    ) -> dict[str, dict[str, int]]:
        """{model: {kind: tokens}} over `rows` (every row by default), summed in the database."""
        rows = cls.objects.all() if rows is None else rows
        summed = rows.values("model").annotate(**{k: Sum(k) for k in KINDS}).order_by("model")
        return {r["model"]: {k: r[k] or 0 for k in KINDS} for r in summed}


class UsageDay(models.Model):
    """Tokens per day (its sessions' opening day), agent, repository and model: a
    rollup of TokenUsage that the usage page and /metrics read instead of every
    row. Kept by every write of a usage row, in its transaction, by increments
    (F(), so writers never overwrite each other): a row saved again with the same
    totals adds nothing. rebuild() makes it again from the rows."""

    day = models.DateField()
    agent = models.ForeignKey("agents.Agent", models.CASCADE, related_name="+")
    repository = models.ForeignKey("workspace.Repository", models.CASCADE, related_name="+")
    model = models.CharField(max_length=100)
    input = models.BigIntegerField(default=0)
    output = models.BigIntegerField(default=0)
    cache_read = models.BigIntegerField(default=0)
    cache_write = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "agent", "repository", "model"], name="one_usage_day_per_series"
            )
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.agent_id} {self.repository_id} {self.model}"

    @classmethod
    def add(cls, row: TokenUsage, more: Counts) -> None:
        """Add `more` (negative: take back) to the day of the usage row `row`."""
        if not any(more.as_dict().values()):
            return
        key: dict[str, Any] = {
            "day": row.day,
            "agent_id": row.agent_id,
            "repository_id": row.repository_id,
        }
        with transaction.atomic():
            day, _ = cls.objects.get_or_create(**key, model=row.model)
            cls.objects.filter(pk=day.pk).update(
                **{kind: F(kind) + getattr(more, kind) for kind in KINDS}
            )

    @classmethod
    def rebuild(cls) -> int:
        """Every day again from the usage rows (after a bulk write that skipped
        save()); how many days."""
        series = ("day", "agent_id", "repository_id", "model")
        summed = TokenUsage.objects.values(*series).annotate(**{k: Sum(k) for k in KINDS})
        with transaction.atomic():
            cls.objects.all().delete()
            days = [UsageDay(**row) for row in summed.order_by()]
            made = UsageDay.objects.bulk_create(days, batch_size=2000)
        return len(made)

    @classmethod
    def totals_by_model(cls) -> dict[str, dict[str, int]]:
        """{model: {kind: tokens}} of every day, as TokenUsage.totals_by_model() of every row."""
        summed = (
            cls.objects.values("model").annotate(**{k: Sum(k) for k in KINDS}).order_by("model")
        )
        found = {r["model"]: {k: r[k] or 0 for k in KINDS} for r in summed}
        return {model: kinds for model, kinds in found.items() if any(kinds.values())}


@receiver(post_delete, sender=TokenUsage)
def usage_deleted(sender: Any, instance: TokenUsage, **kwargs: Any) -> None:
    """A usage row gone (its session deleted): its tokens leave its day. Never
    a day made for it: an agent or repository deleted with it takes its days."""
    if instance.day is None:  # never saved through save(): never counted
        return
    day = UsageDay.objects.filter(
        day=instance.day,
        agent_id=instance.agent_id,
        repository_id=instance.repository_id,
        model=instance.model,
    )
    day.update(**{kind: F(kind) - getattr(instance, kind) for kind in KINDS})


class Price(models.Model):
    """What a model's tokens cost, per million; people edit it in the admin.

    `model` matches a usage row's model exactly or as its prefix (the longest
    wins): `claude-sonnet-4` prices `claude-sonnet-4-5-20250929`.
    """

    model = models.CharField(max_length=100, unique=True)
    input_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal(0))
    output_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal(0))
    cache_read_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal(0))
    cache_write_per_mtok = models.DecimalField(max_digits=10, decimal_places=4, default=Decimal(0))
    currency = models.CharField(max_length=3, default="USD")

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return self.model

    def cost(self, used: dict[str, int]) -> Decimal:
        per = {kind: getattr(self, f"{kind}_per_mtok") for kind in KINDS}
        return sum((per[k] * used.get(k, 0) for k in KINDS), Decimal(0)) / 1_000_000


class PriceTable:
    """Every price, read once; `cost` of a {model: {kind: tokens}}."""

    def __init__(self) -> None:
        self.prices = sorted(Price.objects.all(), key=lambda p: -len(p.model))

    def for_model(self, model: str) -> Price | None:
        return next((p for p in self.prices if model.startswith(p.model)), None)

    def cost(self, by_model: dict[str, dict[str, int]]) -> Decimal | None:
        """The cost, or None when a model with tokens has no price (unknown, not free)."""
        total = Decimal(0)
        for model, used in by_model.items():
            price = self.for_model(model)
            if price is None:
                if any(used.values()):
                    return None
                continue
            total += price.cost(used)
        return total


def implausible(report: Counts, ceiling: int) -> str:
    """Why one usage report cannot be believed (""): a count, or what budgets
    count of it (input + output + cache writes), over `ceiling`."""
    budgeted = report.input + report.output + report.cache_write
    biggest = max(budgeted, *report.as_dict().values())
    if biggest <= ceiling:
        return ""
    return (
        f"A report of {biggest:,} tokens is over the {ceiling:,} one report may bring "
        "(CORRAL_USAGE_REPORT_MAX_TOKENS): report as you go, each turn's tokens."
    )
