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
shapes, or holds anything but whole non-negative numbers, counts for nothing.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import models, transaction
from django.db.models import F, Sum
from django.utils import timezone

KINDS = ("input", "output", "cache_read", "cache_write")
CLAUDE, CODEX, REPORTED = "claude-code", "codex", "reported"
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

    def as_dict(self) -> dict[str, int]:
        return {kind: getattr(self, kind) for kind in KINDS}


def tokens(value: Any) -> int:
    """A token count from hostile JSON: a whole number in range, else 0."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return value if 0 <= value <= MAX_TOKENS else 0


def counts(usage: Any, **names: str) -> Counts | None:
    """Counts from a usage object, reading each kind from the key `names` gives it."""
    if not isinstance(usage, dict):
        return None
    return Counts(**{kind: tokens(usage.get(key)) for kind, key in names.items()})


def claude_counts(usage: Any) -> Counts | None:
    return counts(
        usage,
        input="input_tokens",
        output="output_tokens",
        cache_read="cache_read_input_tokens",
        cache_write="cache_creation_input_tokens",
    )


def claude_model_counts(usage: Any) -> Counts | None:
    """A `result` line's `modelUsage` entry (camelCase keys)."""
    return counts(
        usage,
        input="inputTokens",
        output="outputTokens",
        cache_read="cacheReadInputTokens",
        cache_write="cacheCreationInputTokens",
    )


def codex_counts(usage: Any) -> Counts | None:
    """Codex counts cached input inside input_tokens: input here is the rest."""
    found = counts(
        usage, input="input_tokens", output="output_tokens", cache_read="cached_input_tokens"
    )
    if found is not None:
        found.input = max(0, found.input - found.cache_read)
    return found


@dataclass
class UsageReader:
    """Reads an agent's output line by line and keeps its running totals per
    channel and model. `changed` says whether the last feed moved them."""

    model: str = UNKNOWN_MODEL  # when the output never names one (Codex)
    totals: dict[tuple[str, str], Counts] = field(default_factory=dict)
    seen_messages: set[str] = field(default_factory=set)
    partial: str = ""

    def feed(self, text: str) -> bool:
        """Take more output (any split); True when the totals changed."""
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()[-1_000_000:]  # a line still coming, within reason
        return any([self.line(line) for line in lines])

    def finish(self) -> bool:
        line, self.partial = self.partial, ""
        return self.line(line)

    def line(self, line: str) -> bool:
        line = line.strip()
        if not line.startswith("{") or '"' not in line:
            return False
        try:
            event = json.loads(line)
        except ValueError:
            return False
        if not isinstance(event, dict):
            return False
        kind = event.get("type")
        if kind == "assistant":
            return self.claude_turn(event.get("message"))
        if kind == "result":
            return self.claude_result(event)
        if kind == "turn.completed":
            return self.add(CODEX, self.model, codex_counts(event.get("usage")))
        payload = event.get("msg") or event.get("payload") or event
        if isinstance(payload, dict) and payload.get("type") == "token_count":
            info = payload.get("info")
            total = codex_counts(info.get("total_token_usage") if isinstance(info, dict) else None)
            return self.set(CODEX, self.model, total)
        return False

    def claude_turn(self, message: Any) -> bool:
        if not isinstance(message, dict):
            return False
        message_id = str(message.get("id", ""))
        if message_id and message_id in self.seen_messages:
            return False  # another content block of a turn already counted
        self.seen_messages.add(message_id)
        return self.add(
            CLAUDE, model_name(message.get("model")), claude_counts(message.get("usage"))
        )

    def claude_result(self, event: dict[str, Any]) -> bool:
        per_model = event.get("modelUsage")
        if isinstance(per_model, dict) and per_model:
            for key in [k for k in self.totals if k[0] == CLAUDE]:
                del self.totals[key]
            for model, usage in per_model.items():
                self.set(CLAUDE, model_name(model), claude_model_counts(usage))
            return True
        total = claude_counts(event.get("usage"))
        if total is None:
            return False
        models_seen = [k for k in self.totals if k[0] == CLAUDE]
        model = models_seen[0][1] if len(models_seen) == 1 else self.model
        for key in models_seen:
            del self.totals[key]
        return self.set(CLAUDE, model, total)

    def add(self, channel: str, model: str, more: Counts | None) -> bool:
        if more is None or not more.total():
            return False
        self.totals.setdefault((channel, model), Counts()).add(more)
        return True

    def set(self, channel: str, model: str, total: Counts | None) -> bool:
        if total is None:
            return False
        self.totals[(channel, model)] = total
        return True


def model_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        return UNKNOWN_MODEL
    return value.strip()[:100]


def model_from_argv(argv: Iterable[str]) -> str:
    """The model an agent's command names (`-m X`, `--model X`, `--model=X`), if any."""
    args = list(argv)
    for n, arg in enumerate(args):
        if arg.startswith("--model="):
            return model_name(arg.partition("=")[2])
        if arg in ("-m", "--model") and n + 1 < len(args):
            return model_name(args[n + 1])
    return UNKNOWN_MODEL


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
        if self.agent_id is None or self.repository_id is None:
            # Through the field, not an import: agents.models imports this module,
            # and Corral's packages are imported at module level only.
            sessions = self._meta.get_field("session").related_model._default_manager
            self.agent_id, self.repository_id = (
                sessions.filter(pk=self.session_id)
                .values_list("agent_id", "bead__repository_id")
                .get()
            )
        super().save(*args, **kwargs)

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

    @classmethod
    def totals_by_model(
        cls, rows: "models.QuerySet[TokenUsage] | None" = None
    ) -> dict[str, dict[str, int]]:
        """{model: {kind: tokens}} over `rows` (every row by default), summed in the database."""
        rows = cls.objects.all() if rows is None else rows
        summed = rows.values("model").annotate(**{k: Sum(k) for k in KINDS}).order_by("model")
        return {r["model"]: {k: r[k] or 0 for k in KINDS} for r in summed}


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
