"""Every git operation Corral performs. Commands are argv lists, never shell strings.

Git runs programs named in its configuration (core.fsmonitor, hooks, filter
drivers), so every call here runs with an environment built from a short
allowlist (none of Corral's secrets), without system or global configuration,
and with those settings forced off. A clone an agent works in is never read
through its own .git: Corral reads its files through a git dir of its own.
"""

import base64
import fcntl
import hashlib
import io
import os
import posixpath
import re
import secrets
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

StrPath = str | os.PathLike[str]  # a repository or folder, as a str or a Path

# All a git process gets of Corral's environment: DATABASE_URL, SECRET_KEY,
# REDIS_URL and tokens stay out of reach of anything git might run.
KEPT_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
# A clone from, or a push to, an upstream needs the operator's credentials (ssh
# keys and known hosts, credential helpers in ~/.gitconfig, proxies). Only those
# two calls keep them; both run on Corral's canonical copy, never on an agent's clone.
REMOTE_ENV = (
    "HOME",
    "SSH_AUTH_SOCK",
    "GIT_SSH_COMMAND",
    "GIT_SSL_CAINFO",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
)
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
# Settings that make git run a program, forced off whatever a config file says:
# as -c flags and again as GIT_CONFIG_COUNT pairs, which reach git's children too.
FORCED_CONFIG = (
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("protocol.ext.allow", "never"),
)
FORCED_FLAGS = tuple(arg for key, value in FORCED_CONFIG for arg in ("-c", f"{key}={value}"))


class GitError(Exception):
    """A git operation failed; the message is fit to show a person."""


def git_env(extra: dict[str, str] | None = None, remote: bool = False) -> dict[str, str]:
    """The whole environment of a git process (see KEPT_ENV and REMOTE_ENV)."""
    kept = KEPT_ENV + (REMOTE_ENV if remote else ())
    env = {key: os.environ[key] for key in kept if key in os.environ}
    env.setdefault("HOME", "/nonexistent")  # no ~/.gitconfig, no ~/.config/git/
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ALLOW_PROTOCOL=ALLOWED_PROTOCOLS, GIT_ATTR_NOSYSTEM="1")
    if not remote:
        env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null")
    env["GIT_CONFIG_COUNT"] = str(len(FORCED_CONFIG))
    for n, (key, value) in enumerate(FORCED_CONFIG):
        env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = key, value
    env.update(extra or {})
    return env


def run_git(
    args: Sequence[str],
    env: dict[str, str],
    stdin: str | bytes | None = None,
    cwd: StrPath | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    """git with the forced settings; `env` is the whole environment (see git_env)."""
    if isinstance(stdin, str):
        # A lone surrogate cannot be UTF-8; passed through, git judges the bytes.
        stdin = stdin.encode("utf-8", "surrogatepass")
    return subprocess.run(
        ["git", *FORCED_FLAGS, *args],
        input=stdin,
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=timeout,
    )


# Sources. `addrepo` takes a local path or a URL. Git's remote helpers are
# refused (ext:: runs any command, fd:: talks to a file descriptor), and so is
# anything starting with "-", which git or ssh would read as an option.
URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
REMOTE_HELPER = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)::")
URL_SCHEMES = {"http", "https", "ssh", "git", "file", "git+ssh", "ssh+git"}
SAFE_TRANSPORTS = "use https://, ssh://, git://, user@host:path or a local path"


def is_scp_like(source: str) -> bool:
    """git's `[user@]host:path` (ssh): a colon before any slash."""
    colon, slash = source.find(":"), source.find("/")
    return colon > 0 and (slash < 0 or colon < slash)


def source_name(source: str) -> str:
    """A repository's name from its path or URL: the last part, without `.git`."""
    tail = source.rstrip("/").replace(":", "/").rsplit("/", 1)[-1]
    return tail.removesuffix(".git") or "repo"


def check_source(source: str) -> str:
    """The source to clone: a URL in a safe transport, or the absolute path of a
    local git repository. Anything else is a GitError of one line."""
    if not source.strip() or any(ord(c) < 32 or ord(c) == 127 for c in source):
        raise GitError(f"{source!r}: a source is one line of printable text")
    if source.startswith("-"):
        raise GitError(f"{source}: a source may not start with '-'")
    if helper := REMOTE_HELPER.match(source):
        raise GitError(f"{source}: the {helper[1]}:: transport is not allowed; {SAFE_TRANSPORTS}")
    if url := URL_SCHEME.match(source):
        if url[1].lower() not in URL_SCHEMES:
            raise GitError(f"{source}: the {url[1]}:// transport is not allowed; {SAFE_TRANSPORTS}")
        check_host(source, source[url.end() :].split("/", 1)[0])
        return source
    if is_scp_like(source):
        check_host(source, source.split(":", 1)[0])
        return source
    return check_local_repository(source)


def check_host(source: str, authority: str) -> None:
    # ssh would read a host (or user) starting with "-" as an option.
    if authority.rsplit("@", 1)[-1].startswith("-") or authority.startswith("-"):
        raise GitError(f"{source}: a host may not start with '-'")


