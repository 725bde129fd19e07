"""How things read to a person, on every page: status badges, bead links,
SHAs, times, durations, diffs, Markdown and failures.

`{% load corral_display %}`. The tags work on duck-typed objects (anything
with `status` and `get_status_display()`, `get_absolute_url()`, ...): this is
the bottom layer, so it knows no bead, session or submission. Each markup tag
renders a small template under templates/includes/; those files end without
a newline, because their output goes inline.
"""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst

from workspace import failures, markdown

register = template.Library()

SHA_SHOWN = 12  # characters of a commit SHA shown; the full one is in the title
ID_SHOWN = 8  # characters of a UUID shown
DIFF_LINES_SHOWN = 5000
# A hunk's lines by their first character; any other line ends the hunk (a file header).
HUNK_BODY = {"+": "add", "-": "del", " ": "ctx", "\\": "meta"}


# Plain helpers: the tags and filters below use them, and so can Python code.


def diff_lines(lines: Iterable[str]) -> list[tuple[str, str]]:
    """(css class, text) per line of a git diff: add, del, hunk, meta or ctx."""
    shown, in_hunk = [], False
    for text in lines:
        if text.startswith("@@"):
            kind, in_hunk = "hunk", True
        elif in_hunk and text[:1] in HUNK_BODY:
            kind = HUNK_BODY[text[:1]]
        else:
            kind, in_hunk = "meta", False
        shown.append((kind, text))
    return shown


def lease_left(expires: datetime | None, now: datetime | None = None) -> tuple[int | None, str]:
    """Seconds left on a lease and how to say it: m:ss, "expired" or "no lease"."""
    if expires is None:
        return None, "no lease"
    seconds = int((expires - (now or timezone.now())).total_seconds())
    if seconds <= 0:
        return 0, "expired"
    return seconds, mmss(seconds)


# Filters.


@register.filter
def mmss(seconds: float | str | None) -> str:
    """Seconds as m:ss (90 -> "1:30"); below zero is 0:00, not a number is ""."""
    try:
        whole = max(int(float(seconds)), 0)  # type: ignore[arg-type]  # None: the except
    except (TypeError, ValueError):
        return ""
    return f"{whole // 60}:{whole % 60:02d}"


@register.filter
def duration_ms(ms: float | str | None) -> str:
    """Milliseconds as "12 ms"; not a number is ""."""
    try:
        return f"{int(float(ms))} ms"  # type: ignore[arg-type]  # None: the except
    except (TypeError, ValueError):
        return ""


@register.filter
def short_sha(value: str | None) -> str:
    """The first SHA_SHOWN characters of a commit SHA."""
    return (value or "")[:SHA_SHOWN]


@register.filter
def short_id(value: Any) -> str:
    """The first ID_SHOWN characters of an id (a session's UUID)."""
    return str(value)[:ID_SHOWN] if value is not None else ""


@register.filter
def headline(output: str | None) -> str:
    """The line of a failure that says what failed (workspace/failures.py): for
    a table's cell, where the whole is a link away."""
    return failures.headline(output)


@register.filter(name="markdown")
def markdown_html(text: str | None) -> SafeString:
    """Markdown as HTML, cleaned of anything a page must not run (workspace/markdown.py)."""
    return mark_safe(markdown.render(text or ""))  # cleaned by nh3 in render()


# Markup.


@register.inclusion_tag("includes/status_badge.html")
def status_badge(obj: Any, data: bool = False) -> dict[str, Any]:
    """`obj.status` as a coloured badge, labelled with its display name.

    data=True also marks the badge with data-status: on a page or part about
    one thing, where scripts and tests look the status up.
    """
    return {"status": obj.status, "label": capfirst(obj.get_status_display()), "data": data}


@register.inclusion_tag("includes/gate_badge.html")
def gate_badge(result: Any, timed: bool = False) -> dict[str, Any]:
    """A gate's outcome (pass, fail, waiting) as a badge.

    timed=True: the compact form for a list, with the gate's name and time in it.
    """
    return {
        "gate": result.gate,
        "outcome": result.outcome,
        "took": duration_ms(result.duration_ms),
        "timed": timed,
    }


