"""Reading the tokens an agent's CLI reports in its output: Claude Code's
stream-json lines and `codex exec --json` events. What an agent prints is
hostile input: a line that is not one of these shapes, or holds anything but
whole non-negative numbers, counts for nothing.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agents.models.usage import CLAUDE, CODEX, UNKNOWN_MODEL, Counts, tokens


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
