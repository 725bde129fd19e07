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
import resource
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
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


COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


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
    capped: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """git with the forced settings; `env` is the whole environment (see git_env).
    `capped`: with its memory capped (see start_git); only a clone or a fetch
    from elsewhere, which may need more for a big repository, goes without."""
    if isinstance(stdin, str):
        # A lone surrogate cannot be UTF-8; passed through, git judges the bytes.
        stdin = stdin.encode("utf-8", "surrogatepass")
    argv = ["git", *FORCED_FLAGS, *args]
    piped = subprocess.PIPE if stdin is not None else None
    with start_git(
        argv, capped, stdin=piped, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd
    ) as proc:
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # and waited for as the block ends
            raise
    return subprocess.CompletedProcess(argv, proc.returncode or 0, out, err)


# git allocates what a patch tells it to (a binary hunk's declared size, the blob
# a delta makes) and reads whole the blobs an agent wrote: its data memory is
# capped (RLIMIT_DATA, not address space, which git's pack windows take). Set by
# prlimit(2) as it starts, before it is given its input: a preexec_fn would fork
# this whole process for each git, where Popen otherwise need not.
MB = 1024 * 1024


def data_limit() -> int:
    """GIT_MEMORY_MB in bytes (0: none), within this process's own hard limit."""
    limit = settings.GIT_MEMORY_MB * MB
    hard = resource.getrlimit(resource.RLIMIT_DATA)[1]
    if limit and hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)  # a process may lower a limit, never raise it
    return limit


