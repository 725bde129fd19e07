"""Every git operation Corral performs. Commands are argv lists, never shell strings."""

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

# Without git on PATH, GitPython would fail at import with a long traceback;
# quiet lets the first git call fail with a message we can show.
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

import git  # noqa: E402
from django.conf import settings

StrPath = str | os.PathLike[str]  # a repository or folder, as a str or a Path


class GitError(Exception):
    """A git operation failed; the message is fit to show a person."""


def is_url(source: str) -> bool:
    return "://" in source or (":" in source and "@" in source.split(":", 1)[0])


def source_name(source: str) -> str:
    """A repository's name from its path or URL: the last part, without `.git`."""
    tail = source.rstrip("/").replace(":", "/").rsplit("/", 1)[-1]
    return tail.removesuffix(".git") or "repo"


def check_source(source: str) -> str:
    """Refuse, with a clear message, a local path that is not a git repository."""
    if is_url(source):
        return source
    path = Path(source).expanduser().resolve()
    if not path.exists():
        raise GitError(f"{source}: no such file or folder")
    try:
        git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise GitError(f"{source}: not a git repository") from None
    return str(path)


def clone_bare(source: str, slug: str) -> Path:
    """Clone `source` into the canonical bare repository for `slug` and return its path."""
    source = check_source(source)
    settings.REPOS_DIR.mkdir(parents=True, exist_ok=True)
    dest = settings.REPOS_DIR / f"{slug}.git"
    if dest.exists():
        raise GitError(f"{dest} already exists")
    try:
        git.Repo.clone_from(source, dest, bare=True, env={"GIT_TERMINAL_PROMPT": "0"})
    except git.GitCommandError as e:
        raise GitError(f"cannot clone {source}: {last_line(e.stderr)}") from None
    return dest


def default_branch(path: StrPath) -> str | None:
    """The branch a bare clone's HEAD points at, or None when it has no commits."""
    repo = git.Repo(path)
    try:
        return repo.head.reference.name
    except TypeError:  # a detached HEAD
        return None


def has_branch(path: StrPath, branch: str) -> bool:
    return f"refs/heads/{branch}" in {ref.path for ref in git.Repo(path).references}


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
) -> subprocess.CompletedProcess[str]:
    """Run git on the repository at `path`; return the CompletedProcess (text)."""
    full_env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_DIR=str(path), **(env or {}))
    done = subprocess.run(
        ["git", *args],
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        env=full_env,
        capture_output=True,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        stdout=done.stdout.decode(errors="replace").strip(),
        stderr=done.stderr.decode(errors="replace"),
    )


def git_run(path: StrPath, *args: str, **kwargs: Any) -> str:
    """Run git on the repository at `path`; return stdout, or raise GitError."""
    done = git_call(path, *args, **kwargs)
    if done.returncode != 0:
        raise GitError(f"git {args[0]}: {last_line(done.stderr)}")
    return done.stdout


class PrivateIndex:
    """A throwaway index file: `with PrivateIndex(path) as idx: idx.git(...)`."""

    def __init__(self, path: StrPath) -> None:
        self.path = path

    def __enter__(self) -> "PrivateIndex":
        self.tmp = tempfile.TemporaryDirectory(prefix="corral-index-")
        self.env = {"GIT_INDEX_FILE": os.path.join(self.tmp.name, "index")}
        return self

    def __exit__(self, *exc: object) -> None:
        self.tmp.cleanup()

    def git(self, *args: str, **kwargs: Any) -> str:
        return git_run(self.path, *args, env=self.env, **kwargs)

    def tree_with_patch(self, tree: str, patch: str) -> str:
        """The tree `tree` with `patch` applied, or PatchDoesNotApply."""
        self.git("read-tree", tree)
        try:
            self.git("apply", "--cached", "--binary", "-", stdin=patch)
        except GitError as e:
            raise PatchDoesNotApply(str(e).removeprefix("git apply: ")) from None
        return self.git("write-tree")


