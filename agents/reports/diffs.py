"""A submission's diff as people read it: files (each folded on its own),
hunks, lines numbered on both sides, highlighted by Pygments; more context
around a hunk read from git; unified or side by side; and, for the bead's
next submission, which commented lines it changed.

The patch is hostile input. Every piece of its text reaches a page escaped:
Pygments escapes what it highlights, and the rest goes through
`django.utils.html.escape` here or Django's autoescape in the templates.
Its paths are only shown: the lines around a hunk are read from the blob
git lists in the base commit's tree under the path (`ls-tree`), by its
object id, and only for a file the diff changes.
"""

import difflib
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache as memoized

from django.core.cache import cache
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from pygments import highlight
from pygments.formatters.html import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_for_filename
from pygments.util import ClassNotFound

from agents.models import ReviewComment, Submission
from agents.patches import paths_from_header, unquote
from workspace import gitops

LINES_SHOWN = 5000  # lines of a patch drawn; the rest is cut, saying so
HIGHLIGHT_CHARS = 200_000  # a hunk side longer than this is shown plain (Pygments' time)
CONTEXT_STEP = 20  # lines "more context" adds at a time
CONTEXT_MAX = 500  # lines one request may ask for
BLOB_MAX_BYTES = 2_000_000  # a blob larger is not read for context nor compared
HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)")
FORMATTER = HtmlFormatter(nowrap=True)
VIEWS = ("unified", "split")
PAINT_KEPT_SECONDS = 24 * 3600


class ContextError(ValueError):
    """A request for more context the diff does not allow; the message says why."""


@dataclass
class Row:
    kind: str  # add, del, ctx, meta ("\ No newline at end of file"), more (context read from git)
    old: int | None
    new: int | None
    text: str
    html: SafeString = mark_safe("")
    comments: list[ReviewComment] = field(default_factory=list)

    @property
    def side(self) -> str:
        return "old" if self.kind == "del" else "new"

    @property
    def line(self) -> int | None:
        return self.old if self.kind == "del" else self.new


@dataclass
class Hunk:
    index: int
    old_start: int
    old_count: int
    new_start: int
    new_count: int
    section: str
    rows: list[Row] = field(default_factory=list)
    gap: tuple[int, int] | None = None  # the base's lines not shown before it (old side)

    @property
    def header(self) -> str:
        return f"@@ -{self.old_start},{self.old_count} +{self.new_start},{self.new_count} @@"

    @property
    def more(self) -> tuple[int, int] | None:
        """The lines "more context" first asks for: the gap's last ones, next to the hunk."""
        if self.gap is None:
            return None
        return max(self.gap[0], self.gap[1] - CONTEXT_STEP + 1), self.gap[1]

    @property
    def offset(self) -> int:
        """new line = old line + offset, for the lines between this hunk and the one before."""
        return self.new_start - self.old_start

    def pairs(self) -> list[tuple[Row | None, Row | None]]:
        """Side by side: each removed line beside the added one in its place."""
        out: list[tuple[Row | None, Row | None]] = []
        dels: list[Row] = []
        adds: list[Row] = []

        def flush() -> None:
            for n in range(max(len(dels), len(adds))):
                out.append((dels[n] if n < len(dels) else None, adds[n] if n < len(adds) else None))
            dels.clear()
            adds.clear()

        for row in self.rows:
            if row.kind == "del":
                if adds:
                    flush()
                dels.append(row)
            elif row.kind == "add":
                adds.append(row)
            else:
                flush()
                out.append((row, row))
        flush()
        return out


@dataclass
class FileDiff:
    index: int
    old_path: str | None
    new_path: str | None
    header: list[str] = field(default_factory=list)
    hunks: list[Hunk] = field(default_factory=list)
    added: int = 0
    removed: int = 0
    binary: bool = False
    tail: int | None = None  # the first base line after the last hunk, for context below
    table: SafeString = mark_safe("")  # its hunks as a page draws them (corral/pages/diffs.py)

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or "(unnamed)"

    @property
    def status(self) -> str:
        if self.old_path is None:
            return "added"
        if self.new_path is None:
            return "deleted"
        if self.old_path != self.new_path:
            return "renamed"
        return "modified"

    @property
    def more_below(self) -> tuple[int, int] | None:
        """The lines "more context" below the last hunk first asks for."""
        return (self.tail, self.tail + CONTEXT_STEP - 1) if self.tail is not None else None

    def line_text(self, side: str, line: int) -> str | None:
        """The text of a line the diff shows, or None when it shows no such line."""
        for hunk in self.hunks:
            for row in hunk.rows:
                if row.kind in ("add", "del", "ctx") and row.side == side and row.line == line:
                    return row.text
                if side == "old" and row.kind == "ctx" and row.old == line:
                    return row.text
        return None

    def new_text(self, base: list[str]) -> list[str]:
        """The file after the patch, from the base's lines and the hunks."""
        out: list[str] = []
        at = 0  # base lines consumed
        for hunk in self.hunks:
            start = max(hunk.old_start - 1, 0) if hunk.old_count else hunk.old_start
            out.extend(base[at:start])
            at = start
            for row in hunk.rows:
                if row.kind == "ctx":
                    at += 1
                    out.append(row.text)
                elif row.kind == "del":
                    at += 1
                elif row.kind == "add":
                    out.append(row.text)
        out.extend(base[at:])
        return out


