"""`corral mcp`, end to end: the SDK's own stdio client starts the server as an
MCP host would and calls its tools against a live Corral."""

import json
import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from agents.models import Agent, Session, Submission
from beads.models import Bead
from knowledge.models import Learning
from tests.factories import git, run_lead

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
TOOLS = {"ready", "claim", "show", "heartbeat", "log", "submit", "release"}
TOOLS |= {"comment", "new_bead", "learn", "inject"}


@pytest.fixture
def token(db):
    agent = Agent(name="mcp-agent", preset="shell", internal=False)
    agent.save()
    return agent.plain_token


def server(live_server, token, tmp_path, **env):
    environ = {"PYTHONPATH": str(ROOT), "CORRAL_URL": live_server.url, "CORRAL_TOKEN": token}
    environ |= {"PATH": os.environ["PATH"], "HOME": str(tmp_path)} | env
    return StdioServerParameters(
        command=sys.executable, args=["-m", "corral_client.cli", "mcp"], env=environ, cwd=tmp_path
    )


def converse(params, steps, errlog):
    """Run `steps(client)` (an async function) against the server, its stderr to `errlog`."""

    async def main():
        async with Client(stdio_client(params, errlog=errlog)) as client:
            return await steps(client)

    return anyio.run(main)


def result_of(answer):
    assert not answer.is_error, answer.content
    return answer.structured_content


def test_an_agent_works_a_bead_through_mcp_tools(live_server, repo, token, tmp_path, rq_redis):
    bead = Bead.objects.create(repository=repo, title="Grow the app", scope=["src/**"])
    work = tmp_path / "work"
    seen = {}

    async def steps(client):
        seen["tools"] = {tool.name for tool in (await client.list_tools()).tools}
        seen["ready"] = result_of(await client.call_tool("ready", {"repo": repo.slug}))
        claimed = result_of(await client.call_tool("claim", {"dir": str(work)}))
        seen["claimed"] = claimed
        (work / "src" / "app.py").write_text("print('hello, mcp')\n")
        (work / ".agents" / "learnings").mkdir()
        (work / ".agents" / "learnings" / "t.md").write_text("# Tools work\n\nThrough MCP.\n")
        seen["show"] = result_of(await client.call_tool("show", {"bead": bead.id}))
        seen["heartbeat"] = result_of(await client.call_tool("heartbeat", {}))
        seen["log"] = result_of(await client.call_tool("log", {"text": "on it"}))
        seen["comment"] = result_of(await client.call_tool("comment", {"text": "Half done"}))
        seen["new"] = result_of(
            await client.call_tool(
                "new_bead",
                {"title": "Found more", "discovered_from": bead.id, "scope": ["src/more/**"]},
            )
        )
        # Learnings are read and proposed while the agent holds its session.
        seen["learn"] = result_of(
            await client.call_tool("learn", {"title": "Say it once", "body": "b", "tags": ["x"]})
        )
        seen["inject"] = result_of(await client.call_tool("inject", {"repo": repo.slug}))
        seen["submit"] = result_of(await client.call_tool("submit", {"summary": "via mcp"}))

    errors = tmp_path / "stderr.txt"
    with errors.open("w") as errlog:
        converse(server(live_server, token, tmp_path), steps, errlog)

    assert TOOLS <= seen["tools"]
    assert [b["id"] for b in seen["ready"]["beads"]] == [bead.id]
    session = Session.objects.get(pk=seen["claimed"]["session"])
    assert session.bead == bead and seen["claimed"]["dir"] == str(work)
    assert seen["claimed"]["clone_url"].endswith(f"/git/{repo.slug}.git")
    assert json.loads((work / ".agents" / "session.json").read_text())["session"] == str(session.pk)
    assert seen["show"]["id"] == bead.id and seen["heartbeat"]["status"] == "running"
    assert seen["submit"]["changed_files"] == ["src/app.py"]
    (note,) = bead.comments.all()
    assert (note.text, note.author, seen["comment"]["id"]) == (
        "Half done",
        "agent mcp-agent",
        note.pk,
    )
    assert Learning.objects.filter(source_session=session, title="Tools work").exists()
    assert Bead.objects.get(pk=seen["new"]["id"]).title == "Found more"
    assert seen["learn"]["title"] == "Say it once"
    assert "learnings" in seen["inject"]
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed"
    assert (
        git(repo.canonical_path, "show", f"{bead.commit_sha}:src/app.py") == "print('hello, mcp')"
    )
    assert token not in errors.read_text()
    assert token not in json.dumps({k: v for k, v in seen.items() if k != "tools"})


def test_a_patch_is_submitted_and_a_refusal_is_a_tool_error(live_server, repo, token, tmp_path):
    bead = Bead.objects.create(repository=repo, title="Patch it", scope=["**"])
    patch = (
        "diff --git a/NOTES.md b/NOTES.md\nnew file mode 100644\n--- /dev/null\n"
        "+++ b/NOTES.md\n@@ -0,0 +1 @@\n+a note\n"
    )
    seen = {}

    async def steps(client):
        seen["nothing"] = await client.call_tool("submit", {"patch": patch})
        result_of(await client.call_tool("claim", {"bead": bead.id}))
        seen["submit"] = result_of(await client.call_tool("submit", {"patch": patch}))
        seen["again"] = await client.call_tool("claim", {"bead": bead.id})
        seen["release"] = await client.call_tool("release", {"reason": "done already"})

    with (tmp_path / "stderr.txt").open("w") as errlog:
        converse(server(live_server, token, tmp_path), steps, errlog)
    assert seen["nothing"].is_error and "claim a bead first" in seen["nothing"].content[0].text
    assert seen["submit"]["changed_files"] == ["NOTES.md"]
    assert Submission.objects.get(bead=bead).session.patch.startswith("diff --git")
    assert seen["again"].is_error and "409" in seen["again"].content[0].text
    assert seen["release"].is_error  # submitted: no longer the agent's to release


def test_a_bad_token_is_refused_and_never_shown(live_server, repo, tmp_path):
    Bead.objects.create(repository=repo, title="x")
    secret = "crl_this-is-not-a-real-token-but-a-secret"
    seen = {}

    async def steps(client):
        seen["ready"] = await client.call_tool("ready", {})

    with (tmp_path / "stderr.txt").open("w") as errlog:
        converse(server(live_server, secret, tmp_path), steps, errlog)
    assert seen["ready"].is_error and "401" in seen["ready"].content[0].text
    assert secret not in seen["ready"].content[0].text
    assert secret not in (tmp_path / "stderr.txt").read_text()
