"""`corral`: the command-line client agents use to talk to Corral's API.

Standard library only and nothing from the project, so that it starts fast and
runs anywhere an agent does. It reads CORRAL_URL, CORRAL_TOKEN and
CORRAL_SESSION (the flags --url, --token and --session override them), prints
readable text or, with --json, the API's JSON, and on any failure exits 1 with
one line on stderr: `corral: <reason>`.

    corral ready                         what could be worked on
    corral claim                         claim one, clone it into ./<bead id>
    corral heartbeat / log TEXT          keep the lease, report progress
    corral submit --summary "..."        hand the folder's changes to the lead
    corral mcp                           the same as MCP tools, over stdio
"""

from __future__ import annotations  # the hints are never evaluated: typing is not imported

import argparse
import json
import os
import re
import sys
from pathlib import Path

TYPE_CHECKING = False  # true for type checkers; importing typing would slow the start down
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

API_PREFIX = "/api/v1/"
TIMEOUT_SECONDS = 120
MAX_LOG_CHARS = 64_000  # the API's limit for one log call
SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
AGENTS_DIR = ".agents"


class CliError(Exception):
    """A failure to report as one line: `corral: <reason>`."""


# --- talking to the API ----------------------------------------------------------------------


class Client:
    """JSON over HTTP to Corral's /api/v1/ with the agent's bearer token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
    ) -> Any:
        """The parsed JSON answer; CliError with the API's detail if it refuses."""
        from urllib import error, parse, request

        full = self.url + (API_PREFIX if not self.url.endswith("/api/v1") else "/") + path
        query = {k: v for k, v in (query or {}).items() if v is not None}
        if query:
            full += "?" + parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "User-Agent": "corral-cli",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = request.Request(full, data=data, headers=headers, method=method)
        try:
            with request.urlopen(req, timeout=TIMEOUT_SECONDS) as response:
                return decode(response.read(), response.status, full)
        except error.HTTPError as e:
            raise CliError(refusal(e.code, e.reason, e.read(), full)) from None
        except error.URLError as e:
            raise CliError(f"cannot reach {self.url}: {why(e.reason)}") from None
        except OSError as e:  # a reset or a timeout while reading the answer
            raise CliError(f"cannot reach {self.url}: {why(e)}") from None


def why(reason: object) -> str:
    """A socket error in a few words."""
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def decode(raw: bytes, status: int, url: str) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        raise CliError(f"HTTP {status} from {url} is not JSON: is this Corral's URL?") from None


def refusal(status: int, reason: str, raw: bytes, url: str) -> str:
    """The API's `detail` (with its status), or what went wrong if it sent none."""
    try:
        detail = json.loads(raw)["detail"]
    except (ValueError, KeyError, TypeError):
        hint = "" if status >= 500 else ": is this Corral's URL?"
        return f"HTTP {status} {reason} from {url}{hint}"
    if isinstance(detail, list):  # validation errors: [{"loc": [...], "msg": ...}, ...]
        detail = "; ".join(invalid(item) for item in detail)
    return f"{detail} (HTTP {status})"


def invalid(item: object) -> str:
    """One validation error, `field: message`."""
    if not isinstance(item, dict):
        return str(item)
    where = [str(p) for p in item.get("loc", []) if p not in ("body", "data", "query", "path")]
    return ".".join(where) + ": " + str(item.get("msg", item)) if where else str(item.get("msg"))


def client_of(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("CORRAL_URL", "")
    token = args.token or os.environ.get("CORRAL_TOKEN", "")
    if not url:
        raise CliError("CORRAL_URL is not set (or pass --url)")
    if not url.startswith(("http://", "https://")):
        raise CliError(f"CORRAL_URL is not an http(s) URL: {url!r}")
    if not token:
        raise CliError("CORRAL_TOKEN is not set (or pass --token)")
    return Client(url, token)


# --- the session folder ----------------------------------------------------------------------


def git(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None) -> bytes:
    """git's stdout as bytes; CliError with the last line git printed if it fails."""
    import subprocess

    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True)
    except FileNotFoundError:
        raise CliError("git is not installed (not found on PATH)") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).decode(errors="replace").splitlines()
        lines = [line for line in said if line.strip() and not line.startswith("hint:")]
        raise CliError(f"git {args[0]} failed: {lines[-1] if lines else f'exit {done.returncode}'}")
    return done.stdout