@dataclass
class Diff:
    files: list[FileDiff]
    cut: bool = False

    def file(self, index: int) -> FileDiff:
        if not 0 <= index < len(self.files):
            raise ContextError(f"the diff has no file {index}")
        return self.files[index]


def parse(patch: str, limit: int = LINES_SHOWN) -> Diff:
    """The patch's files, hunks and numbered lines; any text parses (a line it
    cannot place is a header line of its file, or left out before the first)."""
    files: list[FileDiff] = []
    current: FileDiff | None = None
    hunk: Hunk | None = None
    old = new = old_left = new_left = 0
    lines = patch.splitlines()
    for text in lines[:limit]:
        if hunk is not None and current is not None and (old_left > 0 or new_left > 0):
            kind = text[:1]
            if kind == "+":
                hunk.rows.append(Row("add", None, new, text[1:]))
                new, new_left, current.added = new + 1, new_left - 1, current.added + 1
                continue
            if kind == "-":
                hunk.rows.append(Row("del", old, None, text[1:]))
                old, old_left, current.removed = old + 1, old_left - 1, current.removed + 1
                continue
            if kind in (" ", ""):
                hunk.rows.append(Row("ctx", old, new, text[1:]))
                old, new, old_left, new_left = old + 1, new + 1, old_left - 1, new_left - 1
                continue
        if hunk is not None and text.startswith("\\"):
            hunk.rows.append(Row("meta", None, None, text))
            continue
        if text.startswith("diff --git "):
            try:
                current = FileDiff(len(files), *paths_from_header(text))
            except ValueError:
                current = FileDiff(len(files), None, None)
            files.append(current)
            hunk = None
            current.header.append(text)
        elif current is None:
            continue
        elif (match := HUNK.match(text)) is not None:
            o, oc, n, nc, section = match.groups()
            hunk = Hunk(len(current.hunks), int(o), int(oc or 1), int(n), int(nc or 1), section)
            current.hunks.append(hunk)
            old, new, old_left, new_left = (
                hunk.old_start,
                hunk.new_start,
                hunk.old_count,
                hunk.new_count,
            )
        else:
            hunk = None
            header_line(current, text)
    for f in files:
        gaps(f)
    return Diff(files, cut=len(lines) > limit)


def header_line(f: FileDiff, text: str) -> None:
    f.header.append(text)
    try:
        if text.startswith("--- "):
            f.old_path = None if text[4:] == "/dev/null" else strip(text[4:], "a/")
        elif text.startswith("+++ "):
            f.new_path = None if text[4:] == "/dev/null" else strip(text[4:], "b/")
        elif text.startswith(("rename from ", "copy from ")):
            f.old_path = unquote(text.split(" from ", 1)[1])
        elif text.startswith(("rename to ", "copy to ")):
            f.new_path = unquote(text.split(" to ", 1)[1])
        elif text.startswith("new file mode "):
            f.old_path = None
        elif text.startswith("deleted file mode "):
            f.new_path = None
        elif text.startswith(("GIT binary patch", "Binary files ")):
            f.binary = True
    except ValueError:
        pass  # a path git would not write: shown as the header has it


def strip(path: str, prefix: str) -> str:
    path = unquote(path) if path.startswith('"') else path.split("\t")[0]
    return path[len(prefix) :] if path.startswith(prefix) else path


def gaps(f: FileDiff) -> None:
    """The base's lines between hunks, which "more context" may show."""
    after = 1
    for hunk in f.hunks:
        first = hunk.old_start if hunk.old_count else hunk.old_start + 1
        hunk.gap = (after, first - 1) if first - 1 >= after else None
        after = first + hunk.old_count
    f.tail = after if f.hunks and f.old_path is not None else None


# Highlighting.