@register.inclusion_tag("includes/bead_link.html")
def bead_link(bead: Any, in_text: bool = False) -> dict[str, Any]:
    """The bead's id, linked to it on its repository's page.

    in_text=True: the link sits in running text (a commit subject); it is set
    apart from it and names the bead's title and status on hover.
    """
    ctx = {"id": bead.id, "url": bead.get_absolute_url(), "in_text": in_text}
    if in_text:
        ctx["title"] = f"{bead.title} ({bead.get_status_display()})"
    return ctx


@register.inclusion_tag("includes/sha.html")
def sha(value: str | None, full: bool = False, dom_id: str = "") -> dict[str, Any]:
    """A commit SHA: its first 12 characters with the full one on hover (full=True:
    all of it), or a muted dash when there is none."""
    return {"value": value, "shown": value if full else short_sha(value), "dom_id": dom_id}


@register.inclusion_tag("includes/when.html")
def when(value: datetime | str | None, fmt: str = "") -> dict[str, Any]:
    """A moment as a <time>: "5 minutes ago", or formatted with the date format
    `fmt`; the ISO date in its datetime attribute, the full one on hover.

    An ISO string (as git gives) is parsed; one that does not parse is shown as
    it is, and None as nothing.
    """
    moment = value
    if isinstance(value, str):
        try:
            moment = parse_datetime(value)
        except ValueError:
            moment = None
    return {"moment": moment, "raw": value or "", "fmt": fmt}


@register.inclusion_tag("includes/lease.html")
def lease(expires: datetime | None, now: datetime | None = None) -> dict[str, Any]:
    """A lease's countdown (m:ss, "expired" or "no lease"); data-seconds lets the
    page's script tick it down between polls."""
    seconds, label = lease_left(expires, now)
    return {"expires": expires, "seconds": seconds, "label": label, "expired": seconds == 0}


@register.inclusion_tag("includes/time_bar.html")
def time_bar(clock: Mapping[str, Any], ids: bool = False) -> dict[str, Any]:
    """A session's time bar and its label, from a clock: limit, used and left in
    seconds, and a label (corral.pages.display.session_clock makes one).

    ids=True: the page's own time bar, with the ids its scripts and tests use.
    """
    return {"clock": clock, "ids": ids}


@register.inclusion_tag("includes/diff.html")
def diff(patch: str | None, empty: str = "The patch is empty.") -> dict[str, Any]:
    """A patch as a coloured diff, cut after DIFF_LINES_SHOWN lines; `empty` is
    said when there is no patch."""
    lines = (patch or "").splitlines()
    return {
        "lines": diff_lines(lines[:DIFF_LINES_SHOWN]),
        "cut": len(lines) > DIFF_LINES_SHOWN,
        "empty": empty,
    }


def folded(headline: str, output: str | None, failed: bool) -> dict[str, Any]:
    text = (output or "").strip()
    return {"headline": headline, "output": text, "more": text != headline, "failed": failed}


@register.inclusion_tag("includes/output.html")
def failure(output: str | None) -> dict[str, Any]:
    """A failure's headline line (workspace/failures.py), the whole output
    folded beneath it when there is more."""
    return folded(failures.headline(output), output, failed=True)


@register.inclusion_tag("includes/output.html")
def output(text: str | None) -> dict[str, Any]:
    """Output that did not fail (a passed gate's detail): its first line, the
    rest folded beneath it."""
    lines = (text or "").strip().splitlines()
    return folded(lines[0] if lines else "", text, failed=False)


@register.inclusion_tag("includes/scope.html")
def scope(patterns: Iterable[str] | None) -> dict[str, Any]:
    """A bead's scope: its path patterns, or a muted "any"."""
    return {"patterns": list(patterns or [])}


@register.inclusion_tag("includes/polling.html")
def polling(title: str) -> dict[str, Any]:
    """The "live" mark of a part of the page that refreshes itself; `title` says how often."""
    return {"title": title}
