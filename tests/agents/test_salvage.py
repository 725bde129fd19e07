"""Salvage: a session that ends without handing in leaves its work within the
bead's scope as one commit on its base at refs/corral/salvage/<bead>/<session>
in the canonical repository, never on the branch and never pushed; the bead's
page shows it; once the bead lands, the newest CORRAL_SALVAGE_KEEP stay.

The agents are small real programs under tests/programs/, run in the sandbox.
"""

import base64
import socket
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django.utils.html import escape

from agents.jobs import reconcile, salvage
from agents.models import Agent, Salvage, Session, WorkerBeat
from agents.moves import lifecycle
from beads.models import Bead
from tests.factories import git, make_patch, program_agent, run_bead, run_lead, submit
from workspace import gitops

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def quick_limits(settings):
    settings.KILL_GRACE_SECONDS = 1
    settings.WATCH_INTERVAL_SECONDS = 0.2


def salvage_refs(path):
    return git(path, "for-each-ref", "--format=%(refname)", "refs/corral/salvage").split()


def tree_files(path, sha):
    return git(path, "ls-tree", "-r", "--name-only", sha).split()


def made_salvage(repo, bead, agent, files, error="Stopped at the time limit of 60s."):
    """A session that timed out with `files` written in its clone, and its salvage."""
    head = gitops.head_sha(repo.canonical_path, repo.branch)
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


def test_a_session_stopped_at_its_time_limit_keeps_its_work_in_scope_off_the_branch(repo, settings):
    settings.WATCH_INTERVAL_SECONDS = 60  # the watchdog looks once, before the stray file
    session, bead = run_bead(repo, program_agent("halfway", "--stray"), time_limit_s=3)
    assert session.status == "timed_out", session.error
    kept = Salvage.objects.get(session=session)
    path = repo.canonical_path
    assert kept.ref == f"refs/corral/salvage/{bead.pk}/{session.pk}"
    assert (kept.stopped, kept.files, kept.left_out) == (
        "timed_out",
        ["src/part_one.py"],
        ["stray.txt"],
    )
    assert "time limit of 3s" in kept.why
    assert (kept.lines, kept.summary["added"]) == (1, 1)
    assert git(path, "rev-parse", kept.ref) == kept.sha
    assert git(path, "rev-parse", f"{kept.sha}^") == session.base_sha  # one commit on its base
    assert tree_files(path, kept.sha) == ["README.md", "src/app.py", "src/part_one.py"]
    assert git(path, "show", f"{kept.sha}:src/part_one.py") == "ONE = 1"
    assert "Wrote part one. Part two is left." in git(path, "log", "-1", "--format=%B", kept.sha)
    assert git(path, "rev-parse", repo.branch) == session.base_sha  # the branch never moved
    assert git(path, "branch", "--contains", kept.sha) == ""
    assert session.summary == "Wrote part one. Part two is left."  # the handoff, for the next one
    assert (bead.status, bead.attempts) == ("open", 1)


