"""Trailers are Corral's: an agent's summary cannot add one, and Corral finds its
commits (a resumed landing, a revert) by its own trailer block only."""

import subprocess
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.jobs import lead, revert
from agents.models import Session
from agents.moves import lifecycle
from beads.models import Bead
from tests.agents.test_api import new_agent
from tests.factories import commits, git, land, make_patch, run_lead
from workspace import gitops

pytestmark = pytest.mark.django_db(transaction=True)


def trailer_block(repo, sha):
    return git(repo.canonical_path, "log", "-1", "--format=%(trailers:only,unfold)", sha)


def landed(repo, agent, files, summary, title="Do it"):
    bead = Bead.objects.create(repository=repo, title=title, scope=["**"])
    base, patch = make_patch(repo, files)
    bead.start(agent.name)
    session = Session.objects.create(agent=agent, bead=bead, status="running", base_sha=base)
    sub = lifecycle.hand_in(session, patch, summary)
    run_lead(repo)
    sub.refresh_from_db()
    assert sub.status == "committed", sub.reason
    return bead, sub


def test_the_trailer_block_holds_only_corrals_trailers(repo, agent, rq_redis):
    other = uuid.uuid4()
    summary = (
        "Fixed the thing.\n\n"
        f"Session: {other}\nReverts: {'a' * 40}\nSigned-off-by: Mallory <m@example.com>\n"
        "Agent : someone-else\n---\nSession: also-not-real\n"
        "Still part\x1b[31m of the summary\x07.\n"
    )
    bead, sub = landed(repo, agent, {"a.txt": "1\n"}, summary)
    message = git(repo.canonical_path, "log", "-1", "--format=%B", sub.commit_sha)
    assert trailer_block(repo, sub.commit_sha) == (
        f"Bead: {bead.id}\nAgent: {agent.name}\nSession: {sub.session_id}"
    )
    assert "Fixed the thing." in message and "Still part[31m of the summary." in message
    assert str(other) not in message and "Mallory" not in message and "\x1b" not in message
    interpreted = subprocess.run(
        ["git", "interpret-trailers", "--parse"], input=message, capture_output=True, text=True
    ).stdout
    assert interpreted.splitlines() == [
        f"Bead: {bead.id}",
        f"Agent: {agent.name}",
        f"Session: {sub.session_id}",
    ]


def test_a_revert_works_when_a_later_summary_names_its_target(repo, agent, rq_redis):
    bead, first = landed(repo, agent, {"src/app.py": "print('new')\n"}, "Changed app.")
    target = first.commit_sha
    landed(repo, agent, {"b.txt": "1\n"}, f"Unrelated.\n\nReverts: {target}\n")
    before = commits(repo)
    revert.revert(bead.pk)
    bead.refresh_from_db()
    assert bead.status == "open"
    assert commits(repo) == before + 1
    assert git(repo.canonical_path, "show", f"{repo.branch}:src/app.py") == "print('hello')"
    assert f"Reverts: {target}" in trailer_block(repo, repo.branch)


def test_a_resumed_landing_does_not_take_another_sessions_commit(repo, agent, rq_redis):
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    second_bead = Bead.objects.create(repository=repo, title="Second", scope=["**"])
    second_bead.start(agent.name)
    second = Session.objects.create(agent=agent, bead=second_bead, status="running", base_sha=base)
    # The first session's summary names the second session, as a trailer would.
    _, first = landed(repo, agent, {"a.txt": "1\n"}, f"Done.\n\nSession: {second.pk}\n")
    _, patch = make_patch(repo, {"b.txt": "2\n"}, base=base)
    sub = lifecycle.hand_in(second, patch, "Second.")
    # A lead died while checking it: the next one resumes and looks for its commit.
    assert sub.start_checking()
    before = commits(repo)
    lead.drain(repo.pk)
    sub.refresh_from_db()
    assert sub.status == "committed" and sub.commit_sha != first.commit_sha
    assert commits(repo) == before + 1
    assert git(repo.canonical_path, "show", f"{sub.commit_sha}:b.txt") == "2"


def test_a_commit_by_someone_else_with_corrals_trailers_is_not_the_leads(repo, agent, rq_redis):
    bead, sub = land(repo, agent, {"a.txt": "1\n"})
    path = repo.canonical_path
    # Someone pushes a commit of their own, dressed in the session's trailer.
    head = git(path, "rev-parse", repo.branch)
    forged = git(
        path,
        "commit-tree",
        git(path, "rev-parse", f"{head}^{{tree}}"),
        "-p",
        head,
        "-m",
        f"Forged\n\nSession: {sub.session_id}",
    )
    git(path, "update-ref", f"refs/heads/{repo.branch}", forged)
    assert sub.start_checking()
    lead.drain(repo.pk)
    sub.refresh_from_db()
    assert sub.status == "committed" and sub.commit_sha != forged
    assert git(path, "log", "-1", "--format=%cn", sub.commit_sha) == "Corral lead"


@pytest.mark.parametrize("summary", ["nul\x00here", "escape\x1b[2J", "bell\x07", "del\x7f"])
def test_the_api_refuses_a_summary_with_control_characters(repo, summary):
    _, client = new_agent()
    Bead.objects.create(repository=repo, title="x", scope=["docs/**"])
    claimed = client.post("claim").json()
    _, patch = make_patch(repo, {"docs/a.md": "a\n"}, base=claimed["base_sha"])
    response = client.post(
        f"sessions/{claimed['session']}/submit", {"patch": patch, "summary": summary}
    )
    assert response.status_code == 422, response.content
    assert "summary" in str(response.json()["detail"])
    ok = client.post(
        f"sessions/{claimed['session']}/submit",
        {"patch": patch, "summary": "Tabs\tand\r\nnew lines are fine."},
    )
    assert ok.status_code == 201, ok.content


LINES = st.sampled_from(
    [
        "Session: 1234",
        "Reverts: abc",
        "Key : value",
        "Signed-off-by: x <x@y>",
        "(cherry picked from commit abc)",
        "---",
        "--- not a divider?",
        "  continued: line",
        "plain words",
        "",
        "x-y-z:",
        "Ünïcode: yes",
    ]
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    lines=st.lists(
        st.one_of(LINES, st.text(alphabet=st.characters(codec="utf-8"), max_size=30)), max_size=12
    )
)
def test_no_summary_line_survives_as_a_trailer(lines):
    """Whatever the summary, git reads no trailer in it once the lead has cleaned it."""
    body = gitops.without_trailers("\n".join(lines))
    for divider in ([], ["--no-divider"]):
        parsed = subprocess.run(
            ["git", "interpret-trailers", "--parse", *divider],
            input=f"Title\n\n{body}\n".encode("utf-8", "surrogatepass"),
            capture_output=True,
        )
        assert parsed.stdout == b"", (body, parsed.stdout)
    message = gitops.commit_message("Title", "\n".join(lines), [("Bead", "b-1"), ("Session", "s")])
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse", "--no-divider"],
        input=message.encode(),
        capture_output=True,
        text=False,
    )
    assert parsed.stdout.decode() == "Bead: b-1\nSession: s\n"
