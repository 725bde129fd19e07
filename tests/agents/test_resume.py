"""Resume: the next session on a bead starts from the newest salvage, carried
onto the current head three-way, or offered as .agents/salvage.patch when it
no longer applies; its context says what the previous session did and why it
stopped; a CLI that can resume its own conversation is given it again.

The agents are small real programs under tests/programs/, run in the sandbox.
"""

import json

import pytest
from django.conf import settings

from agents.jobs import salvage
from agents.jobs.runner import Run, run_session
from agents.models import LogChunk, Salvage, Session, Submission
from agents.moves import lifecycle
from beads.models import Bead
from tests.factories import git, land, program_agent, run_in_thread, run_lead, wait_for
from workspace import gitops

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def quick_limits(settings):
    settings.KILL_GRACE_SECONDS = 1
    settings.WATCH_INTERVAL_SECONDS = 0.2


def run(agent, bead):
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    run_session(session.pk)
    session.refresh_from_db()
    bead.refresh_from_db()
    return session


def prepared(agent, bead):
    """The next session's clone and context pack, made as its runner makes them,
    without running its agent."""
    session = lifecycle.claim(agent, bead=bead)
    runner = Run(Session.objects.select_related("agent", "bead__repository").get(pk=session.pk))
    runner.prepare()
    runner.index.close()
    return runner


def log_text(session):
    return "".join(LogChunk.objects.filter(session=session).values_list("text", flat=True))


def made_salvage(repo, bead, agent, files):
    """A session that timed out with `files` written in its clone, and its salvage."""
    head = gitops.head_sha(repo.canonical_path, repo.branch)
    error = "Stopped at the time limit of 60s."
    session = Session.objects.create(
        agent=agent, bead=bead, status="timed_out", base_sha=head, error=error
    )
    workdir = settings.SESSIONS_DIR / str(session.pk)
    workdir.parent.mkdir(parents=True, exist_ok=True)
    gitops.clone_for_session(repo.canonical_path, workdir, head)
    for name, text in files.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(text)
    return salvage.keep(session, "timed_out", error, workdir, repo.canonical_path)


def test_the_next_session_starts_from_the_salvage_on_the_moved_head_and_knows_why(
    repo, agent, rq_redis
):
    halfway = program_agent("halfway")
    bead = Bead.objects.create(repository=repo, title="Two parts", scope=["src/**"], time_limit_s=3)
    first = run(halfway, bead)
    assert first.status == "timed_out", first.error
    land(repo, agent, {"README.md": "# app, moved on\n"}, title="Meanwhile")
    run_lead(repo)
    runner = prepared(halfway, bead)
    clone = runner.workdir
    assert runner.session.base_sha == gitops.head_sha(repo.canonical_path, repo.branch)
    assert (clone / "src" / "part_one.py").read_text() == "ONE = 1\n"  # the salvaged work
    assert (clone / "README.md").read_text() == "# app, moved on\n"  # on the current head
    assert git(clone, "status", "--porcelain") == "?? src/part_one.py"  # as if it wrote it
    assert not (clone / ".agents" / "salvage.patch").exists()
    context = (clone / ".agents" / "context.md").read_text()
    assert "## Where the previous session stopped" in context
    assert "stopped (timed out): Stopped at the time limit of 3s." in context
    assert "already in your clone" in context and "`src/part_one.py`" in context
    assert "Wrote part one. Part two is left." in context  # its handoff
    assert runner.session.context == context  # what the session page shows


def test_a_session_cancelled_mid_work_is_salvaged_before_the_next_one_starts(repo, user):
    halfway = program_agent("halfway")
    bead = Bead.objects.create(repository=repo, title="Cancelled", scope=["src/**"])
    first = lifecycle.claim(halfway, bead=bead)
    first.queue()
    runner = run_in_thread(first.pk)
    try:
        wait_for(LogChunk.objects.filter(session=first, text__contains="part one").exists)
        assert lifecycle.cancel(first, user)  # the bead is back on the hook at once
        nxt = prepared(halfway, bead)  # waits for the cancelled runner to keep its work
    finally:
        runner.join(30)
    assert (nxt.workdir / "src" / "part_one.py").read_text() == "ONE = 1\n"
    assert Salvage.objects.get(session=first).stopped == "cancelled"
    assert f"stopped (cancelled): Cancelled by {user}." in nxt.session.context


