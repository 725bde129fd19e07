"""`corral mcp`: the agents' API as MCP tools, over stdio, on the official SDK.

An MCP client (Claude Code, Codex, any other) starts `corral mcp` and calls
tools instead of shelling out to `corral`: ready, claim, context, show, heartbeat, log,
submit (a patch, or everything in the claimed working tree), release,
comment, new_bead, learn, inject. Each is one call to the HTTP API with the
agent's token, read from CORRAL_TOKEN and never written anywhere (stdout carries the
protocol, stderr only the SDK's own notes). A refusal comes back as a tool
error with the API's reason.

The server remembers the session it claimed and its folder, so the calls
after `claim` need no session id (CORRAL_SESSION, if set, is the start).
"""

import os
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from corral_client.cli import (
    AGENTS_DIR,
    MAX_LOG_CHARS,
    SHA,
    Client,
    CliError,
    diff_against,
    git,
    learnings_in,
    quote,
    read_session_file,
    set_up_folder,
)

INSTRUCTIONS = """Corral hands out beads (units of work) to agents. Call `ready` to see
work, `claim` (with a `dir`) to take one and get its repository cloned there,
`log` and `heartbeat` while you work, then `submit` (the working tree, or a
patch) with a summary, or `release` with a reason if you cannot finish."""


class Work:
    """What this server remembers between calls: the session claimed, its folder."""

    def __init__(self, session: str | None) -> None:
        self.session = session
        self.folder: Path | None = None

    def session_id(self, given: str | None) -> str:
        session = given or self.session
        if not session:
            raise ToolError("no session: claim a bead first, or pass its session id")
        return session