def test_a_salvage_is_never_pushed_with_the_branch(repo, agent, tmp_path):
    bead = Bead.objects.create(repository=repo, title="Half done", scope=["src/**"])
    kept = made_salvage(repo, bead, agent, {"src/half.py": "HALF = 1\n"})
    assert salvage_refs(repo.canonical_path) == [kept.ref]
    upstream = tmp_path / "upstream.git"
    git(tmp_path, "init", "-q", "--bare", str(upstream))
    gitops.push(repo.canonical_path, str(upstream), repo.branch)
    assert git(upstream, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/main"]
    assert not gitops.has_commit(upstream, kept.sha)


def test_git_over_http_does_not_show_salvages(repo, agent, client):
    bead = Bead.objects.create(repository=repo, title="Half done", scope=["src/**"])
    made_salvage(repo, bead, agent, {"src/half.py": "HALF = 1\n"})
    reader = Agent(name="reader", preset="shell", internal=False)
    reader.save()
    basic = base64.b64encode(f"agent:{reader.plain_token}".encode()).decode()
    url = f"/git/{repo.slug}.git/info/refs?service=git-upload-pack"
    response = client.get(url, HTTP_AUTHORIZATION=f"Basic {basic}")
    body = b"".join(response.streaming_content)
    assert response.status_code == 200 and b"refs/heads/main" in body
    assert b"refs/corral" not in body


def test_the_scope_watchdog_stop_keeps_only_what_was_written_in_scope(repo):
    session, bead = run_bead(repo, program_agent("trespasser"), scope=["src/**"])
    assert session.status == "out_of_scope"
    kept = Salvage.objects.get(session=session)
    assert (kept.files, kept.left_out) == (["src/inside.py"], ["outside.txt"])
    assert "outside.txt" not in tree_files(repo.canonical_path, kept.sha)


def test_a_crash_with_nothing_written_is_recorded_without_a_commit(repo):
    session, bead = run_bead(repo, program_agent("crasher"))
    assert session.status == "failed"
    row = Salvage.objects.get(session=session)
    assert (row.sha, row.ref, row.stopped) == ("", "", "failed")
    assert row.note == "Nothing changed within the bead's scope."
    assert salvage_refs(repo.canonical_path) == []


def test_a_lost_session_with_its_clone_here_is_salvaged_by_reconcile(repo, agent):
    bead = Bead.objects.create(repository=repo, title="Lost halfway", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    workdir = settings.SESSIONS_DIR / str(session.pk)
    workdir.parent.mkdir(parents=True, exist_ok=True)
    gitops.clone_for_session(repo.canonical_path, workdir, session.base_sha)
    (workdir / "src" / "found.py").write_text("FOUND = 1\n")
    expired = timezone.now() - timedelta(seconds=1)
    Session.objects.filter(pk=session.pk).update(
        status="running",
        worker=f"{socket.gethostname()}:1",
        workdir=str(workdir),
        lease_expires_at=expired,
    )
    assert reconcile.reconcile()["lost"] == 1
    kept = Salvage.objects.get(session=session)
    assert (kept.stopped, kept.files) == ("lost", ["src/found.py"])
    assert git(repo.canonical_path, "show", f"{kept.ref}:src/found.py") == "FOUND = 1"


def test_a_lost_session_whose_clone_is_elsewhere_says_so(repo, agent):
    bead = Bead.objects.create(repository=repo, title="Lost afar", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    expired = timezone.now() - timedelta(seconds=1)
    Session.objects.filter(pk=session.pk).update(
        status="running",
        worker="far-away-host:7",
        workdir="/nowhere/here",
        lease_expires_at=expired,
    )
    assert reconcile.reconcile()["lost"] == 1
    row = Salvage.objects.get(session=session)
    assert row.sha == "" and "on far-away-host, not here" in row.note


def test_once_the_bead_lands_only_the_newest_salvages_are_kept(repo, agent, settings, rq_redis):
    settings.SALVAGE_KEEP = 2  # pytest-django's fixture shadows django.conf.settings here
    bead = Bead.objects.create(repository=repo, title="Many tries", scope=["src/**"])
    rows = [made_salvage(repo, bead, agent, {f"src/try{n}.py": f"N = {n}\n"}) for n in range(4)]
    assert len(salvage_refs(repo.canonical_path)) == 4  # nothing pruned before it lands
    base, patch = make_patch(repo, {"src/done.py": "DONE = 1\n"})
    submit(bead, agent, patch, base)
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed"
    newest = [rows[3], rows[2]]
    assert sorted(salvage_refs(repo.canonical_path)) == sorted(r.ref for r in newest)
    assert list(Salvage.objects.filter(bead=bead)) == newest
    assert not gitops.has_commit(repo.canonical_path, rows[0].ref)


def test_the_bead_page_shows_each_salvage_with_its_diff_size_and_why(repo, agent, logged_in):
    bead = Bead.objects.create(repository=repo, title="Shown", scope=["src/**"])
    made_salvage(repo, bead, agent, {"src/shown.py": "SHOWN = 'yes'\n", "notes.txt": "no\n"})
    nothing = made_salvage(repo, bead, agent, {}, error="The agent exited with code 3.")
    page = logged_in.get(bead.get_absolute_url()).content.decode()
    section = page[page.index('id="salvages"') :]
    assert "+SHOWN = &#x27;yes&#x27;" in section  # the diff, read from git
    assert f"refs/corral/salvage/{bead.pk}/" in section
    assert "1 file" in section and "+1 −0" in section  # its size
    assert "Stopped at the time limit of 60s." in section  # why it stopped
    assert "Left out, outside the scope: notes.txt" in section
    assert "The agent exited with code 3." in section and escape(nothing.note) in section


def test_a_session_whose_worker_died_is_salvaged_by_reconcile(repo, agent, settings):
    """bench/chaos.py found it: a session lost with its worker kept nothing."""
    bead = Bead.objects.create(repository=repo, title="Worker died", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    workdir = settings.SESSIONS_DIR / str(session.pk)
    workdir.parent.mkdir(parents=True, exist_ok=True)
    gitops.clone_for_session(repo.canonical_path, workdir, session.base_sha)
    (workdir / "src" / "half.py").write_text("HALF = 1\n")
    worker = f"{socket.gethostname()}:1"
    WorkerBeat.beat(worker, "session", socket.gethostname(), 1)
    WorkerBeat.objects.filter(name=worker).update(beat_at=timezone.now() - timedelta(minutes=5))
    Session.objects.filter(pk=session.pk).update(
        status="running", worker=worker, workdir=str(workdir)
    )
    assert reconcile.reconcile()["orphaned"] == 1
    kept = Salvage.objects.get(session=session)
    assert (kept.stopped, kept.files) == ("lost", ["src/half.py"])
