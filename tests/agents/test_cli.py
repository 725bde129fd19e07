"""The `corral` command, run for real against a live server, as an agent would."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agents.models import Agent, Session, Submission
from beads.models import Bead, Dependency
from knowledge.models import Injection, Learning
from tests.factories import git, land, run_lead

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def token(db):
    agent = Agent(name="outside-agent", preset="shell", internal=False)
    agent.save()
    return agent.plain_token


@pytest.fixture
def corral(live_server, token, tmp_path):
    """Run `corral ARGS…` in a fresh process as the agent; returns the CompletedProcess."""

    def run(*args, cwd=tmp_path, stdin=None, **env):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        environ.update(PYTHONPATH=str(ROOT), CORRAL_URL=live_server.url, CORRAL_TOKEN=token)
        for name, value in env.items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        return subprocess.run(
            [sys.executable, "-m", "corral_client.cli", *args],
            cwd=cwd,
            env=environ,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def ok(done):
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def refused(done, says):
    """Failed with exactly one `corral: …` line on stderr that says why."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("corral: ") and "Traceback" not in done.stderr
    assert says in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
def test_an_agent_claims_works_and_submits_through_the_cli(repo, corral, tmp_path, rq_redis):
    bead = Bead.objects.create(
        repository=repo, title="Grow the app", scope=["src/**"], acceptance_criteria="it grows"
    )
    assert bead.id in ok(corral("ready"))
    assert f"{bead.id}  P2  {repo.slug}  Grow the app" in ok(corral("ready", "--repo", repo.slug))

    work = tmp_path / "work"
    out = ok(corral("claim", "--dir", str(work)))
    session = out.splitlines()[-1].removeprefix("export CORRAL_SESSION=")
    assert Session.objects.get(pk=session).bead == bead
    assert str(work) in out
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    assert git(work, "rev-parse", "HEAD") == base
    agents = work / ".agents"
    assert "it grows" in (agents / "context.md").read_text()
    assert json.loads((agents / "bead.json").read_text())["id"] == bead.id
    saved = json.loads((agents / "session.json").read_text())
    assert saved["session"] == session and saved["base_sha"] == base and saved["bead"] == bead.id
    assert git(work, "status", "--porcelain") == ""  # .agents/ is excluded

    (work / "src" / "app.py").write_text("print('hello, world')\n")
    (work / "src" / "new.py").write_text("x = 1\n")
    (agents / "learnings").mkdir()
    (agents / "learnings" / "tip.md").write_text("# Apps grow in src\n\nPut new modules there.\n")
    assert "lease until" in ok(corral("heartbeat", CORRAL_SESSION=session))
    assert "logged" in ok(corral("log", "-", stdin="working on it\n", CORRAL_SESSION=session))

    out = ok(corral("submit", "--summary", "did it", "--dir", str(work)))  # via session.json
    submission = Submission.objects.get(session_id=session)
    assert out.splitlines() == [
        f"submission {submission.pk}: queued",
        "  src/app.py",
        "  src/new.py",
    ]
    assert submission.session.changed_files == ["src/app.py", "src/new.py"]
    assert Learning.objects.get(source_session_id=session).title == "Apps grow in src"
    # The agent's own index was not touched: its changes are still unstaged.
    assert git(work, "diff", "--cached", "--name-only") == ""
    assert git(work, "diff", "--name-only") == "src/app.py"
    assert git(work, "ls-files", "--others", "--exclude-standard") == "src/new.py"

    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed"
    message = git(repo.canonical_path, "log", "-1", "--format=%B", bead.commit_sha)
    assert "did it" in message
    assert git(repo.canonical_path, "show", f"{bead.commit_sha}:src/new.py") == "x = 1"
    files = git(repo.canonical_path, "ls-tree", "-r", "--name-only", bead.commit_sha)
    assert ".agents" not in files


def test_without_a_token_it_says_so(corral):
    refused(corral("ready", CORRAL_TOKEN=None), "CORRAL_TOKEN is not set")


def test_a_wrong_token_shows_the_apis_401(corral):
    line = refused(corral("ready", CORRAL_TOKEN="crl_wrong"), "401")
    assert "Unauthorized" in line


def test_nothing_ready_is_the_apis_409(repo, corral, tmp_path):
    refused(corral("claim", "--dir", str(tmp_path / "w")), "nothing is ready")
    assert not (tmp_path / "w").exists()


def test_a_closed_port_cannot_be_reached(corral):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    refused(corral("ready", CORRAL_URL=url), f"cannot reach {url}: connection refused")


def test_submit_with_no_changes_is_refused(repo, corral, tmp_path):
    Bead.objects.create(repository=repo, title="x")
    ok(corral("claim", "--dir", str(tmp_path / "w")))
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    done = corral("submit", cwd=tmp_path / "w" / "src")  # from a subfolder, no CORRAL_SESSION
    refused(done, f"nothing to submit: the folder has no changes against {base}")
    assert not Submission.objects.exists()


def test_show_of_an_unknown_bead_is_404(corral):
    refused(corral("show", "nope-1234"), "404")


