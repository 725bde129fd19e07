"""Reading a rate limit in an agent CLI's output: its quota and HTTP 429
messages, as its preset knows them (agents/presets.py, `rate_limits`), and
the reset time the message names.

What an agent prints is hostile input, and much of it is not the CLI's own:
a tool's output (a file read, a test run) streams by inside the CLI's JSON
events. So in a JSON line only the error events are read (Claude Code's
`result` with `is_error`, an `assistant` message carrying an `error`, Codex's
`error` and `turn.failed`, the older `msg` of type `error`) and any event's
HTTP status 429; a plain line (the CLI's own stderr, or a CLI without JSON
output) is read whole. The reset time, where the message gives one: an epoch
after a `|` (Claude Code's "…limit reached|1750000000"), an ISO time, "try
again in 2h 5m", "resets 3pm (Europe/Paris)"; else CORRAL_RATE_LIMIT_WAIT_SECONDS.
"""

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

# A reset sooner than this is taken as this (the next agent would hit the limit
# again at once); one further off than this, as this (a person may resume sooner).
SHORTEST_WAIT = timedelta(seconds=30)
LONGEST_WAIT = timedelta(days=7)
MESSAGE_CHARS = 500  # of the message kept with the session and the agent
LINE_CHARS = 1_000_000  # of a line still coming, kept
# A JSON line without any of these holds no error event: not parsed.
ERROR_MARKS = ('"error', '"is_error"', "429")
STATUS_KEYS = ("status", "status_code", "statusCode", "http_status", "api_error_status")

EPOCH = re.compile(r"\|\s*(\d{10})(\d{3})?\b")
ISO_TIME = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)
UNIT = r"(?:d|days?|h|hrs?|hours?|m|mins?|minutes?|s|secs?|seconds?)\b"
AFTER = re.compile(
    rf"(?:try again|retry|resets?)\s+(?:in|after)\s+((?:\d+(?:\.\d+)?\s*{UNIT}[\s,]*(?:and\s+)?)+)",
    re.IGNORECASE,
)
SPAN_PART = re.compile(rf"(\d+(?:\.\d+)?)\s*({UNIT})", re.IGNORECASE)
SECONDS_IN = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
AT_TIME = re.compile(
    r"resets?\s+(?:at\s+)?(\d{1,2})(?::(\d{2}))?\s*([ap])?\.?(?:m\b\.?)?\s*(?:\(([^)]{1,64})\))?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RateLimit:
    message: str  # the CLI's words, on one line, cut to MESSAGE_CHARS
    resets_at: datetime


class LimitReader:
    """Reads an agent's output line by line (any split) for its preset's rate
    limit messages; the first one found is the answer."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = [re.compile(p, re.IGNORECASE) for p in patterns]
        self.partial = ""

    def feed(self, text: str) -> RateLimit | None:
        if not self.patterns:
            return None
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()[-LINE_CHARS:]
        for line in lines:
            if found := self.line(line):
                return found
        return None

    def finish(self) -> RateLimit | None:
        line, self.partial = self.partial, ""
        return self.line(line) if self.patterns else None

    def line(self, line: str) -> RateLimit | None:
        # An event's texts together: its error's code and its words name the reset.
        text = " · ".join(error_texts(line))
        if not any(pattern.search(text) for pattern in self.patterns):
            return None
        return RateLimit(" ".join(text.split())[:MESSAGE_CHARS], reset_time(text))


def error_texts(line: str) -> list[str]:
    """The texts of a line that may be the CLI's own error: a plain line whole,
    a JSON line's error event (see the module's docstring), nothing else."""
    line = line.strip()
    if not line:
        return []
    if not line.startswith("{"):
        return [line]
    if not any(mark in line for mark in ERROR_MARKS):
        return []
    try:
        event = json.loads(line)
    except ValueError:
        return [line]  # not JSON after all: a plain line
    return event_errors(event) if isinstance(event, dict) else []


def event_errors(event: dict[str, Any]) -> list[str]:
    kind = event.get("type")
    texts: list[str] = []
    if kind == "result" and (
        event.get("is_error") is True or str(event.get("subtype", "")).startswith("error")
    ):
        texts = strings(event.get("result"), event.get("error"), event.get("errors"))
    elif kind == "assistant" and event.get("error"):
        texts = strings(event.get("error"), *message_texts(event.get("message")))
    elif kind in ("error", "turn.failed"):
        texts = strings(event.get("message"), event.get("error"))
    else:
        payload = event.get("msg") or event.get("payload")
        if isinstance(payload, dict) and payload.get("type") == "error":
            texts = strings(payload.get("message"), payload.get("error"))
    if too_many_requests(event):
        texts.append("HTTP 429 Too Many Requests")
    return [text for text in texts if text]


def message_texts(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return []
    return [part.get("text") for part in content if isinstance(part, dict)]


def strings(*values: Any) -> list[str]:
    """The words in error values: strings as they are; an object's type, code,
    message and reset fields; a list's items."""
    found: list[str] = []
    for value in values:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list):
            found += strings(*value[:20])
        elif isinstance(value, dict):
            words = [value.get(k) for k in ("type", "code", "message")]
            text = ": ".join(w for w in words if isinstance(w, str))
            found.append(text + reset_hint(value))
    return found