def check_local_repository(source: str) -> str:
    path = Path(os.path.expanduser(source)).resolve()  # "~nobody/x" stays as it is
    try:
        exists = path.exists()
    except OSError as e:  # a name too long, a folder we may not read
        raise GitError(f"{source}: {e.strerror}") from None
    if not exists:
        raise GitError(f"{source}: no such file or folder")
    # The ceiling keeps git from finding a repository above the folder.
    env = git_env({"GIT_CEILING_DIRECTORIES": str(path.parent)})
    done = run_git(["rev-parse", "--git-dir"], env=env, cwd=path) if path.is_dir() else None
    if done is not None and b"dubious ownership" in done.stderr:
        raise GitError(f"{source}: owned by another user, so git will not read it")
    if done is None or done.returncode != 0:
        raise GitError(f"{source}: not a git repository")
    return str(path)


def clone_bare(source: str, slug: str) -> Path:
    """Clone `source` into the canonical bare repository for `slug` and return its path."""
    source = check_source(source)
    settings.REPOS_DIR.mkdir(parents=True, exist_ok=True)
    dest = settings.REPOS_DIR / f"{slug}.git"
    if dest.exists():
        raise GitError(f"{dest} already exists")
    argv = ["clone", "--bare", "--quiet", "--template=", "--", source, str(dest)]
    done = run_git(argv, env=git_env(remote=True), timeout=3600)
    if done.returncode != 0:
        raise GitError(f"cannot clone {source}: {last_line(done.stderr.decode(errors='replace'))}")
    return dest


def default_branch(path: StrPath) -> str | None:
    """The branch a bare clone's HEAD points at, or None when HEAD is detached."""
    done = git_call(path, "symbolic-ref", "--quiet", "HEAD")
    return done.stdout.removeprefix("refs/heads/") if done.returncode == 0 else None


def has_branch(path: StrPath, branch: str) -> bool:
    return git_call(path, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}").returncode == 0


def head_sha(path: StrPath, branch: str) -> str:
    """The branch's commit, read straight from the ref files: claims call this
    while they hold a lock, and a git process costs milliseconds."""
    ref = f"refs/heads/{branch}"
    loose = Path(path, ref)
    if loose.is_file():
        return loose.read_text().strip()
    packed = Path(path, "packed-refs")
    if packed.is_file():
        for line in packed.read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
    raise GitError(f"branch {branch!r} has no commits")


def last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].removeprefix("stderr: ").strip("'") if lines else "git failed"


# The lead's plumbing. Nothing here touches a working tree or a shared index:
# each call that needs an index gets a private one (GIT_INDEX_FILE).

LEAD_IDENTITY = ("Corral lead", "lead@corral.invalid")


class PatchDoesNotApply(GitError):
    pass


class MergeConflict(GitError):
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        super().__init__("conflict in " + ", ".join(paths) if paths else "conflict")


