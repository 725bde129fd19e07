"""Pushing the branch to the repository's upstream after a landing outside a
train (a revert, a change set), and the lead supervisor's retries: the push
itself, with its lease and its rebuilds, is agents/jobs/upstream.py's."""

from agents.jobs import upstream


def push_branch(repository_id: int) -> None:
    """Push what the upstream does not hold yet (following it first); a failure
    is recorded on the repository, and the supervisor asks again later."""
    upstream.push_after_landing(repository_id)