def reset_hint(error: dict[str, Any]) -> str:
    """An error object's own reset fields, in words reset_time() reads."""
    seconds = error.get("resets_in_seconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        return f" (try again in {seconds}s)"
    for key in ("resets_at", "reset_at", "resetsAt"):
        at = error.get(key)
        if isinstance(at, int) and not isinstance(at, bool):
            return f" |{at}"
        if isinstance(at, str):
            return f" (resets at {at})"
    return ""


def too_many_requests(event: dict[str, Any]) -> bool:
    """Whether the event, or its error object, carries HTTP status 429."""
    error = event.get("error")
    for where in (event, error if isinstance(error, dict) else {}):
        if any(where.get(key) in (429, "429") for key in STATUS_KEYS):
            return True
    return False


def reset_time(text: str, now: datetime | None = None) -> datetime:
    """When the limit the message tells of resets, within SHORTEST_WAIT and
    LONGEST_WAIT from now; CORRAL_RATE_LIMIT_WAIT_SECONDS from now if it names none."""
    now = now or timezone.now()
    named = epoch(text) or iso_time(text) or after(text, now) or time_of_day(text, now)
    if named is None:
        return now + timedelta(seconds=settings.RATE_LIMIT_WAIT_SECONDS)
    return max(now + SHORTEST_WAIT, min(named, now + LONGEST_WAIT))


def epoch(text: str) -> datetime | None:
    if not (match := EPOCH.search(text)):
        return None
    return datetime.fromtimestamp(int(match.group(1)), UTC)


def iso_time(text: str) -> datetime | None:
    if not (match := ISO_TIME.search(text)):
        return None
    try:
        parsed = parse_datetime(match.group(0))
    except ValueError:  # 2025-13-45: the shape of a time, not one
        return None
    if parsed is None:
        return None
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=local_zone())


def after(text: str, now: datetime) -> datetime | None:
    """ "try again in 2h 5m", "resets in 3 hours", "retry after 37 seconds"."""
    if not (match := AFTER.search(text)):
        return None
    seconds = sum(
        float(amount) * SECONDS_IN[unit[0].lower()]
        for amount, unit in SPAN_PART.findall(match.group(1))
    )
    return now + timedelta(seconds=min(seconds, LONGEST_WAIT.total_seconds()))


def time_of_day(text: str, now: datetime) -> datetime | None:
    """ "resets 3pm", "reset at 3:30 pm (America/New_York)", "resets at 15:00":
    the next such time, in the zone named, else this machine's (the CLI's own)."""
    for match in AT_TIME.finditer(text):
        hour, minute, half, zone = match.groups()
        if minute is None and half is None:
            continue  # "resets 5 times": a number, not a time
        hour_n, minute_n = int(hour), int(minute or 0)
        if half is not None:
            if not 1 <= hour_n <= 12:
                continue
            hour_n = hour_n % 12 + (12 if half.lower() == "p" else 0)
        if hour_n > 23 or minute_n > 59:
            continue
        here = now.astimezone(zone_named(zone) or local_zone())
        at = here.replace(hour=hour_n, minute=minute_n, second=0, microsecond=0)
        return at if at > here else at + timedelta(days=1)
    return None


def zone_named(name: str | None) -> tzinfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):  # not a zone ("PST", a path)
        return None


def local_zone() -> tzinfo:
    """This machine's time zone: the one the CLI, run here, prints its times in."""
    return datetime.now().astimezone().tzinfo or UTC
