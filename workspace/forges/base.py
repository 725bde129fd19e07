"""What every forge adapter speaks: the Forge protocol and the values it returns."""

from dataclasses import dataclass, field
from typing import Protocol

# A check's state, the same words for every forge.
PENDING, SUCCESS, FAILURE = "pending", "success", "failure"
# A proposal's state.
OPEN, MERGED, CLOSED = "open", "merged", "closed"


@dataclass
class Proposal:
    """A pull request (GitHub, Gitea) or merge request (GitLab)."""

    number: int
    url: str
    state: str  # open | merged | closed (closed without merging)
    head_sha: str
    merge_sha: str = ""  # what the forge says it landed (the last rebased commit)


@dataclass
class Check:
    name: str
    state: str  # pending | success | failure
    url: str = ""
    summary: str = ""


@dataclass
class Remark:
    """A reviewer's review or comment."""

    author: str
    body: str
    kind: str = "comment"  # comment | review (with its verdict, e.g. CHANGES_REQUESTED)


@dataclass
class Merge:
    merged: bool
    queued: bool = False  # put in the forge's merge train instead
    message: str = ""  # why not (the forge's words)
    extra: dict[str, str] = field(default_factory=dict)


class Forge(Protocol):
    """What Corral asks of a forge."""

    name: str

    def open(self, branch: str, base: str, title: str, body: str) -> Proposal:
        """Open a request from `branch` to `base`; the one already open for
        `branch` when there is one (so opening twice is harmless)."""
        ...

    def get(self, number: int) -> Proposal: ...

    def checks(self, sha: str) -> list[Check]:
        """Every check and commit status reported on `sha`."""
        ...

    def remarks(self, number: int) -> list[Remark]:
        """Reviews with a body and comments, oldest first (not the forge's own notes)."""
        ...

    def merge(self, number: int, sha: str) -> Merge:
        """Merge by rebase (one commit per bead), only while the head is `sha`;
        or enqueue it where the forge merges through a queue or train."""
        ...

    def close(self, number: int, comment: str) -> None:
        """Close without merging, saying why."""
        ...


def summary(checks: list[Check]) -> str:
    """One state for them all: failure if any failed, pending if any is, else success."""
    states = {check.state for check in checks}
    if FAILURE in states:
        return FAILURE
    if PENDING in states:
        return PENDING
    return SUCCESS
