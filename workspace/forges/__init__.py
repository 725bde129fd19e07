"""Forge adapters: pull (merge) requests, their checks and their merge, over
GitHub's, GitLab's and Gitea's (and Forgejo's) REST APIs.

Pure HTTP clients, low in the layers: they know nothing of beads or
submissions. agents/jobs/forge.py drives them for a repository landing
through pull requests (`Repository.land_via == "pr"`). Each adapter speaks
the Forge protocol of base.py; `adapter()` picks and builds one.
"""

from collections.abc import Callable

from workspace.forges import gitea, github, gitlab
from workspace.forges.base import Check, Forge, Merge, Proposal, Remark
from workspace.forges.http import ForgeError, RateLimited

__all__ = [
    "KINDS",
    "Check",
    "Forge",
    "ForgeError",
    "Merge",
    "Proposal",
    "RateLimited",
    "Remark",
    "adapter",
]

KINDS: dict[str, Callable[[str, str, str], Forge]] = {
    "github": github.GitHub,
    "gitlab": gitlab.GitLab,
    "gitea": gitea.Gitea,
}


def adapter(kind: str, url: str, repo: str, token: str) -> Forge:
    """The adapter for a forge of `kind` (github | gitlab | gitea) whose API is at `url`."""
    if kind not in KINDS:
        raise ForgeError(f"no forge adapter for {kind!r}")
    return KINDS[kind](url, repo, token)