def build(client: Client, session: str | None = None) -> MCPServer:
    server: MCPServer = MCPServer("corral", instructions=INSTRUCTIONS)
    work = Work(session)

    def call(method: str, path: str, body: Any = None, query: Any = None) -> Any:
        try:
            return client.request(method, path, body, query)
        except CliError as e:
            raise ToolError(str(e)) from None

    @server.tool()
    def ready(repo: str | None = None, limit: int = 20) -> dict[str, Any]:
        """Ready beads, best first (optionally of one repository, by slug)."""
        return {"beads": call("GET", "ready", query={"repo": repo, "limit": limit})}

    @server.tool()
    def claim(
        repo: str | None = None, bead: str | None = None, dir: str | None = None
    ) -> dict[str, Any]:
        """Claim one ready bead (of `repo`, or `bead` itself). With `dir`, an empty
        or new folder, its repository is cloned there at the base SHA."""
        try:
            claimed = client.claim(repo, bead)  # the claim, then its context pack
        except CliError as e:
            raise ToolError(str(e)) from None
        work.session, work.folder = claimed["session"], None
        if dir is not None:
            folder = Path(dir).absolute()
            try:
                set_up_folder(folder, claimed, client.url, client.token)
            except (CliError, OSError) as e:
                reason = f"corral mcp could not set up {folder}: {e}"[:2000]
                call("POST", f"sessions/{quote(work.session)}/release", {"reason": reason})
                raise ToolError(f"{e} (the claim was released)") from None
            work.folder = folder
            claimed["dir"] = str(folder)
        return claimed

    @server.tool()
    def context(session: str | None = None) -> dict[str, Any]:
        """The session's context pack: the bead, its scope, the previous handoff,
        comments and learnings (`claim` returns it too)."""
        return call("GET", f"sessions/{quote(work.session_id(session))}/context")

    @server.tool()
    def show(bead: str) -> dict[str, Any]:
        """A bead with its dependencies, and the review comments its next attempt must address."""
        return call("GET", f"beads/{quote(bead)}")

    @server.tool()
    def heartbeat(session: str | None = None) -> dict[str, Any]:
        """Extend the session's lease."""
        return call("POST", f"sessions/{quote(work.session_id(session))}/heartbeat")

    @server.tool()
    def log(text: str, session: str | None = None) -> dict[str, Any]:
        """Append to the session's live log (people watch it)."""
        path = f"sessions/{quote(work.session_id(session))}/log"
        answers = [
            call("POST", path, {"text": text[i : i + MAX_LOG_CHARS]})
            for i in range(0, max(len(text), 1), MAX_LOG_CHARS)
        ]
        return answers[-1]

    @server.tool()
    def submit(
        summary: str = "",
        patch: str | None = None,
        dir: str | None = None,
        session: str | None = None,
    ) -> dict[str, Any]:
        """Hand the work to the lead: `patch` (a `git diff --binary` against the base),
        or else everything in the working tree `dir` (default: the claimed folder)."""
        learnings: list[dict[str, Any]] = []
        if patch is None:
            top, saved = session_folder(dir, work)
            session = session or saved.get("session")
            patch = diff_against(top, saved["base_sha"])
            learnings = learnings_in(top)
        if not patch.strip():
            raise ToolError("nothing to submit: no changes against the base")
        body = {"patch": patch, "summary": summary, "learnings": learnings}
        return call("POST", f"sessions/{quote(work.session_id(session))}/submit", body)

    @server.tool()
    def release(reason: str, session: str | None = None) -> dict[str, Any]:
        """Give the bead back, saying why."""
        return call(
            "POST", f"sessions/{quote(work.session_id(session))}/release", {"reason": reason}
        )

    @server.tool()
    def comment(text: str, session: str | None = None) -> dict[str, Any]:
        """Comment on the session's bead (people and later agents read it)."""
        return call("POST", f"sessions/{quote(work.session_id(session))}/comments", {"text": text})

    @server.tool()
    def new_bead(
        title: str,
        repo: str | None = None,
        discovered_from: str | None = None,
        description: str | None = None,
        acceptance_criteria: str | None = None,
        priority: int | None = None,
        issue_type: str | None = None,
        scope: list[str] | None = None,
    ) -> dict[str, Any]:
        """File a new bead (proposed until a person accepts it, when an agent files it)."""
        body = {
            "title": title,
            "repo": repo,
            "discovered_from": discovered_from,
            "description": description,
            "acceptance_criteria": acceptance_criteria,
            "priority": priority,
            "issue_type": issue_type,
            "scope": scope,
        }
        return call("POST", "beads", {k: v for k, v in body.items() if v is not None})

    @server.tool()
    def learn(
        title: str, body: str, tags: list[str] | None = None, repo: str | None = None
    ) -> dict[str, Any]:
        """Propose a learning for the agents that come after."""
        data = {"title": title, "body": body, "tags": tags or [], "repo": repo}
        return call("POST", "learnings", {k: v for k, v in data.items() if v is not None})

    @server.tool()
    def inject(
        bead: str | None = None,
        repo: str | None = None,
        q: str | None = None,
        budget: int | None = None,
    ) -> dict[str, Any]:
        """The learnings that fit a bead, or a search of a repository's."""
        return call("GET", "inject", query={"bead": bead, "repo": repo, "q": q, "budget": budget})

    return server


def session_folder(given: str | None, work: Work) -> tuple[Path, dict[str, Any]]:
    """The working tree's top folder and its .agents/session.json."""
    start = Path(given) if given else work.folder
    if start is None or not start.is_dir():
        raise ToolError("no working tree: give `dir`, or claim with `dir` first")
    try:
        top = Path(git("rev-parse", "--show-toplevel", cwd=start).decode().strip())
        saved = read_session_file(top / AGENTS_DIR / "session.json")
    except CliError as e:
        raise ToolError(str(e)) from None
    if not SHA.fullmatch(str(saved.get("base_sha", ""))):
        raise ToolError(f"{top / AGENTS_DIR / 'session.json'} has no base_sha")
    return top, saved


def main() -> None:
    """`corral mcp` execs this with CORRAL_URL and CORRAL_TOKEN checked."""
    url, token = os.environ["CORRAL_URL"], os.environ["CORRAL_TOKEN"]
    build(Client(url, token), os.environ.get("CORRAL_SESSION") or None).run("stdio")


if __name__ == "__main__":
    main()
