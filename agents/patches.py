"""Read a git diff (`git diff --binary`) without applying it, for showing it.

What a patch changes is shown (and stored with its session) from here; the
gates never read it: they judge the tree git builds from the patch, since this
reading and git's may differ (see agents/jobs/gates.py). Any input either parses
or raises PatchError. One exception, at the end: the sizes binary hunks
declare, read from every line git could take for one, so that git is never
handed a patch that would make it inflate more than a repository's cap.
"""

import base64
import re
import zlib
from dataclasses import dataclass
from typing import Any

SYMLINK_MODE = "120000"
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
OCTAL = re.compile("[0-3][0-7][0-7]")  # one byte, as git writes it
QUOTED_ESCAPES = {"a": "\a", "b": "\b", "t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r"}


class PatchError(ValueError):
    """The text is not a git diff."""


@dataclass
class FileChange:
    old_path: str | None = None
    new_path: str | None = None
    new_mode: str = ""
    added: int = 0
    removed: int = 0
    binary: bool = False
    symlink_target: str | None = None

    @property
    def paths(self) -> list[str]:
        return [p for p in {self.old_path, self.new_path} if p is not None]

    @property
    def path(self) -> str | None:
        return self.new_path if self.new_path is not None else self.old_path


def unquote(raw: str) -> str:
    """Undo git's C-style quoting of a path ("a/\\303\\251.txt"); PatchError if it is not."""
    if not raw.startswith('"'):
        return raw
    if len(raw) < 2 or not raw.endswith('"'):
        raise PatchError(f"a quoted path without its closing quote: {raw[:60]!r}")
    body, out, i = raw[1:-1], bytearray(), 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
        elif OCTAL.fullmatch(body, i + 1, i + 4):
            out.append(int(body[i + 1 : i + 4], 8))
            i += 4
        elif body[i + 1 : i + 2] in QUOTED_ESCAPES or body[i + 1 : i + 2] in ('"', "\\"):
            out += QUOTED_ESCAPES.get(body[i + 1], body[i + 1]).encode()
            i += 2
        else:
            raise PatchError(f"a bad escape in the quoted path {raw[:60]!r}")
    # For showing only: the gates read paths from git, never from here.
    return out.decode("utf-8", "replace")


def strip_prefix(path: str, prefix: str) -> str | None:
    if path.startswith('"'):
        quoted = QUOTED.match(path)
        path = unquote(quoted[0] if quoted else path)
    else:
        path = path.split("\t")[0]
    if path == "/dev/null":
        return None
    return path[len(prefix) :] if path.startswith(prefix) else path


def paths_from_header(line: str) -> tuple[str | None, str | None]:
    """Both paths of `diff --git a/X b/Y`; only exact when X == Y or quoted."""
    rest = line[len("diff --git ") :]
    quoted = QUOTED.findall(rest)
    if len(quoted) == 2:
        return strip_prefix(quoted[0], "a/"), strip_prefix(quoted[1], "b/")
    half = (len(rest) - 1) // 2
    return strip_prefix(rest[:half], "a/"), strip_prefix(rest[half + 1 :], "b/")


HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def parse(text: str) -> list[FileChange]:
    """The list of FileChanges in a git diff; PatchError (and nothing else) if it is not one."""
    if "\0" in text:
        raise PatchError("not a git diff: it holds a NUL byte")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise PatchError("not a git diff: it is not UTF-8 text (a lone surrogate)") from None
    changes: list[FileChange] = []
    current: FileChange | None = None
    old_left = new_left = 0  # lines still to come in the current hunk
    for line in text.splitlines():
        if current is not None and (old_left or new_left):
            old_left, new_left = count_line(current, line, old_left, new_left)
        elif line.startswith("diff --git "):
            current = FileChange(*paths_from_header(line))
            changes.append(current)
        elif current is None:
            continue  # a preamble (mail headers, a summary) before the first diff
        elif hunk := HUNK.match(line):
            old_left, new_left = (int(n) if n is not None else 1 for n in hunk.groups())
        else:
            read_header(current, line)
    if not changes:
        raise PatchError("not a git diff: no `diff --git` header")
    if current is not None and (old_left or new_left):
        raise PatchError(f"truncated diff: a hunk of {current.path} ends early")
    return changes


def count_line(change: FileChange, line: str, old_left: int, new_left: int) -> tuple[int, int]:
    kind = line[:1]
    if kind == "+":
        change.added += 1
        if change.new_mode == SYMLINK_MODE:
            change.symlink_target = line[1:]
        return old_left, new_left - 1
    if kind == "-":
        change.removed += 1
        return old_left - 1, new_left
    if kind == "\\":
        return old_left, new_left  # "\ No newline at end of file"
    if kind in (" ", ""):
        return old_left - 1, new_left - 1
    raise PatchError(f"malformed hunk in {change.path}: {line[:60]!r}")