def session_file(start: str | Path) -> Path | None:
    """The nearest .agents/session.json at or above `start`, or None."""
    here = Path(start).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / AGENTS_DIR / "session.json"
        if candidate.is_file():
            return candidate
    return None


def read_session_file(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read {path}: {e}") from None


def session_of(args: argparse.Namespace, start: str | Path = ".") -> str:
    """The session id: --session, CORRAL_SESSION, or the folder's .agents/session.json."""
    if session := args.session or os.environ.get("CORRAL_SESSION"):
        return session
    if path := session_file(start):
        if session := read_session_file(path).get("session"):
            return session
    raise CliError("CORRAL_SESSION is not set and no .agents/session.json was found here")


def write_agents_dir(folder: Path, claimed: dict[str, Any], url: str) -> None:
    agents = folder / AGENTS_DIR
    agents.mkdir(exist_ok=True)
    (agents / "context.md").write_text(claimed["context"], encoding="utf-8")
    (agents / "bead.json").write_text(
        json.dumps(claimed["bead"], indent=2) + "\n", encoding="utf-8"
    )
    session = {
        "session": claimed["session"],
        "base_sha": claimed["base_sha"],
        "url": url,
        "bead": claimed["bead"]["id"],
    }
    (agents / "session.json").write_text(json.dumps(session, indent=2) + "\n", encoding="utf-8")
    exclude = Path(os.fsdecode(git("rev-parse", "--git-path", "info/exclude", cwd=folder).strip()))
    exclude = exclude if exclude.is_absolute() else folder / exclude
    exclude.parent.mkdir(parents=True, exist_ok=True)
    existing = exclude.read_text(encoding="utf-8") if exclude.exists() else ""
    if f"/{AGENTS_DIR}/" not in existing.splitlines():
        sep = "" if not existing or existing.endswith("\n") else "\n"
        exclude.write_text(f"{existing}{sep}/{AGENTS_DIR}/\n", encoding="utf-8")


def with_token(token: str) -> dict[str, str]:
    """The environment for a git that reads Corral's git over HTTP: the token as
    the Basic password, in an extra header git sends with every request. Passed
    in the environment, not on the command line other users can read."""
    import base64

    basic = base64.b64encode(f"agent:{token}".encode()).decode()
    count = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    return {
        **os.environ,
        "GIT_CONFIG_COUNT": str(count + 1),
        f"GIT_CONFIG_KEY_{count}": "http.extraHeader",
        f"GIT_CONFIG_VALUE_{count}": f"Authorization: Basic {basic}",
        "GIT_TERMINAL_PROMPT": "0",
    }


def set_up_folder(folder: Path, claimed: dict[str, Any], url: str, token: str = "") -> None:
    """Clone the repository into `folder`, detached at the base, with .agents/ written."""
    base = claimed["base_sha"]
    if not SHA.fullmatch(base):
        raise CliError(f"the API sent a base SHA that is not one: {base!r}")
    if folder.exists() and any(folder.iterdir()):
        raise CliError(f"{folder} already exists and is not empty")
    source = claimed["clone_url"]
    env = with_token(token) if source.startswith(("http://", "https://")) else None
    git("clone", "--quiet", "--no-checkout", "--", source, str(folder), env=env)
    git("checkout", "--quiet", "--detach", base, cwd=folder)
    write_agents_dir(folder, claimed, url)


def diff_against(top: Path, base: str) -> str:
    """The folder's changes against `base` as a binary-safe git diff, untracked files
    included and .agents/ left out, staged in a private index so the agent's is untouched."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="corral-") as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": os.path.join(tmp, "index")}
        git("read-tree", base, cwd=top, env=env)
        git("add", "-A", "--", ".", cwd=top, env=env)
        # .agents/ as it was at the base (an `:(exclude)` pathspec fails on an ignored folder).
        git("reset", "--quiet", base, "--", AGENTS_DIR, cwd=top, env=env)
        patch = git(
            *("-c", "diff.noprefix=false", "-c", "diff.mnemonicPrefix=false"),
            *("diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "--no-textconv"),
            *(base, "--"),
            cwd=top,
            env=env,
        )
    try:
        return patch.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(
            "the diff is not UTF-8: convert text files in other encodings, or mark them "
            "binary in .gitattributes"
        ) from None


def learnings_in(top: Path) -> list[dict[str, str]]:
    """.agents/learnings/*.md: the first line (`# Title`) is the title, the rest the body
    (read as the session runner reads them: an empty file is skipped)."""
    found: list[dict[str, str]] = []
    for path in sorted((top / AGENTS_DIR / "learnings").glob("*.md")):
        text = path.read_text(encoding="utf-8", errors="replace").strip()
        if text:
            first, _, rest = text.partition("\n")
            title = first.lstrip("# ").strip()[:200] or path.stem
            found.append({"title": title, "body": rest.strip() or first})
    return found


# --- output -------------------------------------------------------------------------------


def emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> None:
    """The API's JSON with --json, otherwise `text(data)`."""
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(text(data))


def priority(n: int) -> str:
    return f"P{n}"


def table(rows: Sequence[Sequence[str]]) -> str:
    if not rows:
        return ""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in rows
    )


def bead_text(bead: dict[str, Any]) -> str:
    lines = [f"{bead['id']}  {bead['title']}"]
    fields = [
        ("status", bead["status"]),
        ("priority", priority(bead["priority"])),
        ("type", bead.get("issue_type", "")),
        ("repo", bead["repo"]),
        ("assignee", bead.get("assignee") or "-"),
        ("attempts", bead.get("attempts", 0)),
        ("scope", ", ".join(bead.get("scope") or []) or "(anywhere)"),
    ]
    if bead.get("labels"):
        fields.append(("labels", ", ".join(bead["labels"])))
    if bead.get("commit_sha"):
        fields.append(("commit", bead["commit_sha"]))
    lines += [f"  {name:<10} {value}" for name, value in fields]
    deps = bead.get("dependencies") or []
    lines.append("  depends on" + ("" if deps else " nothing"))
    lines += [f"    {d['depends_on']}  {d['type']}  ({d['status']})" for d in deps]
    for name, key in [
        ("Description", "description"),
        ("Design", "design"),
        ("Acceptance criteria", "acceptance_criteria"),
        ("Notes", "notes"),
        ("Last failure", "last_failure"),
    ]:
        if (bead.get(key) or "").strip():
            lines += ["", f"{name}:", *("  " + line for line in bead[key].strip().splitlines())]
    return "\n".join(lines)


# --- the subcommands ------------------------------------------------------------------------


def cmd_ready(args: argparse.Namespace) -> None:
    beads = client_of(args).request("GET", "ready", query={"repo": args.repo, "limit": args.limit})
    rows = [(b["id"], priority(b["priority"]), b["repo"], b["title"]) for b in beads]
    emit(args, beads, lambda _: table(rows) or "nothing is ready")


def cmd_claim(args: argparse.Namespace) -> None:
    client = client_of(args)
    if args.dir and Path(args.dir).exists() and any(Path(args.dir).iterdir()):
        raise CliError(f"{args.dir} already exists and is not empty")
    claimed = client.request("POST", "claim", {"repo": args.repo, "bead": args.bead})
    bead, session = claimed["bead"], claimed["session"]
    folder = Path(args.dir or bead["id"]).absolute()
    try:
        if not args.dir and not SAFE_NAME.fullmatch(bead["id"]):
            raise CliError(f"bead id {bead['id']!r} is not a folder name: pass --dir")
        set_up_folder(folder, claimed, client.url, client.token)
    except (CliError, OSError) as e:
        reason = f"corral claim could not set up {folder}: {e}"[:2000]
        try:
            client.request("POST", f"sessions/{quote(session)}/release", {"reason": reason})
        except CliError:
            raise CliError(f"{e} (session {session} is still claimed)") from None
        raise CliError(f"{e} (the claim was released)") from None
    text = [
        f"claimed {bead['id']} ({priority(bead['priority'])}): {bead['title']}",
        f"session {session}",
        f"folder  {folder}",
        f"lease   until {claimed['lease_expires_at']}",
        f"export CORRAL_SESSION={session}",
    ]
    emit(args, {**claimed, "dir": str(folder)}, lambda _: "\n".join(text))


def cmd_show(args: argparse.Namespace) -> None:
    bead = client_of(args).request("GET", f"beads/{quote(args.id)}")
    emit(args, bead, bead_text)


def cmd_heartbeat(args: argparse.Namespace) -> None:
    session = session_of(args)
    lease = client_of(args).request("POST", f"sessions/{quote(session)}/heartbeat")
    emit(args, lease, lambda d: f"lease until {d['lease_expires_at']} ({d['status']})")


def cmd_log(args: argparse.Namespace) -> None:
    text = sys.stdin.read() if args.text == "-" else args.text
    session, client = session_of(args), client_of(args)
    answers = [
        client.request(
            "POST", f"sessions/{quote(session)}/log", {"text": text[i : i + MAX_LOG_CHARS]}
        )
        for i in range(0, max(len(text), 1), MAX_LOG_CHARS)
    ]
    emit(args, answers[-1], lambda d: f"logged (#{d['seq']})")


def cmd_submit(args: argparse.Namespace) -> None:
    start = Path(args.dir or ".")
    if not start.is_dir():
        raise CliError(f"{start} is not a folder")
    top = Path(os.fsdecode(git("rev-parse", "--show-toplevel", cwd=start).strip()))
    saved_path = top / AGENTS_DIR / "session.json"
    if not saved_path.is_file():
        raise CliError(f"{saved_path} is missing: submit from the folder `corral claim` made")
    saved = read_session_file(saved_path)
    session = args.session or os.environ.get("CORRAL_SESSION") or saved.get("session")
    base = saved.get("base_sha", "")
    if not session or not SHA.fullmatch(base):
        raise CliError(f"{saved_path} has no session or base_sha")
    client = client_of(args)
    patch = diff_against(top, base)
    if not patch.strip():
        raise CliError(f"nothing to submit: the folder has no changes against {base}")
    body = {"patch": patch, "summary": summary_of(args, top), "learnings": learnings_in(top)}
    result = client.request("POST", f"sessions/{quote(session)}/submit", body)
    emit(
        args,
        result,
        lambda d: "\n".join(
            [
                f"submission {d['submission']}: {d['status']}",
                *("  " + f for f in d["changed_files"]),
            ]
        ),
    )


def summary_of(args: argparse.Namespace, top: Path) -> str:
    if args.summary is not None:
        return args.summary
    if args.summary_file:
        if args.summary_file == "-":
            return sys.stdin.read()
        try:
            return Path(args.summary_file).read_text(encoding="utf-8")
        except OSError as e:
            raise CliError(f"cannot read {args.summary_file}: {e.strerror}") from None
    handoff = top / AGENTS_DIR / "handoff.md"
    return handoff.read_text(encoding="utf-8") if handoff.is_file() else ""


def cmd_release(args: argparse.Namespace) -> None:
    session = session_of(args)
    body = {"reason": args.reason}
    lease = client_of(args).request("POST", f"sessions/{quote(session)}/release", body)
    emit(args, lease, lambda d: f"released {d['session']} ({d['status']})")


def cmd_comment(args: argparse.Namespace) -> None:
    text = sys.stdin.read() if args.text == "-" else args.text
    session = session_of(args)
    made = client_of(args).request("POST", f"sessions/{quote(session)}/comments", {"text": text})
    emit(args, made, lambda d: f"commented on {d['bead']} (#{d['id']})")


def cmd_new(args: argparse.Namespace) -> None:
    body = {
        "title": args.title,
        "repo": args.repo,
        "discovered_from": args.discovered_from,
        "scope": args.scope or [],
        "priority": args.priority,
        "description": args.description,
        "acceptance_criteria": args.acceptance,
        "issue_type": args.type,
    }
    body = {k: v for k, v in body.items() if v is not None}
    bead = client_of(args).request("POST", "beads", body)
    emit(args, bead, filed)


def filed(bead: dict[str, Any]) -> str:
    """The new bead's ID, and what its status means when it is not ready work yet."""
    if bead.get("status") == "proposed":
        return f"{bead['id']} (proposed: ready once a person accepts it)"
    return str(bead["id"])


def cmd_inject(args: argparse.Namespace) -> None:
    if args.bead and (args.repo or args.q):
        raise CliError("give --bead, or --repo and/or --q, not both")
    bead = args.bead
    if not (bead or args.repo or args.q):
        bead = os.environ.get("CORRAL_BEAD") or bead_of_folder()
    query = {"bead": bead, "repo": args.repo, "q": args.q, "budget": args.budget}
    found = client_of(args).request("GET", "inject", query=query)
    emit(args, found, injected_text)


def bead_of_folder() -> str:
    path = session_file(".")
    if path and (bead := read_session_file(path).get("bead")):
        return bead
    raise CliError("give --bead, or --repo and/or --q (no CORRAL_BEAD or .agents/session.json)")


def injected_text(found: dict[str, Any]) -> str:
    if not found["learnings"]:
        return "no learnings"
    return "\n\n".join(
        f"## {item['title']}\n\n{item['body'].strip()}" for item in found["learnings"]
    )


def cmd_learn(args: argparse.Namespace) -> None:
    if args.helpful is not None or args.harmful is not None:
        return mark_learning(args)
    if not args.title or args.body is None:
        raise CliError("give a title and --body, or --helpful ID / --harmful ID")
    body = {
        "title": args.title,
        "body": args.body,
        "tags": [t.strip() for t in (args.tags or "").split(",") if t.strip()],
        "repo": args.repo,
    }
    body = {k: v for k, v in body.items() if v is not None}
    learning = client_of(args).request("POST", "learnings", body)
    emit(args, learning, lambda d: f"learning {d['id']} ({d['status']}): {d['title']}")


def mark_learning(args: argparse.Namespace) -> None:
    """Mark a learning this agent was given helpful or harmful."""
    if args.helpful is not None and args.harmful is not None:
        raise CliError("give --helpful or --harmful, not both")
    helpful = args.helpful is not None
    body: dict[str, Any] = {"helpful": helpful, "reason": args.reason or ""}
    if session := args.session or os.environ.get("CORRAL_SESSION"):
        body["session"] = session
    learning_id = args.helpful if helpful else args.harmful
    found = client_of(args).request("POST", f"learnings/{quote(learning_id)}/feedback", body)
    emit(args, found, marked_text)


def marked_text(found: dict[str, Any]) -> str:
    text = (
        f"learning {found['id']}: {found['helpful']} helpful, {found['harmful']} harmful, "
        f"utility {found['utility']:.2f}"
    )
    if found["status"] == "retired":
        text += f"; retired ({found['retired_reason']})"
    return text


def cmd_usage(args: argparse.Namespace) -> None:
    session = session_of(args)
    body = {
        "input": args.input,
        "output": args.output,
        "cache_read": args.cache_read,
        "cache_write": args.cache_write,
    }
    if args.model:
        body["model"] = args.model
    answer = client_of(args).request("POST", f"sessions/{quote(session)}/usage", body)
    emit(args, answer, usage_text)


def usage_text(answer: dict[str, Any]) -> str:
    return "\n".join(
        f"{model}: " + ", ".join(f"{kind} {n}" for kind, n in kinds.items())
        for model, kinds in answer["tokens"].items()
    )


def cmd_mcp(args: argparse.Namespace) -> None:
    """Become the MCP server (agents/mcp_server.py): this module stays standard
    library only, and the token goes on in the environment, never in argv."""
    client = client_of(args)
    env = {**os.environ, "CORRAL_URL": client.url, "CORRAL_TOKEN": client.token}
    if args.session:
        env["CORRAL_SESSION"] = args.session
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "agents.mcp_server"], env)


def quote(part: object) -> str:
    from urllib.parse import quote as url_quote

    return url_quote(str(part), safe="")


# --- the command line -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    def connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
        parser.add_argument("--url", default=default, help="Corral's URL ($CORRAL_URL)")
        parser.add_argument("--token", default=default, help="the agent's token ($CORRAL_TOKEN)")
        parser.add_argument("--session", default=default, help="session id ($CORRAL_SESSION)")
        parser.add_argument(
            "--json", action="store_true", default=default or False, help="print the API's JSON"
        )

    # Accepted before or after the subcommand: the subcommands' copies default to
    # "not given" so that they do not overwrite what came before.
    common = argparse.ArgumentParser(add_help=False)
    connection_options(common, argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="corral",
        description="Talk to Corral: find, claim, work on and submit beads.",
        epilog="Environment: CORRAL_URL, CORRAL_TOKEN, CORRAL_SESSION.",
    )
    connection_options(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, func: Callable[[argparse.Namespace], None], help: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    p = command("ready", cmd_ready, "list ready beads, best first")
    p.add_argument("--repo", help="only this repository (slug)")
    p.add_argument("--limit", type=int, default=None, help="at most N beads")

    p = command("claim", cmd_claim, "claim a bead and clone its repository into a folder")
    p.add_argument("--repo", help="claim only from this repository (slug)")
    p.add_argument("--bead", help="claim this bead")
    p.add_argument("--dir", help="the folder to clone into (default ./<bead id>)")

    p = command("show", cmd_show, "show a bead")
    p.add_argument("id", help="the bead's id")

    command("heartbeat", cmd_heartbeat, "extend the session's lease")

    p = command("log", cmd_log, "append to the session's live log")
    p.add_argument("text", help="the text, or - to read it from stdin")

    p = command("submit", cmd_submit, "submit the folder's changes against the base")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--summary", help="the handoff (default: .agents/handoff.md)")
    group.add_argument("--summary-file", help="read the handoff from a file (- for stdin)")
    p.add_argument("--dir", help="the session folder (default: the current one)")

    p = command("release", cmd_release, "give the bead back")
    p.add_argument("--reason", required=True, help="why")

    p = command("comment", cmd_comment, "comment on the session's bead")
    p.add_argument("text", help="the comment, or - to read it from stdin")

    p = command("new", cmd_new, "file a new bead")
    p.add_argument("title")
    p.add_argument("--repo", help="repository slug (default: the --discovered-from bead's)")
    p.add_argument("--discovered-from", metavar="ID", help="the bead whose work found this one")
    p.add_argument("--scope", nargs="+", action="extend", metavar="PATTERN", help="path globs")
    p.add_argument("--priority", type=int, choices=range(5), metavar="0-4", help="0 is highest")
    p.add_argument("--description", help="what and why")
    p.add_argument("--acceptance", help="acceptance criteria")
    p.add_argument("--type", help="task, bug, feature, epic or chore")

    p = command("inject", cmd_inject, "print the learnings for a bead or a search")
    p.add_argument("--bead", help="learnings for this bead (default: the session's)")
    p.add_argument("--repo", help="search this repository's learnings")
    p.add_argument("--q", help="search text")
    p.add_argument("--budget", type=int, default=None, help="at most N characters")

    p = command("learn", cmd_learn, "propose a learning, or mark one you were given")
    p.add_argument("title", nargs="?")
    p.add_argument("--body")
    p.add_argument("--helpful", type=int, metavar="ID", help="the learning helped")
    p.add_argument("--harmful", type=int, metavar="ID", help="the learning misled you")
    p.add_argument("--reason", help="why (with --helpful or --harmful)")
    p.add_argument("--tags", help="comma-separated")
    p.add_argument("--repo", help="repository slug (default: workspace-wide)")

    p = command("usage", cmd_usage, "report tokens the session used (adds to what it reported)")
    p.add_argument("--input", type=int, required=True, metavar="N", help="input tokens")
    p.add_argument("--output", type=int, required=True, metavar="M", help="output tokens")
    p.add_argument("--cache-read", type=int, default=0, metavar="N", help="cache-read tokens")
    p.add_argument("--cache-write", type=int, default=0, metavar="N", help="cache-write tokens")
    p.add_argument("--model", help="the model's name")

    command("mcp", cmd_mcp, "serve these commands as MCP tools over stdio")
    return parser


def fail(reason: object, code: int = 1) -> int:
    print(f"corral: {' '.join(str(reason).split())}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
        sys.stdout.flush()
    except CliError as e:
        return fail(e)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:  # `corral ready | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:  # never a traceback
        return fail(f"unexpected error: {type(e).__name__}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