def git_call(
    path: StrPath,
    *args: str,
    stdin: str | bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    remote: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run git on the repository at `path`; return the CompletedProcess (text)."""
    done = git_bytes(path, *args, stdin=stdin, env=env, timeout=timeout, remote=remote)
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        stdout=done.stdout.decode(errors="replace").strip(),
        stderr=done.stderr.decode(errors="replace"),
    )


def git_bytes(
    path: StrPath,
    *args: str,
    stdin: str | bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    remote: bool = False,
) -> subprocess.CompletedProcess[bytes]:
    """Run git on the repository at `path`; its output as bytes, exactly."""
    full_env = git_env({"GIT_DIR": str(path), **(env or {})}, remote=remote)
    return run_git(args, env=full_env, stdin=stdin, timeout=timeout)


def git_run(path: StrPath, *args: str, **kwargs: Any) -> str:
    """Run git on the repository at `path`; return stdout, or raise GitError."""
    done = git_call(path, *args, **kwargs)
    if done.returncode != 0:
        raise GitError(f"git {args[0]}: {last_line(done.stderr)}")
    return done.stdout


class PrivateIndex:
    """A throwaway index file: `with PrivateIndex(path) as idx: idx.git(...)`.

    One kept open across landings (reused_index) skips the read-tree when it
    still holds the tree-ish asked for: `holds` is what it holds unchanged.
    """

    def __init__(self, path: StrPath) -> None:
        self.path = path
        self.holds: str | None = None

    def __enter__(self) -> "PrivateIndex":
        self.tmp = tempfile.TemporaryDirectory(prefix="corral-index-")
        self.env = {"GIT_INDEX_FILE": os.path.join(self.tmp.name, "index")}
        self.holds = None
        return self

    def __exit__(self, *exc: object) -> None:
        self.tmp.cleanup()

    def git(self, *args: str, **kwargs: Any) -> str:
        return git_run(self.path, *args, env=self.env, **kwargs)

    def tree_with_patch(self, tree: str, patch: str) -> str:
        """The tree `tree` with `patch` applied, or PatchDoesNotApply."""
        if self.holds != tree:
            self.git("read-tree", tree)
        self.holds = None  # until write-tree says what it holds
        try:
            self.git("apply", "--cached", "--binary", "-", stdin=patch)
        except GitError as e:
            raise PatchDoesNotApply(str(e).removeprefix("git apply: ")) from None
        self.holds = self.git("write-tree")
        remember_tree(self.holds, self.holds)
        return self.holds

    def committed(self, tree: str, commit: str) -> None:
        """`commit` was made of `tree`: if that is what this index holds, a patch
        onto `commit` needs no read-tree."""
        if self.holds == tree:
            self.holds = commit


@cache
def reused_index(path: str) -> PrivateIndex:
    """This process's private index for the repository at `path`, kept across
    landings (the lead's lock lets one landing at a time use a repository)."""
    return PrivateIndex(path).__enter__()


def apply_patch(
    path: StrPath, base_sha: str, head_sha: str, patch: str, index: PrivateIndex | None = None
) -> str:
    """The tree of `head_sha` plus the patch made against `base_sha`.

    Straight onto head when it applies there (head is base, or the patch's
    context is untouched); otherwise a three-way merge with base as the
    merge base. Raises PatchDoesNotApply or MergeConflict. With `index`, that
    index is used (and left holding the result), else a throwaway one.
    """
    with nullcontext(index) if index else PrivateIndex(path) as idx:
        try:
            return idx.tree_with_patch(head_sha, patch)
        except PatchDoesNotApply:
            if head_sha == base_sha:
                raise
        patched = commit_tree(path, idx.tree_with_patch(base_sha, patch), base_sha, "patch")
    return merge_trees(path, head_sha, patched)


def check_patch(path: StrPath, base_sha: str, patch: str) -> None:
    """PatchDoesNotApply unless git reads `patch` and applies it to `base_sha`."""
    with PrivateIndex(path) as idx:
        idx.git("read-tree", base_sha)
        try:
            idx.git("apply", "--check", "--cached", "--binary", "-", stdin=patch)
        except GitError as e:
            raise PatchDoesNotApply(str(e).removeprefix("git apply: ")) from None


def merge_trees(path: StrPath, ours: str, theirs: str) -> str:
    """Three-way merge of two commits (merge base found by git); the tree, or MergeConflict."""
    done = git_call(path, "merge-tree", "--write-tree", "--name-only", ours, theirs)
    if done.returncode == 1:  # the tree line, the conflicted paths, a blank line, messages
        paths = done.stdout.split("\n\n")[0].splitlines()[1:]
        raise MergeConflict(sorted(set(paths)))
    if done.returncode != 0:
        raise GitError(f"git merge-tree: {last_line(done.stderr)}")
    return done.stdout.splitlines()[0]


def commit_tree(
    path: StrPath,
    tree: str,
    parent: str,
    message: str,
    author: tuple[str, str] = LEAD_IDENTITY,
    committer: tuple[str, str] = LEAD_IDENTITY,
) -> str:
    env = {
        "GIT_AUTHOR_NAME": author[0],
        "GIT_AUTHOR_EMAIL": author[1],
        "GIT_COMMITTER_NAME": committer[0],
        "GIT_COMMITTER_EMAIL": committer[1],
    }
    return git_run(path, "commit-tree", tree, "-p", parent, "-F", "-", stdin=message, env=env)


# What git's ident.c takes off both ends of a name or an email ("crud"), and
# what it drops inside one: a commit written here names people as git would.
IDENT_CRUD = "".join(chr(c) for c in range(33)) + ".,:;<>\"\\'"
IDENT_DROPPED = str.maketrans("", "", "\n<>")


def ident(name: str, email: str, when: int) -> str:
    """`Name <email> seconds +hhmm` as commit-tree writes it, for the local time zone."""
    name, email = (part.strip(IDENT_CRUD).translate(IDENT_DROPPED) for part in (name, email))
    if not name:
        raise GitError("empty ident name not allowed")
    offset = time.localtime(when).tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    return f"{name} <{email}> {when} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"


def commit_text(
    tree: str,
    parent: str,
    message: str,
    author: tuple[str, str],
    committer: tuple[str, str],
    when: int,
) -> bytes:
    """The commit object commit_tree() would write at `when` (seconds since the epoch)."""
    head = (
        f"tree {tree}\nparent {parent}\n"
        f"author {ident(*author, when)}\ncommitter {ident(*committer, when)}\n\n"
    )
    return head.encode() + message.encode("utf-8", "surrogatepass")


def object_id(kind: str, content: bytes, like: str) -> str:
    """The id git gives an object of `kind` with `content`, in the hash of the id `like`."""
    digest = hashlib.sha1 if len(like) == 40 else hashlib.sha256
    return digest(f"{kind} {len(content)}\0".encode() + content).hexdigest()


def write_commit(
    path: StrPath,
    tree: str,
    parent: str,
    message: str,
    author: tuple[str, str] = LEAD_IDENTITY,
    committer: tuple[str, str] = LEAD_IDENTITY,
) -> str:
    """commit_tree() without a git process of its own: the commit's text made
    here and written by this process's kept `git hash-object`, its id checked
    against the one computed here (so the object is exactly the text made)."""
    text = commit_text(tree, parent, message, author, committer, int(time.time()))
    writer = kept(path, "hash-object", "-w", "-t", "commit", "--stdin-paths")
    sha = writer.ask_with_file(text)
    if sha != object_id("commit", text, like=sha):
        raise GitError(f"git wrote the commit as {sha}, not as the text made for it")
    remember_tree(sha, tree)
    return sha


class Kept:
    """A git process kept by this worker that answers what it is given
    (`cat-file --batch-check`, `hash-object --stdin-paths`, `diff-tree --stdin`):
    a landing asks it instead of starting git again. See kept()."""

    def __init__(self, path: StrPath, *args: str) -> None:
        self.args = args
        self.asked = 0  # git keeps what it parsed: kept() replaces it after KEPT_ASKS
        self.lock = threading.Lock()  # one question and its answer at a time
        self.tmp = tempfile.TemporaryDirectory(prefix="corral-kept-")
        self.proc = subprocess.Popen(
            ["git", *FORCED_FLAGS, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=git_env({"GIT_DIR": str(path)}),
        )

    def ask(self, line: str) -> str:
        """Its answer to `line` (one line, no newline); GitError if it has ended."""
        if "\n" in line:
            raise GitError(f"git {self.args[0]} is asked one line at a time")
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        with self.lock:
            self.asked += 1
            try:
                stdin.write(line.encode() + b"\n")
                stdin.flush()
                answer = stdout.readline()
            except OSError as e:
                raise GitError(f"git {self.args[0]}: {e}") from None
        if not answer.endswith(b"\n"):
            raise GitError(f"git {self.args[0]} ended (exit code {self.proc.poll()})")
        return answer.decode(errors="replace").removesuffix("\n")

    def ask_until_echo(self, line: str) -> bytes:
        """All it writes for `line`, exactly. `diff-tree --stdin` copies a line
        that names no object to its output, and flushes: a random one sent
        after `line` marks where the answer ends (no path can foresee it)."""
        if "\n" in line:
            raise GitError(f"git {self.args[0]} is asked one line at a time")
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and isinstance(stdout, io.BufferedReader)
        end = f"#corral-{secrets.token_hex(16)}\n".encode()
        out = bytearray()
        with self.lock:
            self.asked += 1
            try:
                stdin.write(line.encode() + b"\n" + end)
                stdin.flush()
                while not out.endswith(end):
                    if not (chunk := stdout.read1(1 << 16)):
                        raise GitError(f"git {self.args[0]} ended (exit code {self.proc.poll()})")
                    out += chunk
            except OSError as e:
                raise GitError(f"git {self.args[0]}: {e}") from None
        return bytes(out[: -len(end)])

    def ask_with_file(self, content: bytes) -> str:
        """Its answer to the path of a file holding `content` (hash-object --stdin-paths)."""
        file = Path(self.tmp.name, "object")
        file.write_bytes(content)
        return self.ask(str(file))

    def worn(self) -> bool:
        """It has ended, or answered so much that it is better started again."""
        return self.proc.poll() is not None or self.asked >= KEPT_ASKS

    def close(self) -> None:
        """It reads the end of its input and exits; killed if it does not at once."""
        with self.lock:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.tmp.cleanup()


# Three per repository, for the last repositories this process landed in: a
# worker serving many, or a test run making hundreds, keeps only these.
KEPT_MAX = 30
KEPT_ASKS = 10_000
KEPT: OrderedDict[tuple[int, str, tuple[str, ...]], Kept] = OrderedDict()
KEPT_LOCK = threading.Lock()


def kept(path: StrPath, *args: str) -> Kept:
    """This process's kept `git args` for the repository at `path`, started
    once, or again when worn out. Keyed by pid too: a forked lead worker
    never writes to its parent's pipes."""
    key = (os.getpid(), str(path), args)
    with KEPT_LOCK:
        found = KEPT.get(key)
        done = [found] if found is not None and found.worn() else []
        if found is None or done:
            found = KEPT[key] = Kept(path, *args)
        KEPT.move_to_end(key)
        done += [KEPT.popitem(last=False)[1] for _ in range(len(KEPT) - KEPT_MAX)]
    for process in done:
        process.close()
    return found


def update_branch(path: StrPath, branch: str, new: str, old: str) -> bool:
    """Compare-and-swap the branch from `old` to `new`; False if it had moved."""
    return git_call(path, "update-ref", f"refs/heads/{branch}", new, old).returncode == 0


def commit_with_trailer(path: StrPath, branch: str, since: str, key: str, value: str) -> str | None:
    """The newest commit in since..branch that the lead made with the trailer
    `key: value` in its trailer block (the message's last paragraph, as git
    reads it). A line anywhere else in a message, or another committer, is not it."""
    fmt = f"%H%x1f%cn%x1f%ce%x1f%(trailers:key={key},valueonly,unfold,separator=%x1d)%x1e"
    done = git_bytes(path, "log", f"--format={fmt}", f"{since}..refs/heads/{branch}")
    if done.returncode != 0:
        raise GitError(f"git log: {last_line(done.stderr.decode(errors='replace'))}")
    # Not stripped: Python counts the separators \x1d-\x1f as white space.
    out = done.stdout.decode(errors="replace")
    for record in filter(None, (rec.strip("\n") for rec in out.split("\x1e"))):
        sha, committer, email, values = record.split("\x1f", 3)
        if (committer, email) == LEAD_IDENTITY and value in values.strip().split("\x1d"):
            return sha
    return None


# Commit messages. The lead writes title, body, then its own trailer block; an
# agent's text goes in the body with every line git could read as a trailer
# (or as the end of the message, "---") taken out, so that the trailers Corral
# finds its commits by are only ever its own.

CONTROL_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
TRAILER_LINE = re.compile(r"^[A-Za-z0-9-]+[ \t]*:")  # git's token, optional blanks, separator
GIT_GENERATED = ("Signed-off-by: ", "(cherry picked from commit ")
DIVIDER = re.compile(r"^---(\s|$)")


def without_controls(text: str) -> str:
    """`text` without control characters (newlines and tabs stay) or lone surrogates."""
    return CONTROL_CHARS.sub("", text)


def reads_as_trailer(line: str) -> bool:
    return bool(TRAILER_LINE.match(line) or DIVIDER.match(line) or line.startswith(GIT_GENERATED))


def without_trailers(text: str) -> str:
    """`text` without control characters and without any line git could read as a trailer."""
    lines = without_controls(text).split("\n")
    return "\n".join(line for line in lines if not reads_as_trailer(line))


def one_line(text: str) -> str:
    return " ".join(without_controls(text).split())


def commit_message(title: str, body: str, trailers: Sequence[tuple[str, str]]) -> str:
    """`title`, a blank line, `body` (without trailers), a blank line, `trailers`."""
    body = without_trailers(body).strip()
    block = "\n".join(f"{key}: {one_line(value)}" for key, value in trailers)
    return (
        f"{one_line(title)}\n\n{body}\n\n{block}\n" if body else f"{one_line(title)}\n\n{block}\n"
    )


def trailers_of(path: StrPath, message: str) -> list[tuple[str, str]]:
    """The trailers git reads in `message`, as (key, value), in order."""
    out = git_run(path, "interpret-trailers", "--parse", "--no-divider", stdin=message)
    return [
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in out.splitlines())
    ]


def trailers_of_commits(path: StrPath, shas: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """{commit: the trailers git reads in its message}, for many commits in one
    git process; git parses them as `trailers_of` does (interpret-trailers)."""
    if not shas:
        return {}
    out = git_run(path, "show", "-s", "--format=%H%x00%(trailers:only,unfold)%x00", *shas)
    fields = out.split("\0")
    return {
        sha.strip(): [
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in block.splitlines() if line)
        ]
        for sha, block in zip(fields[0::2], fields[1::2], strict=False)
    }


# What git would commit: the gates judge this, never a reading of the patch text.

KINDS = {"100644": "file", "100755": "exec", "120000": "symlink", "160000": "gitlink"}


def kind_of(mode: str) -> str:
    """file, exec, symlink, gitlink, or absent (mode 000000: no such path on that side)."""
    return "absent" if set(mode) == {"0"} else KINDS.get(mode, "file")


@dataclass
class TreeChange:
    """One path whose entry differs between two trees: its modes and blob ids on
    both sides; of the new side its size in bytes and, for a symlink, its target;
    and the lines added plus removed (None for a binary file)."""

    path: str
    old_mode: str
    new_mode: str
    old_id: str
    new_id: str
    size: int = 0
    link_target: str | None = None
    lines: int | None = 0

    @property
    def kind(self) -> str:
        return kind_of(self.new_mode)

    @property
    def old_kind(self) -> str:
        return kind_of(self.old_mode)


# The lead's kept git processes (see Kept): object sizes and types, and tree diffs.
CAT_FILE = ("cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)")
# One diff-tree for both: the raw records (meta, path), then the numstat ones.
DIFF_TREE = ("diff-tree", "--stdin", "-r", "-z", "--no-renames", "--raw", "--numstat")


# An object's id names its content, so a commit's tree never changes: the trees
# this process learned or wrote, and the commits it wrote, are answered without
# asking git (a train asks for the tree of each commit it just wrote). Bounded.
TREE_OF: dict[str, str] = {}
TREE_OF_MAX = 4096
OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def remember_tree(treeish: str, tree: str) -> None:
    if not OBJECT_ID.fullmatch(treeish):
        return  # a ref or a short id: what it names may change
    if len(TREE_OF) >= TREE_OF_MAX:
        TREE_OF.clear()
    TREE_OF[treeish] = tree


def tree_id(path: StrPath, treeish: str) -> str:
    """The tree of a commit or tree: remembered, or asked of the kept cat-file."""
    if tree := TREE_OF.get(treeish):
        return tree
    answer = kept(path, *CAT_FILE).ask(f"{treeish}^{{tree}}").split(" ")
    if len(answer) != 3 or answer[1] != "tree":
        raise GitError(f"{treeish} has no tree")
    remember_tree(treeish, answer[0])
    return answer[0]


def tree_changes(path: StrPath, old: str, new: str) -> list[TreeChange]:
    """Every path that differs from tree-ish `old` to tree-ish `new`, as git sees it."""
    trees = f"{tree_id(path, old)} {tree_id(path, new)}"
    out = kept(path, *DIFF_TREE).ask_until_echo(trees)
    # It names the two trees before their differences; not at all if it could not read them.
    if not out.startswith(f"{trees}\n".encode()):
        raise GitError(f"git diff-tree: cannot compare {old} with {new}")
    fields = out[len(trees) + 1 :].split(b"\0")[:-1]  # the output ends with a NUL
    changes, lines, i = [], {}, 0
    while i < len(fields):
        if fields[i].startswith(b":"):  # raw: ":mode mode id id status", then the path
            old_mode, new_mode, old_id, new_id, _ = fields[i].decode().lstrip(":").split(" ")
            name = fields[i + 1].decode(errors="replace")
            changes.append(TreeChange(name, old_mode, new_mode, old_id, new_id))
            i += 2
        else:  # numstat: "added\tremoved\tpath" ("-" for a binary file)
            added, removed, name = fields[i].decode(errors="replace").split("\t", 2)
            lines[name] = None if "-" in (added, removed) else int(added) + int(removed)
            i += 1
    for change in changes:
        change.lines = lines.get(change.path, 0)
    read_blobs(path, changes)
    return changes


def numstat(path: StrPath, old: str, new: str) -> dict[str, int | None]:
    """{path: lines added + removed}, None for a binary file."""
    out = git_bytes(path, "diff-tree", "-r", "-z", "--no-renames", "--numstat", old, new)
    counts: dict[str, int | None] = {}
    for record in out.stdout.split(b"\0"):
        if record:
            added, removed, name = record.decode(errors="replace").split("\t", 2)
            counts[name] = None if "-" in (added, removed) else int(added) + int(removed)
    return counts


def read_blobs(path: StrPath, changes: list[TreeChange]) -> None:
    """Fill in the sizes of the new blobs and the targets of the new symlinks."""
    blobs = [c for c in changes if c.kind in ("file", "exec", "symlink")]
    if not blobs:
        return
    # The worker's kept cat-file answers: no git process started per landing.
    checker = kept(path, *CAT_FILE)
    sizes = {c.new_id: checker.ask(c.new_id).split(" ")[-1] for c in blobs}
    targets = cat_blobs(path, [c.new_id for c in blobs if c.kind == "symlink"])
    for change in blobs:
        change.size = int(sizes[change.new_id])
        if change.kind == "symlink":
            change.link_target = targets[change.new_id].decode(errors="replace")


def cat_blobs(path: StrPath, ids: list[str]) -> dict[str, bytes]:
    """{id: content} of the blobs `ids`, read by one `git cat-file --batch`."""
    if not ids:
        return {}
    out = git_bytes(path, "cat-file", "--batch", stdin="".join(f"{i}\n" for i in ids)).stdout
    blobs, at = {}, 0
    while at < len(out):
        header_end = out.index(b"\n", at)
        object_id, kind, size = out[at:header_end].decode().split(" ")
        if kind != "blob":
            raise GitError(f"{object_id} is a {kind}, not a blob")
        start = header_end + 1
        blobs[object_id] = out[start : start + int(size)]
        at = start + int(size) + 1  # the content's closing newline
    return blobs


def tree_entries(path: StrPath, tree: str) -> dict[str, tuple[str, str]]:
    """{path: (mode, object id)} of every entry of `tree`, folders (040000) included."""
    out = git_bytes(path, "ls-tree", "-r", "-t", "-z", "--full-tree", tree)
    if out.returncode != 0:
        raise GitError(f"git ls-tree: {last_line(out.stderr.decode(errors='replace'))}")
    entries = {}
    for record in out.stdout.split(b"\0"):
        if record:
            meta, _, name = record.partition(b"\t")
            mode, _, object_id = meta.decode().split(" ")
            entries[name.decode(errors="replace")] = (mode, object_id)
    return entries


def symlinks(path: StrPath, tree: str) -> tuple[dict[str, str], dict[str, str]]:
    """({path: mode} of every entry of `tree`, {path: target} of its symlinks)."""
    entries = tree_entries(path, tree)
    links = {name: oid for name, (mode, oid) in entries.items() if mode == "120000"}
    targets = cat_blobs(path, sorted(set(links.values())))
    modes = {name: mode for name, (mode, _) in entries.items()}
    return modes, {name: targets[oid].decode(errors="replace") for name, oid in links.items()}


def resolve_link(link: str, target: str, modes: dict[str, str]) -> tuple[str | None, list[str]]:
    """Where a symlink at `link` with `target` points in a tree of `modes`: the path
    (None if it leaves the repository) and the symlinks it passes through."""
    if target.startswith("/"):
        return None, []
    parts = [p for p in posixpath.dirname(link).split("/") if p]
    through: list[str] = []
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None, through
            parts.pop()
            continue
        parts.append(part)
        if modes.get("/".join(parts)) == "120000":
            through.append("/".join(parts))
    return "/".join(parts), through


def checkout(path: StrPath, tree: str, dest: StrPath) -> None:
    """Write the files of `tree` into the folder `dest` (a scratch checkout)."""
    with PrivateIndex(path) as idx:
        idx.git("read-tree", tree)
        git_run(path, "--work-tree", str(dest), "checkout-index", "-a", env=idx.env)


def parent_of(path: StrPath, sha: str) -> str:
    return git_run(path, "rev-parse", f"{sha}^")


def tree_of(path: StrPath, sha: str) -> str:
    return git_run(path, "rev-parse", f"{sha}^{{tree}}")


def push(path: StrPath, upstream: str, branch: str) -> None:
    """Fast-forward `branch` on the upstream; never forced. Raises GitError."""
    ref = f"refs/heads/{branch}"
    git_run(path, "push", "--porcelain", "--", upstream, f"{ref}:{ref}", timeout=300, remote=True)


def log_with_trailers(path: StrPath, branch: str, limit: int = 20) -> list[dict[str, str]]:
    """Newest commits on `branch`: dicts of sha, subject, author, date and their Bead trailer."""
    fmt = "%H%x1f%s%x1f%an%x1f%cI%x1f%(trailers:key=Bead,valueonly,separator=%x2c)%x1e"
    try:
        out = git_run(path, "log", f"-n{limit}", f"--format={fmt}", f"refs/heads/{branch}")
    except GitError:
        return []
    keys = ("sha", "subject", "author", "date", "bead")
    return [
        dict(zip(keys, rec.strip().split("\x1f"), strict=False))
        for rec in out.split("\x1e")
        if rec.strip()
    ]


# Mirrors. A session worker on another machine cannot read the canonical
# repositories: it keeps a bare mirror of each, fetched over Corral's git over
# HTTP with the session's token, and clones sessions from it as from the canonical.


def can_read_repository(path: StrPath) -> bool:
    """Whether this process sees the bare repository at `path` (its objects)."""
    objects = Path(path) / "objects"
    return objects.is_dir() and os.access(objects, os.R_OK | os.X_OK)


def basic_auth_env(token: str) -> dict[str, str]:
    """git settings, as environment pairs, sending `token` as the Basic password."""
    basic = base64.b64encode(f"worker:{token}".encode()).decode()
    return {"http.extraHeader": f"Authorization: Basic {basic}"}


def mirror(url: str, path: StrPath, token: str, want: str) -> Path:
    """Fetch every branch of `url` into the bare mirror at `path` (made if missing)
    until it holds the commit `want`; one fetch at a time per mirror."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = basic_auth_env(token)
    env = git_env({"GIT_TERMINAL_PROMPT": "0"})
    count = int(env["GIT_CONFIG_COUNT"])
    for n, (key, value) in enumerate(config.items(), start=count):
        env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = key, value
    env["GIT_CONFIG_COUNT"] = str(count + len(config))
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions of one repository on this worker
        if not (path / "HEAD").is_file():
            done = run_git(["init", "--quiet", "--bare", "--template=", str(path)], env)
            if done.returncode != 0:
                raise GitError(f"git init: {last_line(done.stderr.decode(errors='replace'))}")
        if run_git(
            ["--git-dir", str(path), "cat-file", "-e", f"{want}^{{commit}}"], env
        ).returncode:
            refs = "+refs/heads/*:refs/heads/*"
            argv = ["--git-dir", str(path), "fetch", "--quiet", "--prune", "--", url, refs]
            done = run_git(argv, env, timeout=600)
            if done.returncode != 0:
                raise GitError(
                    f"cannot fetch {url}: {last_line(done.stderr.decode(errors='replace'))}"
                )
        check = ["--git-dir", str(path), "cat-file", "-e", f"{want}^{{commit}}"]
        if run_git(check, env).returncode != 0:
            raise GitError(f"{url} has no commit {want}")
    return path


# Session clones. The agent owns its clone and may do anything in it, its
# .git/config and hooks included; Corral never runs git with that git dir.
# It reads the agent's files through a git dir and an index of its own.

EXCLUDED = ".agents/\n"  # the context pack and handoff: never part of the work


def clone_for_session(path: StrPath, workdir: StrPath, base_sha: str) -> None:
    """A private clone of the canonical repository at `workdir`, detached at base_sha."""
    workdir = Path(workdir)
    argv = ["clone", "--quiet", "--shared", "--no-checkout", "--template=", "--"]
    done = run_git([*argv, str(path), str(workdir)], env=git_env())
    if done.returncode != 0 or not (workdir / ".git").is_dir():
        why = last_line(done.stderr.decode(errors="replace"))
        raise GitError(f"cannot clone {path} into {workdir}: {why}")
    # The agent has not run yet: this .git is still the one git just made.
    dot_git = ["--git-dir", str(workdir / ".git"), "--work-tree", str(workdir)]
    done = run_git([*dot_git, "checkout", "--quiet", "--detach", base_sha], git_env(), cwd=workdir)
    if done.returncode != 0:
        raise GitError(f"git checkout: {last_line(done.stderr.decode(errors='replace'))}")
    (workdir / ".git" / "info").mkdir(exist_ok=True)
    (workdir / ".git" / "info" / "exclude").write_text(EXCLUDED)


class SessionIndex:
    """What a session's clone has changed against base_sha: `refresh()`, then
    `numstat()` or `patch()`. Read with a throwaway git dir whose objects borrow
    the canonical repository's (`objects_from`), with a private index; the
    clone's own .git is never read."""

    def __init__(self, workdir: StrPath, base_sha: str, objects_from: StrPath) -> None:
        self.workdir, self.base_sha = Path(workdir), base_sha
        self.tmp = tempfile.TemporaryDirectory(prefix="corral-session-index-")
        try:
            self.git_dir = Path(self.tmp.name, "git")
            done = run_git(
                ["init", "--quiet", "--bare", "--template=", str(self.git_dir)], git_env()
            )
            if done.returncode != 0:
                raise GitError(f"git init: {last_line(done.stderr.decode(errors='replace'))}")
            objects = Path(objects_from).resolve() / "objects"
            (self.git_dir / "objects" / "info").mkdir(parents=True, exist_ok=True)
            (self.git_dir / "objects" / "info" / "alternates").write_text(f"{objects}\n")
            (self.git_dir / "info").mkdir(exist_ok=True)
            (self.git_dir / "info" / "exclude").write_text(EXCLUDED)
            self.env = {"GIT_INDEX_FILE": os.path.join(self.tmp.name, "index")}
            self.git("read-tree", base_sha)
        except BaseException:
            self.tmp.cleanup()
            raise

    def close(self) -> None:
        self.tmp.cleanup()

    def git(self, *args: str, timeout: float = 120) -> str:
        """git on the clone's files, with Corral's git dir and index; stdout, or GitError."""
        tree = ["--git-dir", str(self.git_dir), "--work-tree", str(self.workdir)]
        done = run_git([*tree, *args], git_env(self.env), cwd=self.workdir, timeout=timeout)
        if done.returncode != 0:
            raise GitError(f"git {args[0]}: {last_line(done.stderr.decode(errors='replace'))}")
        return done.stdout.decode(errors="replace")

    def refresh(self) -> None:
        self.git("add", "-A", "--", ".")
        # .agents/ is Corral's (the context pack), never part of the work: its
        # entries go back to what base_sha holds there (most often nothing),
        # whatever a .gitignore of the agent's made `add` take.
        self.git("reset", "-q", self.base_sha, "--", ".agents")

    def numstat(self) -> dict[str, int]:
        """{path: lines added + removed} of every changed path (binary files count 0)."""
        out = self.git("diff", "--cached", "--numstat", "--no-renames", "-z", self.base_sha)
        changes: dict[str, int] = {}
        for record in out.split("\0"):
            if record:
                added, removed, path = record.split("\t", 2)
                changes[path] = sum(int(n) for n in (added, removed) if n != "-")
        return changes

    def patch(self) -> str:
        return self.git("diff", "--cached", "--binary", "--no-renames", self.base_sha)


# What the planner reads: the files at a branch's head and the files changed most lately.


def files_at(path: StrPath, commit: str) -> list[str]:
    """Every file path in the commit's tree, sorted ([] if there is no such commit)."""
    out = git_bytes(path, "ls-tree", "-r", "-z", "--name-only", "--full-tree", commit, "--")
    if out.returncode != 0:
        return []
    return sorted(name.decode(errors="replace") for name in out.stdout.split(b"\0") if name)


def changed_files(path: StrPath, commit: str, commits: int) -> list[str]:
    """The paths each of the last `commits` commits up to `commit` changed, once per commit."""
    out = git_bytes(
        path,
        "log",
        f"-n{commits}",
        "--format=",
        "--name-only",
        "-z",
        "--no-renames",
        commit,
        "--",
    )
    if out.returncode != 0:
        return []
    names = out.stdout.replace(b"\n", b"\0").split(b"\0")
    return [name.decode(errors="replace") for name in names if name]


def commits_naming(
    path: StrPath, branch: str, key: str, value: str, limit: int = 20
) -> list[dict[str, str]]:
    """Newest commits on `branch` with the trailer `key: value` (a bead's commit and
    its reverts): dicts of sha, subject, date and the commit it reverts, if any."""
    trailer = "%(trailers:key={},valueonly,separator=%x2c)"
    fmt = f"%H%x1f%s%x1f%cI%x1f{trailer.format('Reverts')}%x1f{trailer.format(key)}%x1e"
    done = git_call(
        path,
        "log",
        "-n200",
        "-F",
        f"--grep={key}: {value}",
        f"--format={fmt}",
        f"refs/heads/{branch}",
        "--",
    )
    if done.returncode != 0:
        return []
    found = []
    for record in done.stdout.split("\x1e"):
        fields = record.strip().split("\x1f")
        if len(fields) == 5 and value in fields[4].split(","):
            sha, subject, date, reverts, _ = fields
            found.append({"sha": sha, "subject": subject, "date": date, "reverts": reverts})
    return found[:limit]
