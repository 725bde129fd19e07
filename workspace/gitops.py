"""Every git operation Corral performs. Commands are argv lists, never shell strings."""

from pathlib import Path

import git
from django.conf import settings


class GitError(Exception):
    """A git operation failed; the message is fit to show a person."""


def is_url(source):
    return "://" in source or (":" in source and "@" in source.split(":", 1)[0])


def source_name(source):
    """A repository's name from its path or URL: the last part, without `.git`."""
    tail = source.rstrip("/").replace(":", "/").rsplit("/", 1)[-1]
    return tail.removesuffix(".git") or "repo"


def check_source(source):
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


def clone_bare(source, slug):
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


def default_branch(path):
    """The branch a bare clone's HEAD points at, or None when it has no commits."""
    repo = git.Repo(path)
    try:
        return repo.head.reference.name
    except TypeError:  # a detached HEAD
        return None


def has_branch(path, branch):
    return f"refs/heads/{branch}" in {ref.path for ref in git.Repo(path).references}


def head_sha(path, branch):
    try:
        return git.Repo(path).git.rev_parse("--verify", f"refs/heads/{branch}^{{commit}}")
    except git.GitCommandError:
        raise GitError(f"branch {branch!r} has no commits") from None


def recent_commits(path, branch, limit=20):
    """(sha, subject, author, iso date) of the newest commits on `branch`."""
    try:
        out = git.Repo(path).git.log(
            f"refs/heads/{branch}", f"-n{limit}", "--format=%H%x1f%s%x1f%an%x1f%cI"
        )
    except git.GitCommandError:
        return []
    return [tuple(line.split("\x1f")) for line in out.splitlines() if line]


def last_line(text):
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].removeprefix("stderr: ").strip("'") if lines else "git failed"
