"""Reading the files an agent left in its clone (a handoff, learnings), and
writing its context pack, from outside the sandbox.

The agent's files are read by Corral: every step is opened without following
a symlink, so a handoff linked to a host file (the secret key, another clone)
reads as nothing, and only regular files are read (a FIFO would hang the reader).
"""

import os
import stat
from pathlib import Path
from typing import Any

from workspace import gitops


def read_learnings(workdir: Path) -> list[dict[str, Any]]:
    """The agent's .agents/learnings/*.md: `# Title`, then the body."""
    learnings = []
    for name in sorted(list_agent_folder(workdir, ".agents", "learnings")):
        if not name.endswith(".md"):
            continue
        text = read_text(read_agent_file(workdir, ".agents", "learnings", name)).strip()
        if not text:
            continue
        first, _, rest = text.partition("\n")
        title = first.lstrip("# ").strip()[:200] or name.removesuffix(".md")
        learnings.append({"title": title, "body": rest.strip() or first})
    return learnings


def read_text(data: bytes) -> str:
    """A file the agent left (a handoff, a learning), without control characters:
    it may hold anything, and a NUL cannot even be stored (PostgreSQL)."""
    return gitops.without_controls(data.decode(errors="replace"))


NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_within(workdir: Path, parts: tuple[str, ...], flags: int, mode: int = 0o644) -> int:
    fd = os.open(workdir, NOFOLLOW | os.O_DIRECTORY)
    try:
        for n, part in enumerate(parts):
            last = n == len(parts) - 1
            step = flags if last else NOFOLLOW | os.O_DIRECTORY
            next_fd = os.open(part, step, mode, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except OSError:
        os.close(fd)
        raise
    return fd


def read_agent_file(workdir: Path, *parts: str, limit: int = 100_000) -> bytes:
    """Up to `limit` bytes of a regular file inside the clone; b"" for anything else."""
    try:
        fd = open_within(workdir, parts, NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, limit)
    finally:
        os.close(fd)


def write_agent_file(workdir: Path, parts: tuple[str, ...], data: str | bytes) -> None:
    """A new regular file inside the clone: no step followed as a symlink, and
    nothing that is there already written through (O_EXCL)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(open_within(workdir, parts, flags), "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)


def list_agent_folder(workdir: Path, *parts: str) -> list[str]:
    """The names in a folder inside the clone, reached without following symlinks."""
    try:
        fd = open_within(workdir, parts, NOFOLLOW | os.O_DIRECTORY)
    except OSError:
        return []
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)
