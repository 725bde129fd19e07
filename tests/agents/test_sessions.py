"""Agent sessions: private clones, context packs, limits against drift, live logs.

The agents are small real programs under tests/programs/, run as subprocesses.
"""

import os
from pathlib import Path

import pytest

from agents.models import Agent, LogChunk, Session, Submission
from agents.moves import lifecycle
from beads.models import Bead
from knowledge.models import Learning
from tests.factories import git, program_agent, run_bead, run_in_thread, run_lead, wait_for
from tests.procs import group_members

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def quick_limits(settings):
    settings.KILL_GRACE_SECONDS = 1
    settings.WATCH_INTERVAL_SECONDS = 0.2


def log_text(session):
    return "".join(LogChunk.objects.filter(session=session).values_list("text", flat=True))


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def test_a_well_behaved_agent_lands_its_work(repo, rq_redis):
    agent = program_agent("editor", "src/feature.py=FEATURE = 1")
    session, bead = run_bead(repo, agent)
    assert session.status == "submitted", session.error
    assert session.changed_files == ["src/feature.py"]
    assert session.summary == "Wrote the files I was asked to.\n"
    assert ".agents" not in session.patch
    assert f"session {session.pk} bead {bead.id}" in log_text(session)
    assert not Path(session.workdir).exists()  # the patch is kept, the clone is not
    assert Learning.objects.get(source_session=session).title == "Small edits land fast"
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed"
    assert git(repo.canonical_path, "show", f"{bead.commit_sha}:src/feature.py") == "FEATURE = 1"


def test_the_demo_agent_carries_out_the_edits_in_the_description(repo, rq_redis):
    agent = Agent.objects.create(name="demo", preset="demo")
    description = (
        "Greet properly.\n\n```corral replace src/app.py\nprint('hello')\n=====\n"
        "print('hello, world')\n```\n```corral write src/extra.py\nX = 2\n```\n"
    )
    session, bead = run_bead(repo, agent, description=description)
    assert session.status == "submitted", log_text(session) + session.error
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed"
    path = repo.canonical_path
    assert git(path, "show", f"{bead.commit_sha}:src/app.py") == "print('hello, world')"
    assert git(path, "show", f"{bead.commit_sha}:src/extra.py") == "X = 2"


def test_an_agent_that_sleeps_past_its_limit_is_timed_out(repo):
    session, bead = run_bead(repo, program_agent("sleeper"), time_limit_s=1)
    assert session.status == "timed_out" and "time limit of 1s" in session.error
    assert (bead.status, bead.attempts) == ("open", 1)
    assert not group_members(session.pid)
    assert not Submission.objects.exists()


@pytest.mark.slow
def test_an_agent_ignoring_sigterm_and_its_child_are_both_killed(repo):
    session, _ = run_bead(repo, program_agent("stubborn"), time_limit_s=1)
    assert session.status == "timed_out"
    # The pid it wrote is the sandbox's own (a PID namespace): look for what is left by folder.
    assert (Path(session.workdir) / ".agents" / "pids").read_text().strip()
    wait_for(lambda: not working_in(session.workdir), timeout=5)
    assert not alive(session.pid)
    assert not group_members(session.pid)


def working_in(folder):
    """Live processes whose working folder is `folder`, found from /proc."""
    found = []
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            if os.readlink(cwd) == str(folder) and alive(int(cwd.parent.name)):
                found.append(int(cwd.parent.name))
        except OSError:
            continue
    return found


def test_an_agent_writing_outside_its_scope_is_stopped_and_nothing_submitted(repo):
    session, bead = run_bead(repo, program_agent("trespasser"), scope=["src/**"])
    assert session.status == "out_of_scope"
    assert "outside.txt" in session.error
    assert not Submission.objects.exists()
    assert (Path(session.workdir) / "src" / "inside.py").read_text() == "ok = True\n"  # kept
    assert (bead.status, bead.attempts) == ("open", 1)


def test_an_agent_that_exits_non_zero_fails_and_returns_the_bead(repo):
    session, bead = run_bead(repo, program_agent("crasher"))
    assert session.status == "failed" and session.exit_code == 3
    assert "exited with code 3" in session.error
    assert (bead.status, bead.attempts) == ("open", 1)
    assert "about to fail" in log_text(session)


def test_changing_more_files_than_the_cap_fails(repo):
    agent = program_agent("editor", "src/a=1", "src/b=2", "src/c=3", max_changed_files=2)
    session, bead = run_bead(repo, agent)
    assert session.status == "failed" and "over the cap of 2" in session.error
    assert not Submission.objects.exists()


def test_the_context_pack_says_why_the_last_attempt_failed_within_its_budget(repo):
    agent = program_agent("reader", context_budget_chars=1500)
    reason = "The check failed: test_totals expected 3, got 4."
    session, _ = run_bead(repo, agent, last_failure=reason, acceptance_criteria="Totals add up.")
    printed = log_text(session)
    assert "## Why the last attempt failed" in printed and reason in printed
    assert "Totals add up." in printed
    assert 0 < session.context_chars <= 1500


def test_a_long_description_is_cut_to_the_budget_and_the_cut_is_said(repo):
    agent = program_agent("reader", context_budget_chars=2000)
    session, _ = run_bead(repo, agent, description="word " * 2000)
    assert session.context_chars <= 2000
    assert "[Context cut:" in log_text(session)


def test_the_log_is_cut_at_its_cap_and_says_so(repo, settings):
    settings.SESSION_LOG_CAP_CHARS = 500
    session, _ = run_bead(repo, program_agent("chatty", "100", "0"))
    text = log_text(session)
    assert text.endswith("[log cut: over 500 characters]\n")
    assert len(text) < 600
    assert session.status == "submitted"


def test_a_person_cancelling_a_session_stops_its_agent(repo, user):
    bead = Bead.objects.create(repository=repo, title="x", scope=["src/**"])
    session = lifecycle.claim(program_agent("sleeper"), bead=bead)
    session.queue()
    runner = run_in_thread(session.pk)
    wait_for(lambda: Session.objects.get(pk=session.pk).pid)
    session.refresh_from_db()
    assert lifecycle.cancel(session, user)
    runner.join(timeout=20)
    assert not runner.is_alive()
    session.refresh_from_db()
    bead.refresh_from_db()
    assert session.status == "cancelled" and "Cancelled by alice" in session.error
    assert (bead.status, bead.attempts) == ("open", 1)
    assert not group_members(session.pid)


def test_a_handoff_linked_outside_the_clone_reads_as_nothing(repo, tmp_path):
    """Corral reads the handoff and learnings outside the sandbox: a symlink to
    a host file or folder must not carry that file into the submission."""
    secret = tmp_path / "host-secret.txt"
    secret.write_text("HOST-ONLY-SECRET\n")
    folder = tmp_path / "host-learnings"
    folder.mkdir()
    (folder / "keep.md").write_text("# HOST-ONLY-LEARNING\nfrom the host\n")
    session, bead = run_bead(repo, program_agent("linker", "links", str(secret), str(folder)))
    assert session.status == "submitted", session.error + log_text(session)
    assert "HOST-ONLY" not in session.summary
    assert not Learning.objects.filter(title__contains="HOST-ONLY").exists()
    assert bead.status == "review"


def test_a_fifo_handoff_does_not_hang_the_runner(repo):
    session, _ = run_bead(repo, program_agent("linker", "fifo"))
    assert session.status == "submitted", session.error + log_text(session)
    assert session.summary == ""