def test_a_salvage_that_no_longer_applies_is_offered_as_a_patch(repo, agent, rq_redis):
    bead = Bead.objects.create(repository=repo, title="Clashing", scope=["src/**"])
    kept = made_salvage(repo, bead, agent, {"src/part_one.py": "ONE = 1\n"})
    land(repo, agent, {"src/part_one.py": "ONE = 'theirs'\n"}, title="Got there first")
    run_lead(repo)
    runner = prepared(agent, bead)
    clone = runner.workdir
    assert (clone / "src" / "part_one.py").read_text() == "ONE = 'theirs'\n"  # the head's
    offered = (clone / ".agents" / "salvage.patch").read_text()
    assert "+ONE = 1" in offered and "src/part_one.py" in offered
    assert git(clone, "status", "--porcelain") == ""
    context = (clone / ".agents" / "context.md").read_text()
    assert "no longer applies to the current head (conflict in src/part_one.py)" in context
    assert f"`.agents/salvage.patch`, made against {kept.base_sha[:12]}" in context


def test_a_salvage_outside_the_scope_as_it_is_now_is_offered_not_applied(repo, agent):
    bead = Bead.objects.create(repository=repo, title="Narrowed", scope=["src/**"])
    made_salvage(repo, bead, agent, {"src/wide.py": "WIDE = 1\n"})
    Bead.objects.filter(pk=bead.pk).update(scope=["lib/**"])
    runner = prepared(agent, bead)
    assert not (runner.workdir / "src" / "wide.py").exists()
    assert (runner.workdir / ".agents" / "salvage.patch").is_file()
    assert "scope no longer covers src/wide.py" in runner.session.context


def test_work_handed_in_since_a_salvage_is_not_undone_by_it(repo, agent):
    bead = Bead.objects.create(repository=repo, title="Handed in since", scope=["src/**"])
    made_salvage(repo, bead, agent, {"src/old.py": "OLD = 1\n"})
    handed = Session.objects.create(agent=agent, bead=bead, status="failed", patch="x")
    Submission.objects.create(session=handed, repository=repo, bead=bead, status="failed")
    runner = prepared(agent, bead)
    assert not (runner.workdir / "src" / "old.py").exists()
    assert "Where the previous session stopped" not in runner.session.context


def test_the_same_agent_taking_the_bead_again_resumes_its_cli_conversation(
    repo, monkeypatch, tmp_path
):
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    resumer = program_agent("resumer", "{prompt}", preset="claude-code")
    other = program_agent("resumer", "{prompt}", preset="claude-code")
    bead = Bead.objects.create(repository=repo, title="Talk on", scope=["src/**"], time_limit_s=3)
    first = run(resumer, bead)
    assert first.status == "timed_out", first.error + log_text(first)
    printed = json.loads(log_text(first).splitlines()[1])
    assert first.cli_session == printed["session_id"]
    # Another agent, even of the same CLI, is not given someone else's conversation.
    assert prepared(other, bead).resume.conversation == ""
    lifecycle.release(Session.objects.get(bead=bead, agent=other), "not mine")
    Bead.objects.filter(pk=bead.pk).update(time_limit_s=60)
    second = run(resumer, bead)
    assert second.status == "submitted", second.error + log_text(second)
    said = log_text(second)
    assert f'"--resume", "{first.cli_session}"' in said
    assert f"resuming {first.cli_session}: transcript found" in said
    assert "Your CLI resumes its own conversation" in second.context
    assert Salvage.objects.get(session=first).files == ["src/part_one.py"]