def test_a_usage_error_exits_2(corral):
    done = corral("frobnicate")
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_json_output_parses(repo, corral):
    bead = Bead.objects.create(repository=repo, title="x", acceptance_criteria="y")
    assert [b["id"] for b in json.loads(ok(corral("--json", "ready")))] == [bead.id]
    shown = json.loads(ok(corral("show", bead.id, "--json")))
    assert shown["acceptance_criteria"] == "y" and shown["dependencies"] == []
    text = ok(corral("show", bead.id))
    assert "Acceptance criteria:" in text and "P2" in text


def test_new_files_a_bead_discovered_from_another(repo, corral, tmp_path):
    parent = Bead.objects.create(repository=repo, title="parent", scope=["src/**"])
    ok(corral("claim", "--dir", str(tmp_path / "work")))  # it files from the bead it works on
    out = ok(
        corral(
            "new",
            "Found a bug",
            "--discovered-from",
            parent.id,
            "--scope",
            "src/**",
            "--type",
            "bug",
        )
    )
    new_id, says = out.strip().split(" ", 1)
    assert says == "(proposed: ready once a person accepts it)"
    created = Bead.objects.get(pk=new_id)
    assert created.status == "proposed"
    assert created.title == "Found a bug" and created.repository == repo
    assert created.scope == ["src/**"] and created.issue_type == "bug"
    assert Dependency.objects.get(issue=created).depends_on == parent
    assert Dependency.objects.get(issue=created).type == "discovered-from"


def test_release_gives_the_bead_back(repo, corral, tmp_path):
    bead = Bead.objects.create(repository=repo, title="x")
    work = tmp_path / "w"
    ok(corral("claim", "--dir", str(work)))
    assert "cancelled" in ok(corral("release", "--reason", "stuck", cwd=work))
    bead.refresh_from_db()
    assert bead.status == "open" and "stuck" in bead.last_failure
    refused(corral("release", "--reason", "again", cwd=work), "409")


def test_learn_and_inject(repo, corral, tmp_path):
    Bead.objects.create(repository=repo, title="x")
    ok(corral("claim", "--dir", str(tmp_path / "w")))  # an agent learns where it works
    out = ok(corral("learn", "Use pathspec", "--body", "It matches like git.", "--tags", "a,b"))
    learning = Learning.objects.get()
    assert out.startswith(f"learning {learning.pk} (candidate)") and learning.tags == ["a", "b"]
    assert learning.repository == repo
    Learning.objects.filter(pk=learning.pk).update(status="approved")
    text = ok(corral("inject", "--q", "pathspec"))
    assert "## Use pathspec" in text and "It matches like git." in text
    assert json.loads(ok(corral("inject", "--q", "pathspec", "--json")))["found"] == 1


def test_binary_files_and_a_handoff_file_are_submitted(repo, corral, tmp_path, rq_redis):
    bead = Bead.objects.create(repository=repo, title="Add a logo", scope=["**"])
    work = tmp_path / "w"
    ok(corral("claim", "--dir", str(work)))
    logo = bytes(range(256)) * 4
    (work / "logo.bin").write_bytes(logo)
    (work / ".agents" / "handoff.md").write_text("Added the logo.\n")
    out = ok(corral("submit", cwd=work))
    assert out.splitlines()[1:] == ["  logo.bin"]
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed"
    assert "Added the logo." in git(
        repo.canonical_path, "log", "-1", "--format=%B", bead.commit_sha
    )
    landed = subprocess.run(
        ["git", "cat-file", "blob", f"{bead.commit_sha}:logo.bin"],
        cwd=repo.canonical_path,
        capture_output=True,
        check=True,
    ).stdout
    assert landed == logo


def test_claim_into_a_folder_that_is_not_empty_claims_nothing(repo, corral, tmp_path):
    Bead.objects.create(repository=repo, title="x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("mine")
    refused(corral("claim", "--dir", str(tmp_path / "busy")), "is not empty")
    assert not Session.objects.exists()


def test_a_failed_clone_gives_the_claim_back(repo, corral, tmp_path):
    bead = Bead.objects.create(repository=repo, title="x")
    (tmp_path / "a-file").write_text("not a folder")
    line = refused(corral("claim", "--dir", str(tmp_path / "a-file" / "w")), "git clone failed")
    assert line.endswith("(the claim was released)")
    bead.refresh_from_db()
    assert bead.status == "open" and Session.objects.get().status == "cancelled"


def test_learn_marks_a_learning_it_was_given(repo, corral, rq_redis):
    agent = Agent.objects.get(name="outside-agent")
    learning = Learning.objects.create(workspace=repo.workspace, title="T", body="B")
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    Injection.objects.create(learning=learning, session=sub.session, rank=1, chars=1)
    out = ok(corral("learn", "--helpful", str(learning.pk), "--reason", "saved a run"))
    assert out.startswith(f"learning {learning.pk}: 1 helpful, 0 harmful, utility 0.55")
    refused(corral("learn", "--harmful", str(learning.pk)), "marked it already")
    refused(corral("learn", "--helpful", "1", "--harmful", "2"), "not both")
    refused(corral("learn"), "give a title and --body")
