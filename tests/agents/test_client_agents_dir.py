"""A repository's own `.agents/` never leads the client outside the folder: the
context pack is written, and the handoff and learnings read, only as plain files
inside it. A link or anything but a file there is refused in one line."""

import os

import pytest

from agents.jobs.runner import run_session
from agents.models import Session, Submission
from agents.moves import lifecycle
from beads.models import Bead
from knowledge.models import Learning
from tests.agents import test_cli
from tests.agents.test_cli import ok, refused
from tests.agents.test_mcp import converse, server
from tests.factories import git, program_agent
from workspace.models import Repository

pytestmark = pytest.mark.django_db(transaction=True)
HOST_TEXT = "a file of the agent's machine\n"
SECRET = "HOST-ONLY-SECRET-7f3a"
corral, token = test_cli.corral, test_cli.token  # the fixtures, shared


@pytest.fixture
def host(tmp_path):
    """Files of the agent's machine a repository's links may name."""
    folder = tmp_path / "host"
    folder.mkdir()
    (folder / "bashrc").write_text(HOST_TEXT)
    (folder / "secret.txt").write_text(SECRET + "\n")
    (folder / "learnings").mkdir()
    (folder / "learnings" / "leak.md").write_text(f"# {SECRET}\n\nfrom the host\n")
    return folder


def carrying(make_source, workspace, build):
    """A registered repository whose branch then gets a commit made by
    `build(source)`: a .agents/ landed before Corral refused one."""
    source = make_source("carrier")
    repo = Repository.register(str(source), workspace)
    build(source)
    git(source, "add", "-A")
    git(source, "commit", "-qm", "the repository's own .agents/")
    git(repo.canonical_path, "fetch", "-q", str(source), f"+{repo.branch}:{repo.branch}")
    return repo


def linked_context(host):
    def build(source):
        (source / ".agents").mkdir()
        (source / ".agents" / "context.md").symlink_to(host / "bashrc")

    return build


def linked_folder(host):
    def build(source):
        (source / ".agents").symlink_to(host)

    return build


def released(bead):
    bead.refresh_from_db()
    return bead.status == "open" and Session.objects.get().status == "cancelled"


@pytest.mark.parametrize("layout", ["context.md linked", ".agents linked"])
def test_claim_never_writes_the_context_pack_through_a_link(
    make_source,
    workspace,
    host,
    corral,
    tmp_path,
    layout,
):
    build = linked_context(host) if layout == "context.md linked" else linked_folder(host)
    repo = carrying(make_source, workspace, build)
    bead = Bead.objects.create(repository=repo, title="x", scope=["src/**"])
    line = refused(corral("claim", "--dir", str(tmp_path / "work")), "symlink")
    assert ".agents" in line and line.endswith("(the claim was released)")
    assert (host / "bashrc").read_text() == HOST_TEXT
    assert sorted(p.name for p in host.iterdir()) == ["bashrc", "learnings", "secret.txt"]
    assert released(bead)


def test_the_mcp_claim_tool_never_writes_through_a_link(
    live_server,
    make_source,
    workspace,
    host,
    token,
    tmp_path,
):
    repo = carrying(make_source, workspace, linked_context(host))
    bead = Bead.objects.create(repository=repo, title="x", scope=["src/**"])
    seen = {}

    async def steps(client):
        seen["claim"] = await client.call_tool("claim", {"dir": str(tmp_path / "work")})

    with (tmp_path / "stderr.txt").open("w") as errlog:
        converse(server(live_server, token, tmp_path), steps, errlog)
    assert seen["claim"].is_error
    assert "symlink" in seen["claim"].content[0].text
    assert (host / "bashrc").read_text() == HOST_TEXT
    assert released(bead)


def claimed_folder(repo, corral, tmp_path):
    Bead.objects.create(repository=repo, title="x", scope=["src/**"])
    work = tmp_path / "work"
    ok(corral("claim", "--dir", str(work)))
    (work / "src" / "app.py").write_text("print('changed')\n")
    return work


@pytest.mark.parametrize("what", ["handoff", "learnings folder", "a learning", "session.json"])
def test_submit_never_reads_the_agents_folder_through_a_link(
    repo,
    host,
    corral,
    tmp_path,
    what,
):
    work = claimed_folder(repo, corral, tmp_path)
    agents = work / ".agents"
    if what == "handoff":
        (agents / "handoff.md").symlink_to(host / "secret.txt")
    elif what == "learnings folder":
        (agents / "learnings").symlink_to(host / "learnings")
    elif what == "a learning":
        (agents / "learnings").mkdir()
        (agents / "learnings" / "leak.md").symlink_to(host / "learnings" / "leak.md")
    else:
        saved = (agents / "session.json").read_text()
        (agents / "session.json").unlink()
        (host / "session.json").write_text(saved)
        (agents / "session.json").symlink_to(host / "session.json")
    line = refused(corral("submit", "--dir", str(work)), "symlink")
    assert ".agents" in line and SECRET not in line
    assert not Submission.objects.exists()
    assert not Learning.objects.filter(title__contains=SECRET).exists()


def test_a_fifo_handoff_is_refused_without_hanging(repo, corral, tmp_path):
    work = claimed_folder(repo, corral, tmp_path)
    os.mkfifo(work / ".agents" / "handoff.md")
    refused(corral("submit", "--dir", str(work)), "not a regular file")  # in 60 s, or it fails
    assert not Submission.objects.exists()


def test_plain_files_in_the_agents_folder_still_submit(repo, corral, tmp_path):
    work = claimed_folder(repo, corral, tmp_path)
    (work / ".agents" / "handoff.md").write_text("Changed the app.\n")
    (work / ".agents" / "learnings").mkdir()
    (work / ".agents" / "learnings" / "tip.md").write_text("# Apps change\n\nThey do.\n")
    assert "queued" in ok(corral("submit", "--dir", str(work)))
    session = Submission.objects.get().session
    assert session.summary == "Changed the app.\n"
    assert Learning.objects.filter(source_session=session, title="Apps change").exists()


def test_the_session_runner_writes_its_pack_as_new_files_in_the_clone(
    make_source, workspace, host, settings, rq_redis
):
    settings.WATCH_INTERVAL_SECONDS = 0.1
    repo = carrying(make_source, workspace, linked_context(host))
    agent = program_agent("editor", "src/feature.py=FEATURE = 1")
    bead = Bead.objects.create(repository=repo, title="Feature", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    run_session(session.pk)
    session.refresh_from_db()
    assert session.status == "submitted", session.error
    assert (host / "bashrc").read_text() == HOST_TEXT
    assert "Feature" in session.context and ".agents" not in session.patch
