"""The scenario of issue 24 ("never lose work"): an agent writes part of the
work and runs past its time limit; the next session on the bead starts from
what it left, adds the rest and hands in; the bead lands with both parts in
its one commit. A real session in the sandbox, a shell-style agent program
(tests/programs/halfway.py), the real lead.
"""

import pytest

from agents.jobs.runner import run_session
from agents.models import LogChunk, Salvage
from agents.moves import lifecycle
from beads.models import Bead
from tests.factories import git, program_agent, run_lead

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def quick_limits(settings):
    settings.KILL_GRACE_SECONDS = 1
    settings.WATCH_INTERVAL_SECONDS = 0.2


def run(agent, bead):
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    run_session(session.pk)
    session.refresh_from_db()
    return session


def test_work_cut_off_by_the_time_limit_lands_with_the_next_sessions_in_one_commit(repo, rq_redis):
    agent = program_agent("halfway")
    bead = Bead.objects.create(
        repository=repo, title="Both parts", scope=["src/**"], time_limit_s=3
    )
    first = run(agent, bead)
    assert first.status == "timed_out", first.error
    Bead.objects.filter(pk=bead.pk).update(time_limit_s=60)  # the rest takes a moment
    second = run(agent, bead)
    assert second.status == "submitted", second.error
    said = "".join(LogChunk.objects.filter(session=second).values_list("text", flat=True))
    assert "part one holds 'ONE = 1'" in said  # it found the first session's work, not its own
    run_lead(repo)
    bead.refresh_from_db()
    assert (bead.status, bead.attempts) == ("closed", 1)
    path = repo.canonical_path
    assert git(path, "rev-list", "--count", f"{first.base_sha}..{repo.branch}") == "1"
    landed = git(path, "show", "--name-only", "--format=", bead.commit_sha).split()
    assert landed == ["src/part_one.py", "src/part_two.py"]
    assert git(path, "show", f"{bead.commit_sha}:src/part_one.py") == "ONE = 1"
    assert git(path, "show", f"{bead.commit_sha}:src/part_two.py") == "TWO = 2"
    kept = Salvage.objects.get(session=first)  # kept (newest CORRAL_SALVAGE_KEEP), off the branch
    assert git(path, "branch", "--contains", kept.sha) == ""