def read_header(change: FileChange, line: str) -> None:
    if line.startswith("--- "):
        change.old_path = strip_prefix(line[4:], "a/")
    elif line.startswith("+++ "):
        change.new_path = strip_prefix(line[4:], "b/")
    elif line.startswith(("rename from ", "copy from ")):
        change.old_path = unquote(line.split(" from ", 1)[1])
    elif line.startswith(("rename to ", "copy to ")):
        change.new_path = unquote(line.split(" to ", 1)[1])
    elif line.startswith(("new file mode ", "new mode ")):
        change.new_mode = line.rsplit(" ", 1)[1]
        if line.startswith("new file mode "):
            change.old_path = None
    elif line.startswith("deleted file mode "):
        change.new_path = None
    elif line.startswith(("GIT binary patch", "Binary files ")):
        change.binary = True


def summarize(changes: list[FileChange]) -> dict[str, Any]:
    """What a patch changes, as stored with its session: files, lines, binary paths."""
    return {
        "files": len({p for change in changes for p in change.paths}),
        "lines": sum(change.added + change.removed for change in changes),
        "added": sum(change.added for change in changes),
        "removed": sum(change.removed for change in changes),
        "binary": sorted(change.path for change in changes if change.binary and change.path),
    }


# Binary hunks: `literal N` or `delta N`, then lines of base85 (each led by a
# letter saying how many bytes it holds). git inflates every hunk, the reverse
# one too, into the N bytes declared as it parses the patch, and a delta into
# the size its own header declares, before it checks anything. Those sizes are
# read here first, from every line git could take for a hunk's header wherever
# it stands (git reads `literal`/`delta` only at a line's start).

HUNK_HEADER = re.compile(r"(literal|delta) (.*)")
DATA_LINE = re.compile(r"[A-Za-z][0-9A-Za-z!#$%&()*+\-;<=>?@^_`{|}~]+")
C_NUMBER = re.compile(r"[ \t\n\v\f\r]*([+-]?)([0-9]*)")
HUGE = 1 << 64  # more than any cap: what strtoul makes of a negative or overlong number


@dataclass
class Declared:
    """A size a binary hunk declares: of a literal, a delta, or the blob a delta makes
    (None when the delta's header cannot be read)."""

    path: str
    kind: str
    size: int | None


def declared_sizes(text: str) -> list[Declared]:
    """Every size the binary hunks of `text` declare, with the path of the diff
    each stands in (as shown; git may read the path otherwise: see gates)."""
    if "literal " not in text and "delta " not in text:
        return []
    found: list[Declared] = []
    path = "(the patch)"
    lines = text.split("\n")  # git's lines: no other line breaks
    for n, line in enumerate(lines):
        if line.startswith("diff --git "):
            try:
                path = FileChange(*paths_from_header(line)).path or path
            except PatchError:
                pass
        elif hunk := HUNK_HEADER.match(line):
            found.append(Declared(path, hunk[1], c_number(hunk[2])))
            if hunk[1] == "delta":
                found.append(Declared(path, "delta result", delta_result_size(lines, n + 1)))
    return found


def c_number(text: str) -> int:
    """What git's strtoul(text, NULL, 10) reads: 0 without digits, a huge number
    for a negative one (it wraps) or one too long."""
    sign, digits = C_NUMBER.match(text).groups()  # type: ignore[union-attr]  # always matches
    if not digits or not digits.strip("0"):
        return 0
    if sign == "-" or len(digits.lstrip("0")) > 20:
        return HUGE
    return int(digits)


def hunk_bytes(line: str) -> bytes | None:
    """The bytes one data line of a binary hunk holds, or None if it is malformed."""
    letter, body = line[0], line[1:]
    size = ord(letter) - (ord("A") - 1 if letter <= "Z" else ord("a") - 27)
    if len(body) != (size + 3) // 4 * 5:
        return None
    try:
        return base64.b85decode(body)[:size]
    except ValueError:
        return None


def delta_result_size(lines: list[str], start: int) -> int | None:
    """The size of the blob the delta whose data starts at `lines[start]` makes:
    the second number of its header, inflating only the header's bytes."""
    inflate, header = zlib.decompressobj(), b""
    for line in lines[start:]:
        chunk = hunk_bytes(line) if DATA_LINE.fullmatch(line) else None
        if chunk is None:
            return None
        try:
            header += inflate.decompress(inflate.unconsumed_tail + chunk, 24 - len(header))
        except zlib.error:
            return None
        if (sizes := header_sizes(header)) is not None:
            return sizes[1]
        if len(header) >= 24 or inflate.eof:
            return None
    return None


def header_sizes(header: bytes) -> tuple[int, int] | None:
    """A delta's two sizes (source, result), 7 bits a byte, low bits first; None if cut short."""
    sizes, size, shift = [], 0, 0
    for byte in header:
        size |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            sizes.append(size)
            if len(sizes) == 2:
                return sizes[0], sizes[1]
            size, shift = 0, 0
    return None


def declared_over(text: str, cap: int) -> list[str]:
    """Why git may not read `text`: each size a binary hunk declares over `cap`
    bytes (a repository's per-file cap), or a delta whose size cannot be read."""
    problems = []
    for declared in declared_sizes(text):
        if declared.size is None:
            problems.append(f"{declared.path}: a binary delta whose size cannot be read")
        elif declared.size > cap:
            what = (
                "the blob a binary delta makes"
                if declared.kind == "delta result"
                else "a binary hunk"
            )
            problems.append(
                f"{declared.path}: {what} declares {declared.size} bytes, "
                f"over the repository's cap of {cap} per file"
            )
    return problems