def start_git(argv: list[str], capped: bool, **popen: Any) -> subprocess.Popen[bytes]:
    """Popen(argv), with its data memory capped unless not `capped`."""
    limit = data_limit() if capped else 0
    after = bool(limit) and hasattr(resource, "prlimit")  # Linux
    if limit and not after:
        popen["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **popen)
    if after:
        try:
            resource.prlimit(proc.pid, resource.RLIMIT_DATA, (limit, limit))
        except ProcessLookupError:
            pass  # it has ended already
    return proc


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
    done = run_git(argv, env=git_env(remote=True), timeout=3600, capped=False)
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
    """Run git on the repository at `path`; its output as bytes, exactly. While
    the lead judges a submission there, its objects go to the quarantine."""
    held = QUARANTINES.get(str(path))
    extra = {"GIT_DIR": str(path), **(held.env if held else {}), **(env or {})}
    full_env = git_env(extra, remote=remote)
    return run_git(args, env=full_env, stdin=stdin, timeout=timeout, capped=not remote)


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
        held = QUARANTINES.get(str(path))
        self.proc = start_git(
            ["git", *FORCED_FLAGS, *args],
            capped=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=git_env({"GIT_DIR": str(path), **(held.env if held else {})}),
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
KEPT: OrderedDict[tuple[int, str, tuple[str, ...], Path | None], Kept] = OrderedDict()
KEPT_LOCK = threading.Lock()


def kept(path: StrPath, *args: str) -> Kept:
    """This process's kept `git args` for the repository at `path`, started
    once, or again when worn out. Keyed by pid too: a forked lead worker
    never writes to its parent's pipes."""
    held = QUARANTINES.get(str(path))  # one with the quarantine is another process
    key = (os.getpid(), str(path), args, held.objects if held else None)
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


# The lead's quarantine. What git writes while the lead judges a submission (the
# blobs of its patch, trees, the commit) goes to an object folder of this
# process's own beside the canonical store, which git reads as an alternate
# (receive-pack quarantines a push the same way): what passed every gate moves
# into the canonical store before the branch points at it, and what refused
# work wrote is deleted when the train ends. Sessions borrow only `objects/`.

QUARANTINES: dict[str, "Quarantine"] = {}  # by repository path: those open in this process


class Quarantine:
    """The quarantine of this process in the repository at `path`; see quarantined()."""

    def __init__(self, path: StrPath) -> None:
        self.canonical = Path(path, "objects")
        self.objects = Path(path, "corral-quarantine", f"{socket.gethostname()}-{os.getpid()}")
        alternate = str(self.canonical.resolve())
        if ":" in alternate or alternate.startswith('"'):  # git splits the list at colons
            alternate = '"' + alternate.replace("\\", "\\\\").replace('"', '\\"') + '"'
        self.env = {
            "GIT_OBJECT_DIRECTORY": str(self.objects),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": alternate,
        }

    def held(self) -> set[str]:
        """Every file in it, as a path relative to it (git writes in `xx/` folders)."""
        found = set()
        with os.scandir(self.objects) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    found.add(entry.name)
                    continue
                with os.scandir(entry.path) as files:
                    found.update(f"{entry.name}/{file.name}" for file in files)
        return found

    def drop(self) -> None:
        """Delete what it holds (what did not land). Its folders stay: making them
        again costs more than looking in them."""
        for name in self.held():
            Path(self.objects, name).unlink(missing_ok=True)

    def migrate(self, ids: Sequence[str]) -> None:
        """Move the objects `ids` it holds into the canonical store (those it does
        not hold are there already); what a refusal wrote stays behind, to be dropped."""
        for object_id in ids:
            name = f"{object_id[:2]}/{object_id[2:]}"
            held = Path(self.objects, name)
            if not held.is_file():
                continue
            target = self.canonical / name
            target.parent.mkdir(exist_ok=True)
            try:
                os.link(held, target)  # never over what is there, as git does
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links
                os.replace(held, target)
                continue
            held.unlink()


@contextmanager
def quarantined(path: StrPath) -> Iterator[Quarantine]:
    """Within it, every git call on the repository at `path` made by this process
    writes its objects to the quarantine; what did not move out is deleted at its end
    (with anything a killed process of the same id left there)."""
    quarantine = Quarantine(path)
    if not quarantine.objects.is_dir():  # this process's first landing here
        quarantine.objects.mkdir(parents=True)
        sweep_quarantines(quarantine.objects.parent)
    QUARANTINES[str(path)] = quarantine
    try:
        yield quarantine
    finally:
        del QUARANTINES[str(path)]
        quarantine.drop()


def sweep_quarantines(folder: Path) -> None:
    """Remove the quarantines of this machine's processes that are gone."""
    host = socket.gethostname()
    for entry in folder.iterdir():
        name, _, pid = entry.name.rpartition("-")
        if name != host or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except PermissionError:
            pass  # another user's process: alive


@contextmanager
def outside_quarantine(path: StrPath) -> Iterator[None]:
    """Git calls on the repository at `path` write to the canonical store again
    within it: what the lead fetches from the upstream, or makes of commits
    already landed, must outlive the train's quarantine."""
    held = QUARANTINES.pop(str(path), None)
    try:
        yield
    finally:
        if held is not None:
            QUARANTINES[str(path)] = held


def quarantine_of(path: StrPath) -> Quarantine | None:
    """The quarantine open in this process for the repository at `path`, if any."""
    return QUARANTINES.get(str(path))


def update_branch(path: StrPath, branch: str, new: str, old: str) -> bool:
    """Compare-and-swap the branch from `old` to `new`; False if it had moved."""
    return git_call(path, "update-ref", f"refs/heads/{branch}", new, old).returncode == 0


def find_commit_with_trailer(
    path: StrPath, branch: str, since: str, key: str, value: str
) -> str | None:
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

CONTROL_CHARS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
UNICODE_BREAKS = re.compile("[\x85\u2028\u2029]")
TRAILER_LINE = re.compile(r"^[A-Za-z0-9-]+[ \t]*:")  # git's token, optional blanks, separator
GIT_GENERATED = ("Signed-off-by: ", "(cherry picked from commit ")
DIVIDER = re.compile(r"^---(\s|$)")


def without_controls(text: str) -> str:
    """`text` without control characters (newlines and tabs stay), lone
    surrogates or bidirectional controls; a Unicode line break (git breaks
    lines at newlines only, a viewer at these too) is a space."""
    return CONTROL_CHARS.sub("", UNICODE_BREAKS.sub(" ", text))


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
TREE_MODE = "040000"


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
# One diff-tree for both: the raw records (meta, path), then the numstat ones;
# with -t the trees that changed too (what a landing moves out of the quarantine).
DIFF_TREE = ("diff-tree", "--stdin", "-r", "-t", "-z", "--no-renames", "--raw", "--numstat")


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


def tree_changes(
    path: StrPath, old: str, new: str, new_trees: list[str] | None = None
) -> list[TreeChange]:
    """Every path that differs from tree-ish `old` to tree-ish `new`, as git sees
    it (folders aside: the ids of the trees `new` has and `old` has not go to `new_trees`)."""
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
            if TREE_MODE not in (old_mode, new_mode):
                changes.append(TreeChange(name, old_mode, new_mode, old_id, new_id))
            elif new_mode == TREE_MODE and new_trees is not None:
                new_trees.append(new_id)
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


def blobs_at(path: StrPath, commit: str, names: Sequence[str]) -> dict[str, tuple[str, str, int]]:
    """{name: (mode, object id, size)} of those of `names` (paths from the root)
    that `commit`'s tree holds as a blob (a file or a symlink), by one ls-tree."""
    args = ["ls-tree", "-z", "--long", "--full-tree", commit, "--", *names]
    out = git_bytes(path, *args)
    if out.returncode != 0:
        raise GitError(f"git ls-tree: {last_line(out.stderr.decode(errors='replace'))}")
    found = {}
    for record in out.stdout.split(b"\0"):
        if record:
            meta, _, name = record.partition(b"\t")
            mode, kind, object_id, size = meta.decode().split()
            if kind == "blob":
                found[name.decode(errors="replace")] = (mode, object_id, int(size))
    return found


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


def tree_entry(path: StrPath, commit: str, name: str) -> tuple[str, str, int] | None:
    """(mode, object id, size) of the blob at `name` in `commit`, as git lists it;
    None if there is none. `name` is matched literally (no pathspec magic), and
    only an entry git names exactly so counts."""
    if not COMMIT_ID.fullmatch(commit):
        raise GitError(f"not a commit id: {commit[:60]!r}")
    out = git_bytes(
        path, "--literal-pathspecs", "ls-tree", "-z", "-l", "--full-tree", commit, "--", name
    )
    if out.returncode != 0:
        raise GitError(f"git ls-tree: {last_line(out.stderr.decode(errors='replace'))}")
    for record in out.stdout.split(b"\0"):
        meta, _, listed = record.partition(b"\t")
        fields = meta.decode().split()
        if listed.decode(errors="replace") == name and len(fields) == 4 and fields[1] == "blob":
            return fields[0], fields[2], int(fields[3])
    return None


def blob_text(path: StrPath, object_id: str) -> str:
    """A blob's content as text (undecodable bytes replaced), read by its id."""
    return cat_blobs(path, [object_id])[object_id].decode(errors="replace")


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


# Pull-request mode (agents/jobs/forge.py): a bead's commit goes to its own
# branch `corral/<bead>` on the upstream, and Corral's branch follows the
# upstream's once the forge has merged it.

PROPOSAL_PREFIX = "corral/"


def proposal_branch(bead_id: str) -> str:
    return f"{PROPOSAL_PREFIX}{bead_id}"


def push_proposal(path: StrPath, upstream: str, sha: str, branch: str) -> None:
    """Point the upstream's `branch` (Corral's own `corral/<bead>`) at `sha`, with a
    lease on what it held when asked (nothing, or an earlier attempt's commit):
    a branch someone else moved meanwhile is not overwritten. Raises GitError."""
    ref = f"refs/heads/{branch}"
    held = git_run(path, "ls-remote", "--", upstream, ref, timeout=120, remote=True).split()
    lease = f"--force-with-lease={ref}:{held[0] if held else ''}"
    git_run(
        path, "push", "--porcelain", lease, "--", upstream, f"{sha}:{ref}", timeout=300, remote=True
    )


def fetch_upstream_head(path: StrPath, upstream: str, branch: str) -> str:
    """Fetch the upstream's `branch` (one ref) to `refs/corral/upstream/<branch>`; its sha."""
    return fetch_branch(path, upstream, branch)


def find_trailer_between(path: StrPath, since: str, tip: str, key: str, value: str) -> str | None:
    """The newest commit in since..tip whose trailer block has `key: value`,
    whoever committed it (a forge rebased it: its committer is the forge's)."""
    fmt = f"%H%x1f%(trailers:key={key},valueonly,unfold,separator=%x1d)%x1e"
    out = git_run(path, "log", f"--format={fmt}", f"{since}..{tip}")
    for record in filter(None, (rec.strip("\n") for rec in out.split("\x1e"))):
        sha, values = record.split("\x1f", 1)
        if value in values.strip().split("\x1d"):
            return sha
    return None


# Following the upstream. Corral keeps what it fetched of the upstream's branch
# at refs/corral/upstream/<branch> (never cloned, never served), and what a
# rewritten upstream left unpushed at refs/corral/diverged/<UTC time>.

UPSTREAM_REFS = "refs/corral/upstream"
DIVERGED_REFS = "refs/corral/diverged"


class PushRejected(GitError):
    """The upstream refused the update: it no longer holds the commit the push
    expected to replace (someone pushed meanwhile)."""


def upstream_ref(branch: str) -> str:
    return f"{UPSTREAM_REFS}/{branch}"


def fetch_branch(path: StrPath, upstream: str, branch: str) -> str:
    """Fetch the upstream's `branch` (that one ref) into upstream_ref(branch) and
    return its commit. The tracking ref is Corral's own: it follows the
    upstream wherever it went, a rewritten history included."""
    source = check_source(upstream)
    refspec = f"+refs/heads/{branch}:{upstream_ref(branch)}"
    done = git_bytes(
        path,
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--",
        source,
        refspec,
        timeout=600,
        remote=True,
    )
    if done.returncode != 0:
        reason = last_line(done.stderr.decode(errors="replace"))
        raise GitError(f"cannot fetch {branch!r} from {upstream}: {reason}")
    return git_run(path, "rev-parse", "--verify", f"{upstream_ref(branch)}^{{commit}}")


def is_ancestor(path: StrPath, ancestor: str, descendant: str) -> bool:
    """`ancestor` is `descendant` or one of its ancestors."""
    done = git_call(path, "merge-base", "--is-ancestor", ancestor, descendant)
    if done.returncode not in (0, 1):
        raise GitError(f"git merge-base: {last_line(done.stderr)}")
    return done.returncode == 0


def commits_only_in(path: StrPath, tip: str, not_in: str) -> list[str]:
    """The commits reachable from `tip` and not from `not_in`, oldest first."""
    out = git_run(path, "rev-list", "--reverse", "--topo-order", tip, f"^{not_in}")
    return out.split()


def push_with_lease(path: StrPath, upstream: str, branch: str, sha: str, expected: str) -> None:
    """Update the upstream's `branch` from `expected` to `sha`, a descendant of
    it: the push names the commit it expects to replace (a lease) and the
    upstream refuses unless it still holds it, so nothing there is ever
    overwritten; and since `sha` descends from `expected`, the update is a
    fast-forward. PushRejected when the upstream moved, GitError otherwise."""
    if not is_ancestor(path, expected, sha):
        raise GitError(f"{sha[:12]} does not descend from the upstream's {expected[:12]}")
    ref = f"refs/heads/{branch}"
    argv = ("push", "--porcelain", f"--force-with-lease={ref}:{expected}")
    done = git_call(
        path, *argv, "--", check_source(upstream), f"{sha}:{ref}", timeout=300, remote=True
    )
    if done.returncode == 0:
        return
    status = [line for line in done.stdout.splitlines() if line.startswith("!")]
    reason = status[0].split("\t")[-1] if status else last_line(done.stderr)
    # "[rejected] (stale info)", "(fetch first)": the upstream moved. "[remote
    # rejected]" is its own refusal (a checked-out branch, a hook): pushing
    # again on a new head would not change it.
    if status and reason.startswith("[rejected]"):
        raise PushRejected(f"the upstream refused the push: {reason}")
    raise GitError(f"cannot push to {upstream}: {reason}")


def set_ref(path: StrPath, ref: str, sha: str, old: str = "") -> bool:
    """Point `ref` at `sha` if it still holds `old` ("": if it does not exist)."""
    expected = old or "0" * len(sha)
    return git_call(path, "update-ref", ref, sha, expected).returncode == 0


def diverged_ref(when: str) -> str:
    return f"{DIVERGED_REFS}/{when}"


def cherry_onto(path: StrPath, commit: str, onto: str) -> str:
    """`commit` made again on `onto`: its own change (from its parent) applied
    to `onto`'s tree, three-way per file where the text moved, with its
    message and author kept and the lead as committer. MergeConflict if it
    does not apply."""
    parent = parent_of(path, commit)
    patch = git_bytes(
        path, "diff-tree", "-p", "--binary", "--full-index", "--no-renames", parent, commit
    ).stdout
    with PrivateIndex(path) as idx:
        idx.git("read-tree", onto)
        if patch.strip():
            plain = git_call(path, "apply", "--cached", "--binary", "-", stdin=patch, env=idx.env)
            if plain.returncode != 0:
                three = git_call(
                    path, "apply", "--cached", "--3way", "--binary", "-", stdin=patch, env=idx.env
                )
                if three.returncode != 0:
                    raise MergeConflict(unmerged_paths(path, idx))
        tree = idx.git("write-tree")
    fields = git_run(path, "show", "-s", "--format=%an%x00%ae%x00%ad", "--date=raw", commit)
    name, email, date = fields.split("\0")
    message = git_bytes(path, "show", "-s", "--format=%B", commit).stdout.decode(
        "utf-8", "surrogateescape"
    )
    env = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_NAME": LEAD_IDENTITY[0],
        "GIT_COMMITTER_EMAIL": LEAD_IDENTITY[1],
    }
    message = message.rstrip("\n") + "\n"
    return git_run(
        path,
        "commit-tree",
        tree,
        "-p",
        onto,
        "-F",
        "-",
        stdin=message.encode("utf-8", "surrogateescape"),
        env=env,
    )


def unmerged_paths(path: StrPath, idx: PrivateIndex) -> list[str]:
    out = git_call(path, "ls-files", "--unmerged", "-z", env=idx.env).stdout
    return sorted({rec.split("\t", 1)[1] for rec in out.split("\0") if "\t" in rec})


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
            done = run_git(argv, env, timeout=600, capped=False)
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
            self.nested: list[str] = []  # what the last refresh() left out
        except BaseException:
            self.tmp.cleanup()
            raise

    def close(self) -> None:
        self.tmp.cleanup()

    def git(self, *args: str, timeout: float = 120, stdin: bytes | None = None) -> str:
        """git on the clone's files, with Corral's git dir and index; stdout, or GitError."""
        tree = ["--git-dir", str(self.git_dir), "--work-tree", str(self.workdir)]
        done = run_git(
            [*tree, *args], git_env(self.env), stdin=stdin, cwd=self.workdir, timeout=timeout
        )
        if done.returncode != 0:
            raise GitError(f"git {args[0]}: {last_line(done.stderr.decode(errors='replace'))}")
        return done.stdout.decode(errors="replace")

    def refresh(self) -> None:
        # A folder holding a .git of its own (a folder, a gitdir file, a
        # symlink) would make git read another repository: its HEAD would
        # become a gitlink here. Such folders are left out, unseen by git.
        self.nested = self.nested_to_leave_out()
        if not self.nested:
            self.git("add", "-A", "--", ".")
        else:
            specs = [b"."] + [b":(exclude,literal)" + os.fsencode(n) for n in self.nested]
            listed = Path(self.tmp.name, "pathspecs")
            listed.write_bytes(b"\0".join(specs) + b"\0")
            self.git("add", "-A", f"--pathspec-from-file={listed}", "--pathspec-file-nul")
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

    def leave_out(self, paths: Sequence[str]) -> None:
        """Take `paths` out of the changes (back to what base_sha holds), read
        literally: a file named `*` is that file, not every file."""
        if paths:
            names = b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)
            self.git(
                "--literal-pathspecs",
                "reset",
                "-q",
                "--pathspec-from-file=-",
                "--pathspec-file-nul",
                self.base_sha,
                stdin=names,
            )

    def nested_to_leave_out(self) -> list[str]:
        """The folders below the top holding a .git that git would read: all but
        those the index tracks files in (git walks them as ours, never reading
        their .git); a submodule (a gitlink) is left out too, so keeps its commit."""
        found = dot_git_folders(self.workdir)
        if not found:
            return []
        tracked: set[str] = set()  # of those, the folders the index holds files in
        for record in filter(None, self.git("ls-files", "-s", "-z").split("\0")):
            meta, _, name = record.partition("\t")
            if meta.startswith("160000 "):
                continue  # a submodule: git would read its .git
            parts = name.split("/")
            tracked.update("/".join(parts[:n]) for n in range(1, len(parts)))
        return [folder for folder in found if folder not in tracked]