def apply_patch(path: StrPath, base_sha: str, head_sha: str, patch: str) -> str:
    """The tree of `head_sha` plus the patch made against `base_sha`.

    Straight onto head when it applies there (head is base, or the patch's
    context is untouched); otherwise a three-way merge with base as the
    merge base. Raises PatchDoesNotApply or MergeConflict.
    """
    with PrivateIndex(path) as idx:
        try:
            return idx.tree_with_patch(head_sha, patch)
        except PatchDoesNotApply:
            if head_sha == base_sha:
                raise
        patched = commit_tree(path, idx.tree_with_patch(base_sha, patch), base_sha, "patch")
    return merge_trees(path, head_sha, patched)


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


def update_branch(path: StrPath, branch: str, new: str, old: str) -> bool:
    """Compare-and-swap the branch from `old` to `new`; False if it had moved."""
    return git_call(path, "update-ref", f"refs/heads/{branch}", new, old).returncode == 0


def commit_with_trailer(path: StrPath, branch: str, since: str, trailer: str) -> str | None:
    """The newest commit in since..branch whose message carries `trailer`, or None."""
    out = git_run(
        path, "log", "--format=%H", "-F", f"--grep={trailer}", f"{since}..refs/heads/{branch}"
    )
    return out.splitlines()[0] if out else None


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
    git_run(path, "push", "--porcelain", upstream, f"{ref}:{ref}", timeout=300)


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


# Session clones. The agent owns its clone and may do anything in it; Corral
# reads it with an index of its own so the agent's index is never touched.


def worktree_git(
    workdir: StrPath, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> str:
    """Run git inside a session's clone; return stdout, or raise GitError."""
    full_env = dict(os.environ, GIT_TERMINAL_PROMPT="0", **(env or {}))
    full_env.pop("GIT_DIR", None)
    done = subprocess.run(
        ["git", *args], cwd=workdir, env=full_env, capture_output=True, timeout=timeout
    )
    if done.returncode != 0:
        raise GitError(f"git {args[0]}: {last_line(done.stderr.decode(errors='replace'))}")
    return done.stdout.decode(errors="replace")


def clone_for_session(path: StrPath, workdir: StrPath, base_sha: str) -> None:
    """A private clone of the canonical repository at `workdir`, detached at base_sha."""
    git_call(path, "clone", "--quiet", "--shared", "--no-checkout", str(path), str(workdir))
    if not Path(workdir, ".git").is_dir():
        raise GitError(f"cannot clone {path} into {workdir}")
    worktree_git(workdir, "checkout", "--quiet", "--detach", base_sha)
    with open(Path(workdir, ".git", "info", "exclude"), "a") as exclude:
        exclude.write("\n.agents/\n")


class SessionIndex:
    """What a session's clone has changed against base_sha, read through a
    private index: `refresh()`, then `numstat()` or `patch()`."""

    def __init__(self, workdir: StrPath, base_sha: str) -> None:
        self.workdir, self.base_sha = workdir, base_sha
        self.tmp = tempfile.TemporaryDirectory(prefix="corral-session-index-")
        self.env = {"GIT_INDEX_FILE": os.path.join(self.tmp.name, "index")}
        worktree_git(workdir, "read-tree", base_sha, env=self.env)

    def close(self) -> None:
        self.tmp.cleanup()

    def refresh(self) -> None:
        # .agents/ is in the clone's info/exclude; should the agent undo that,
        # it is still taken out of what Corral reads.
        worktree_git(self.workdir, "add", "-A", "--", ".", env=self.env)
        worktree_git(
            self.workdir,
            "rm",
            "-r",
            "-q",
            "--cached",
            "--ignore-unmatch",
            "--",
            ".agents",
            env=self.env,
        )

    def numstat(self) -> dict[str, int]:
        """{path: lines added + removed} of every changed path (binary files count 0)."""
        out = worktree_git(
            self.workdir,
            "diff",
            "--cached",
            "--numstat",
            "--no-renames",
            "-z",
            self.base_sha,
            env=self.env,
        )
        changes: dict[str, int] = {}
        for record in out.split("\0"):
            if record:
                added, removed, path = record.split("\t", 2)
                changes[path] = sum(int(n) for n in (added, removed) if n != "-")
        return changes

    def patch(self) -> str:
        return worktree_git(
            self.workdir,
            "diff",
            "--cached",
            "--binary",
            "--no-renames",
            self.base_sha,
            env=self.env,
        )