@memoized
def lexer_for(name: str) -> Lexer | None:
    """Pygments' lexer for a file name (cached by name: finding one scans them all)."""
    try:
        return get_lexer_for_filename(name, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


def lexer_of(path: str) -> Lexer | None:
    base = path.rsplit("/", 1)[-1]
    suffix = base.rsplit(".", 1)[-1] if "." in base else base
    # By suffix where it has one (a cache of a few dozen entries, not one per file).
    return lexer_for(f"x.{suffix}" if "." in base else base)


def paint(texts: Sequence[str], lexer: Lexer | None) -> list[SafeString]:
    """Each line as HTML: Pygments' spans (escaped by it), or escaped plain text."""
    if lexer is None or sum(len(t) for t in texts) > HIGHLIGHT_CHARS:
        return [mark_safe(escape(t)) for t in texts]
    html = highlight("\n".join(texts) + "\n", lexer, FORMATTER).split("\n")
    if len(html) < len(texts):  # a lexer that joined lines: plain, not misaligned
        return [mark_safe(escape(t)) for t in texts]
    return [mark_safe(h) for h in html[: len(texts)]]  # noqa: S308 - Pygments escaped it


def paint_rows(rows: Sequence[Row], lexer: Lexer | None) -> None:
    """Highlight rows by side: the candidate's lines together, the base's removed
    lines together, so a string or comment spanning lines reads right."""
    new = [r for r in rows if r.kind in ("add", "ctx", "more")]
    old = [r for r in rows if r.kind == "del"]
    for side in (new, old):
        for row, html in zip(side, paint([r.text for r in side], lexer), strict=True):
            row.html = html
    for row in rows:
        if row.kind == "meta":
            row.html = mark_safe(escape(row.text))


def highlighted(patch: str) -> Diff:
    """The patch parsed and painted. The paint is kept in the cache by the patch's
    hash (a patch never changes): a page drawn again skips Pygments, the most of its time."""
    diff = parse(patch)
    key = "corral:diff-paint:1:" + hashlib.sha256(patch.encode(errors="replace")).hexdigest()
    painted = cache.get(key)
    rows = [row for f in diff.files for hunk in f.hunks for row in hunk.rows]
    if isinstance(painted, list) and len(painted) == len(rows):
        for row, html in zip(rows, painted, strict=True):
            row.html = mark_safe(html)  # noqa: S308 - as painted (escaped) before
        return diff
    for f in diff.files:
        lexer = lexer_of(f.path)
        for hunk in f.hunks:
            paint_rows(hunk.rows, lexer)
    cache.set(key, [str(row.html) for row in rows], timeout=PAINT_KEPT_SECONDS)
    return diff


def attach(diff: Diff, comments: Iterable[ReviewComment]) -> None:
    """Each comment under the line it is on (a comment on a line no longer shown is left out)."""
    by_line: dict[tuple[str, str, int], list[ReviewComment]] = {}
    for c in comments:
        by_line.setdefault((c.path, c.side, c.line), []).append(c)
    if not by_line:
        return
    for f in diff.files:
        path = f.path
        for hunk in f.hunks:
            for row in hunk.rows:
                if row.kind in ("add", "del", "ctx") and row.line is not None:
                    row.comments = by_line.get((path, row.side, row.line), [])


# More context, from git.


def base_lines(canonical: object, base_sha: str, path: str) -> list[str]:
    """The base commit's file at `path`, as lines: found in git's own listing
    of the tree and read by its object id (a regular file only)."""
    entry = gitops.tree_entry(canonical, base_sha, path)  # type: ignore[arg-type]
    if entry is None:
        raise ContextError(f"{path} is not a file of the base commit")
    mode, oid, size = entry
    if mode not in ("100644", "100755"):
        raise ContextError(f"{path} is not a regular file in the base commit")
    if size > BLOB_MAX_BYTES:
        raise ContextError(f"{path} is too large to read for context")
    return gitops.blob_text(canonical, oid).splitlines()  # type: ignore[arg-type]


def more_context(
    diff: Diff, canonical: object, base_sha: str, file: int, hunk: int, start: int, end: int
) -> tuple[FileDiff, list[Row]]:
    """Base lines start..end (numbered as in the base) of a gap of file `file`:
    before hunk `hunk`, or after the last one when `hunk` is their count."""
    f = diff.file(file)
    if f.old_path is None or f.binary:
        raise ContextError(f"{f.path} has no base to read context from")
    if not 0 <= hunk <= len(f.hunks):
        raise ContextError(f"{f.path} has no hunk {hunk}")
    if hunk < len(f.hunks):
        gap, offset = f.hunks[hunk].gap, f.hunks[hunk].offset
    else:
        last = f.hunks[-1] if f.hunks else None
        gap = (f.tail, 10**9) if f.tail is not None else None
        offset = last.offset + last.new_count - last.old_count if last else 0
    if gap is None or not gap[0] <= start <= end <= gap[1] or end - start >= CONTEXT_MAX:
        raise ContextError(f"lines {start}-{end} are not hidden context of {f.path}")
    lines = base_lines(canonical, base_sha, f.old_path)
    rows = [
        Row("more", n, n + offset, lines[n - 1]) for n in range(start, min(end, len(lines)) + 1)
    ]
    paint_rows(rows, lexer_of(f.path))
    return f, rows


# The next submission: which commented lines it changed.


@dataclass
class Followed:
    comment: ReviewComment
    outcome: str  # "changed", "untouched" or "unknown" (a file that cannot be read)


def follow_up(
    previous: Diff,
    previous_base: str,
    current: Diff,
    current_base: str,
    canonical: object,
    comments: Sequence[ReviewComment],
) -> list[Followed]:
    """For each comment on the previous candidate, whether this candidate changed
    its line: the two candidates' files (each its base's blob with its own
    patch's hunks) compared line by line. A comment on a removed line is
    changed unless this diff still removes that text."""
    out = []
    files: dict[str, tuple[list[str], list[str]] | None] = {}
    for c in comments:
        if c.side == "old":
            still = any(
                row.kind == "del" and row.text == c.line_text
                for f in current.files
                if f.old_path == c.path
                for h in f.hunks
                for row in h.rows
            )
            out.append(Followed(c, "untouched" if still else "changed"))
            continue
        if c.path not in files:
            files[c.path] = candidates(
                previous, previous_base, current, current_base, canonical, c.path
            )
        pair = files[c.path]
        out.append(Followed(c, "unknown" if pair is None else line_outcome(*pair, c.line)))
    return out


def candidate(diff: Diff, base: str, canonical: object, path: str) -> list[str] | None:
    """The file at `path` after the diff (None when it cannot be rebuilt); a file
    the diff does not change is the base's."""
    f = next((f for f in diff.files if f.new_path == path), None)
    if f is not None and f.binary:
        return None
    if f is not None and f.old_path is None:
        return f.new_text([])
    try:
        lines = base_lines(canonical, base, f.old_path if f is not None and f.old_path else path)
    except (ContextError, gitops.GitError):
        return [] if f is None else None
    return f.new_text(lines) if f is not None else lines


def candidates(
    previous: Diff,
    previous_base: str,
    current: Diff,
    current_base: str,
    canonical: object,
    path: str,
) -> tuple[list[str], list[str]] | None:
    before = candidate(previous, previous_base, canonical, path)
    after = candidate(current, current_base, canonical, path)
    return None if before is None or after is None else (before, after)


def line_outcome(before: list[str], after: list[str], line: int) -> str:
    """Whether line `line` (1-based) of `before` is still there, unchanged, in `after`."""
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        if i1 <= line - 1 < i2:
            return "untouched" if tag == "equal" else "changed"
    return "changed"


def previous_review(sub: Submission) -> Submission | None:
    """The bead's submission before this one that a person sent back with changes requested."""
    earlier = Submission.objects.filter(
        bead_id=sub.bead_id,
        status=Submission.Status.CHANGES_REQUESTED,
        queued_at__lte=sub.queued_at,
    ).exclude(pk=sub.pk)
    return earlier.select_related("session").order_by("-queued_at", "-pk").first()


def followed_for(sub: Submission) -> list[Followed]:
    """On a submission after changes were requested: each of those comments,
    changed or untouched by this one (empty when there were none)."""
    before = previous_review(sub)
    if before is None:
        return []
    comments = list(before.review_comments.select_related("author"))
    if not comments:
        return []
    return follow_up(
        parse(before.session.patch or ""),
        before.session.base_sha,
        parse(sub.session.patch or ""),
        sub.session.base_sha,
        sub.repository.canonical_path,
        comments,
    )


def next_range(f: FileDiff, hunk: int, start: int, end: int, got: int) -> tuple[int, int] | None:
    """After lines start..end of a gap were shown, the ones "more context" asks
    for next: further up before a hunk, further down after the last (None: no more)."""
    if hunk < len(f.hunks):
        gap = f.hunks[hunk].gap
        low = gap[0] if gap is not None else start
        return (max(low, start - CONTEXT_STEP), start - 1) if start > low else None
    return (end + 1, end + CONTEXT_STEP) if got == end - start + 1 else None