def dot_git_folders(top: Path) -> list[str]:
    """Every folder below `top` that holds an entry named .git (of any kind),
    found without following a symlink; sorted. Its own .git at the top is not one."""
    found, folders = [], [""]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(top / folder if folder else top) as entries:
                for entry in entries:
                    if entry.name == ".git":
                        if folder:
                            found.append(folder)
                    elif entry.is_dir(follow_symlinks=False):
                        folders.append(f"{folder}/{entry.name}" if folder else entry.name)
        except OSError:
            continue  # gone meanwhile, or unreadable: git cannot read in it either
    return sorted(found)


# Salvages. A session that ends without handing in leaves its work (within its
# bead's scope) as one commit on base_sha, at refs/corral/salvage/<bead>/<session>
# in the canonical repository: never on a branch, never pushed (push() names
# the branch alone), never cloned (clones take branches), kept until pruned.

SALVAGE_REFS = "refs/corral/salvage"
REF_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def salvage_ref(bead_id: str, session_id: str) -> str:
    """The ref a session's salvage lives at; any bead id makes a valid ref name."""
    bead = REF_UNSAFE.sub("_", bead_id) or "_"
    return f"{SALVAGE_REFS}/{bead}/{REF_UNSAFE.sub('_', session_id)}"


def keep_salvage(
    path: StrPath, ref: str, base_sha: str, patch: str, message: str, author: tuple[str, str]
) -> str:
    """One commit on `base_sha` holding `patch`, made with a private index and
    put at `ref` only if `ref` is not there yet; the commit `ref` holds."""
    with PrivateIndex(path) as idx:
        tree = idx.tree_with_patch(base_sha, patch)
    sha = commit_tree(path, tree, base_sha, message, author=author)
    made = git_call(path, "update-ref", "--no-deref", ref, sha, "")
    if made.returncode == 0:
        return sha
    kept = git_call(path, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if kept.returncode != 0:  # not there, yet not made: say why
        raise GitError(f"git update-ref: {last_line(made.stderr)}")
    return kept.stdout  # another process kept this session's work first


def drop_salvage(path: StrPath, ref: str, sha: str) -> bool:
    """Delete `ref` if it still holds `sha` (or is already gone)."""
    if not ref.startswith(SALVAGE_REFS + "/"):
        raise GitError(f"{ref} is not a salvage")
    done = git_call(path, "update-ref", "--no-deref", "-d", ref, sha)
    return done.returncode == 0 or not has_commit(path, ref)


def has_commit(path: StrPath, rev: str) -> bool:
    return git_call(path, "cat-file", "-e", f"{rev}^{{commit}}").returncode == 0


def salvage_onto(path: StrPath, sha: str, head: str) -> str:
    """The tree of salvage `sha` carried onto `head`: three-way, with the
    salvage's base as the merge base, as the lead applies a patch. MergeConflict
    if it no longer applies."""
    if parent_of(path, sha) == head:
        return tree_of(path, sha)
    return merge_trees(path, head, sha)


def salvage_patch(path: StrPath, sha: str) -> bytes:
    """The salvage's changes against its base, as a patch `git apply` takes."""
    done = git_bytes(path, "diff", "--binary", "--no-renames", f"{sha}^", sha)
    if done.returncode != 0:
        raise GitError(f"git diff: {last_line(done.stderr.decode(errors='replace'))}")
    return done.stdout


def salvage_diff(path: StrPath, sha: str) -> str:
    """The salvage's changes for a person to read (binary files named, not spelled out)."""
    return git_run(path, "diff", "--no-renames", "--no-color", f"{sha}^", sha)


def put_tree_in_clone(workdir: StrPath, base_sha: str, tree: str) -> None:
    """Make a fresh session clone's files those of `tree`, as if its agent had
    written them: its index stays at base_sha, so they show as changes. Only
    before the agent runs, while the clone's .git is still the one Corral made."""
    dot_git = ["--git-dir", str(Path(workdir) / ".git"), "--work-tree", str(workdir)]
    for args in (["read-tree", "-m", "-u", base_sha, tree], ["read-tree", base_sha]):
        done = run_git([*dot_git, *args], git_env(), cwd=workdir)
        if done.returncode != 0:
            raise GitError(f"git read-tree: {last_line(done.stderr.decode(errors='replace'))}")


# What the planner reads: the files at a branch's head and the files changed most lately.


def files_at(path: StrPath, commit: str) -> list[str]:
    """Every file path in the commit's tree, sorted ([] if there is no such commit)."""
    out = git_bytes(path, "ls-tree", "-r", "-z", "--name-only", "--full-tree", commit, "--")
    if out.returncode != 0:
        return []
    return sorted(name.decode(errors="replace") for name in out.stdout.split(b"\0") if name)


@dataclass(frozen=True)
class Entry:
    """One entry of a commit's tree as git stores it: a symlink is its mode,
    never where it points."""

    path: str
    mode: str  # 100644, 100755 (files), 120000 (a symlink), 160000 (a submodule)
    oid: str
    size: int | None  # a blob's size; None for a submodule

    @property
    def regular(self) -> bool:
        return self.mode in ("100644", "100755")


def entries_at(path: StrPath, commit: str) -> list[Entry]:
    """Every non-folder entry of the commit's tree with its mode and size, sorted."""
    out = git_bytes(path, "ls-tree", "-r", "-l", "-z", "--full-tree", commit, "--")
    if out.returncode != 0:
        raise GitError(f"git ls-tree: {last_line(out.stderr.decode(errors='replace'))}")
    entries = []
    for record in out.stdout.split(b"\0"):
        if record:
            meta, _, name = record.partition(b"\t")
            mode, _kind, oid, size = meta.decode().split()
            number = int(size) if size.isdigit() else None
            entries.append(Entry(name.decode(errors="replace"), mode, oid, number))
    return sorted(entries, key=lambda e: e.path)


def files_with_words(
    path: StrPath, commit: str, words: Sequence[str], patterns: Sequence[str]
) -> list[str]:
    """The files of the commit matching `patterns` (git pathspecs) whose text holds
    any of `words` as a whole word: `git grep` on the tree, no checkout."""
    if not words:
        return []
    args = ["grep", "-l", "-z", "-w", "-F", "-I"]
    for word in words:
        args += ["-e", word]
    out = git_bytes(path, *args, commit, "--", *patterns)
    if out.returncode == 1:
        return []  # nothing matched
    if out.returncode != 0:
        raise GitError(f"git grep: {last_line(out.stderr.decode(errors='replace'))}")
    prefix = commit + ":"
    names = (name.decode(errors="replace") for name in out.stdout.split(b"\0") if name)
    return [name.removeprefix(prefix) for name in names]


def agents_paths(path: StrPath, commit: str) -> list[str]:
    """The paths of `commit` under a top folder that a case-insensitive file
    system would take for .agents/ (Corral's, in every clone), sorted."""
    return [name for name in files_at(path, commit) if is_agents_dir(name.split("/")[0])]


def is_agents_dir(name: str) -> bool:
    """`.agents` as Windows and macOS file systems see it: any case, trailing dots and spaces."""
    return name.lower().rstrip(". ") == ".agents"


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
