"""`corral`: the command-line client agents and people's scripts use to talk
to Corral's API.

Standard library only and nothing from the project, so that it starts fast and
runs anywhere an agent does. It reads CORRAL_URL, CORRAL_TOKEN and
CORRAL_SESSION (the flags --url, --token and --session override them), prints
readable text or, with --json, the API's JSON, and on any failure exits 1 with
one line on stderr: `corral: <reason>`.

With an agent's token:

    corral ready                         what could be worked on
    corral claim                         claim one, clone it into ./<bead id>
    corral heartbeat / log TEXT          keep the lease, report progress
    corral submit --summary "..."        hand the folder's changes to the lead
    corral mcp                           the same as MCP tools, over stdio

With a person's token (made on the dashboard's account page), as that person:

    corral bead new|edit|close           file, edit, close beads
    corral plan new|activate             start a plan, activate it
    corral review list|approve|reject    the submissions awaiting review
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
BUSY_TRIES = 8  # 503 (SQLite's write lock busy): tries before giving up
BUSY_LONGEST_WAIT = 30.0  # seconds, whatever Retry-After says
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
        for attempt in range(1, BUSY_TRIES + 1):
            req = request.Request(full, data=data, headers=headers, method=method)
            try:
                with request.urlopen(req, timeout=TIMEOUT_SECONDS) as response:
                    return decode(response.read(), response.status, full)
            except error.HTTPError as e:
                if e.code == 503 and attempt < BUSY_TRIES:
                    e.read()
                    wait_busy(e.headers.get("Retry-After"), attempt)
                    continue
                raise CliError(refusal(e.code, e.reason, e.read(), full)) from None
            except error.URLError as e:
                raise CliError(f"cannot reach {self.url}: {why(e.reason)}") from None
            except OSError as e:  # a reset or a timeout while reading the answer
                raise CliError(f"cannot reach {self.url}: {why(e)}") from None
        raise AssertionError("unreachable: the last try returns or raises")

    def claim(self, repo: str | None = None, bead: str | None = None) -> Any:
        """Claim a bead, then fetch its context pack (the claim alone is one
        statement on the server; the pack is built by the second call)."""
        claimed = self.request(
            "POST", "claim", {"repo": repo, "bead": bead}, query={"context": "later"}
        )
        if claimed.get("context") is None:
            pack = self.request("GET", f"sessions/{claimed['session']}/context")
            claimed["context"] = pack["context"]
        return claimed


def wait_busy(retry_after: str | None, attempt: int) -> None:
    """Wait before trying again after a 503: what Retry-After asks (seconds), else
    a growing wait, with jitter so that the clients told to wait do not all
    come back at once (the server serves whoever asks first)."""
    import random
    import time

    try:
        asked = float(retry_after) if retry_after else 0.5 * attempt
    except ValueError:
        asked = 0.5 * attempt
    time.sleep(min(BUSY_LONGEST_WAIT, max(0.0, asked)) * random.uniform(0.5, 1.5))


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
    """The nearest .agents/session.json at or above `start`, or None (a link
    there is found, and then refused by read_session_file)."""
    here = Path(start).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / AGENTS_DIR / "session.json"
        if os.path.lexists(candidate):
            return candidate
    return None


def read_session_file(path: str | Path) -> Any:
    """`<top>/.agents/session.json`, read as a plain file inside `<top>`."""
    path = Path(path)
    text = read_agents_file(path.parent.parent, path.name)
    if text is None:
        raise CliError(f"cannot read {path}: no such file")
    try:
        return json.loads(text)
    except ValueError as e:
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
    session = {
        "session": claimed["session"],
        "base_sha": claimed["base_sha"],
        "url": url,
        "bead": claimed["bead"]["id"],
    }
    with AgentsDir(folder, create=True) as agents:
        agents.check_plain()  # what the repository put there: no links, only files
        agents.write("context.md", claimed["context"])
        agents.write("bead.json", json.dumps(claimed["bead"], indent=2) + "\n")
        agents.write("session.json", json.dumps(session, indent=2) + "\n")
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
    for name, text in agents_learnings(top):
        text = text.strip()
        if text:
            first, _, rest = text.partition("\n")
            title = first.lstrip("# ").strip()[:200] or name.removesuffix(".md")
            found.append({"title": title, "body": rest.strip() or first})
    return found


# --- .agents/ as plain files inside the folder -----------------------------------------------
# A repository can carry .agents/: a link there to a file of the agent's machine
# (~/.bashrc, a key) would have the context pack written over it, or the file
# read into a submission. Each step below the folder is opened without following
# a link (O_NOFOLLOW), a file is written only as a new one (O_CREAT | O_EXCL,
# after the old one is unlinked) and read only when it is a regular file, and
# anything else there is refused in one line.

NO_LINK = os.O_NOFOLLOW | os.O_CLOEXEC
FOLDER = os.O_RDONLY | os.O_DIRECTORY | NO_LINK
MAX_AGENTS_FILE_BYTES = 1_000_000


def not_plain(path: Path, wanted: str = "file") -> CliError:
    """The refusal of `path`: a symlink, or not a regular `wanted` (file or folder)."""
    what = "a symlink" if os.path.islink(path) else f"not a regular {wanted}"
    return CliError(f"{path} is {what}: corral uses .agents/ only as plain files in the folder")


class AgentsDir:
    """`<top>/.agents`, opened without following a link: `with AgentsDir(top) as d`.
    `d.fd` is None when there is none (and `create` was not asked)."""

    def __init__(self, top: Path, create: bool = False) -> None:
        self.path = top / AGENTS_DIR
        self.fd: int | None = None
        top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if create:
                try:
                    os.mkdir(AGENTS_DIR, dir_fd=top_fd)
                except FileExistsError:
                    pass
            try:
                self.fd = os.open(AGENTS_DIR, FOLDER, dir_fd=top_fd)
            except FileNotFoundError:
                pass
            except OSError:  # a link (ELOOP), a file (ENOTDIR)
                raise not_plain(self.path, "folder") from None
        finally:
            os.close(top_fd)

    def __enter__(self) -> AgentsDir:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)

    def check_plain(self, fd: int | None = None, path: Path | None = None) -> None:
        """Every entry below is a regular file or a folder (no link, no FIFO…)."""
        import stat

        fd, path = (self.fd, self.path) if fd is None else (fd, path)
        assert fd is not None and path is not None
        for name in os.listdir(fd):
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                sub = os.open(name, FOLDER, dir_fd=fd)
                try:
                    self.check_plain(sub, path / name)
                finally:
                    os.close(sub)
            elif not stat.S_ISREG(mode):
                raise not_plain(path / name)

    def write(self, name: str, text: str) -> None:
        """`name` written afresh as a regular file (whatever was there, unlinked)."""
        assert self.fd is not None
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise not_plain(self.path / name) from None
        try:
            fd = os.open(
                name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NO_LINK, 0o644, dir_fd=self.fd
            )
        except OSError:  # something made it meanwhile
            raise not_plain(self.path / name) from None
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)

    def read(self, *parts: str) -> str | None:
        """The text of the regular file `parts` below, or None if there is none."""
        import stat

        if self.fd is None:
            return None
        fds: list[int] = []
        try:
            at = self.fd
            for n, part in enumerate(parts):
                last = n == len(parts) - 1
                flags = os.O_RDONLY | os.O_NONBLOCK | NO_LINK if last else FOLDER
                try:
                    at = os.open(part, flags, dir_fd=at)
                except FileNotFoundError:
                    return None
                except OSError:  # a link (ELOOP), a file where a folder should be
                    raise not_plain(self.path.joinpath(*parts[: n + 1])) from None
                fds.append(at)
            if not stat.S_ISREG(os.fstat(at).st_mode):
                raise not_plain(self.path.joinpath(*parts))
            data = os.read(at, MAX_AGENTS_FILE_BYTES + 1)
        finally:
            for fd in fds:
                os.close(fd)
        if len(data) > MAX_AGENTS_FILE_BYTES:
            raise CliError(f"{self.path.joinpath(*parts)} is over {MAX_AGENTS_FILE_BYTES} bytes")
        return data.decode("utf-8", errors="replace")

    def names(self, folder: str) -> list[str]:
        """The names in the folder `folder` in it, sorted ([] if there is none)."""
        if self.fd is None:
            return []
        try:
            fd = os.open(folder, FOLDER, dir_fd=self.fd)
        except FileNotFoundError:
            return []
        except OSError:
            raise not_plain(self.path / folder, "folder") from None
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)


def read_agents_file(top: Path, *parts: str) -> str | None:
    """`<top>/.agents/<parts…>` as text if it is a regular file there, None if absent."""
    with AgentsDir(top) as agents:
        return agents.read(*parts)


def agents_learnings(top: Path) -> list[tuple[str, str]]:
    """(name, text) of each .agents/learnings/*.md, by name."""
    with AgentsDir(top) as agents:
        names = [name for name in agents.names("learnings") if name.endswith(".md")]
        return [(name, agents.read("learnings", name) or "") for name in names]


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
    lines += review_lines(bead.get("review_comments") or [])
    return "\n".join(lines)


def review_lines(comments: list[dict[str, Any]]) -> list[str]:
    """A reviewer's line comments, the changes the next attempt must make."""
    if not comments:
        return []
    lines = ["", "Review comments (changes requested):"]
    for c in comments:
        removed = " (a removed line)" if c.get("side") == "old" else ""
        lines.append(f"  {c['path']}:{c['line']}{removed}  {c['author']}: {c['text'].strip()}")
        if (c.get("line_text") or "").strip():
            lines.append(f"    the line: {c['line_text'].strip()}")
    return lines


# --- the subcommands ------------------------------------------------------------------------


def cmd_ready(args: argparse.Namespace) -> None:
    beads = client_of(args).request("GET", "ready", query={"repo": args.repo, "limit": args.limit})
    rows = [(b["id"], priority(b["priority"]), b["repo"], b["title"]) for b in beads]
    emit(args, beads, lambda _: table(rows) or "nothing is ready")


def cmd_claim(args: argparse.Namespace) -> None:
    client = client_of(args)
    if args.dir and Path(args.dir).exists() and any(Path(args.dir).iterdir()):
        raise CliError(f"{args.dir} already exists and is not empty")
    claimed = client.claim(args.repo, args.bead)
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
    if read_agents_file(top, "session.json") is None:
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
    return read_agents_file(top, "handoff.md") or ""


def cmd_release(args: argparse.Namespace) -> None:
    session = session_of(args)
    body = {"reason": args.reason}
    if args.rate_limited_until:
        body["rate_limited_until"] = args.rate_limited_until
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
    """Become the MCP server (corral_client/mcp_server.py): this module stays standard
    library only, and the token goes on in the environment, never in argv."""
    client = client_of(args)
    env = {**os.environ, "CORRAL_URL": client.url, "CORRAL_TOKEN": client.token}
    if args.session:
        env["CORRAL_SESSION"] = args.session
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "corral_client.mcp_server"], env)


# --- people's commands (a person's token) -------------------------------------------------


def given(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def cmd_bead_new(args: argparse.Namespace) -> None:
    body = given(
        title=args.title,
        repo=args.repo,
        description=args.description,
        design=args.design,
        acceptance_criteria=args.acceptance,
        notes=args.notes,
        priority=args.priority,
        issue_type=args.type,
        labels=args.label,
        scope=args.scope,
    )
    bead = client_of(args).request("POST", "beads", body)
    emit(args, bead, filed)


def cmd_bead_edit(args: argparse.Namespace) -> None:
    body = given(
        title=args.title,
        description=args.description,
        design=args.design,
        acceptance_criteria=args.acceptance,
        notes=args.notes,
        priority=args.priority,
        issue_type=args.type,
        labels=args.label,
        scope=args.scope,
        waits_for=args.waits_for,
        parent=args.parent,
        updated_at=args.updated_at,
    )
    if not set(body) - {"updated_at"}:
        raise CliError("nothing to change: give at least one field (see corral bead edit -h)")
    bead = client_of(args).request("PATCH", f"beads/{quote(args.id)}", body)
    emit(args, bead, lambda b: f"edited {b['id']} (version {b['updated_at']})")


def cmd_bead_close(args: argparse.Namespace) -> None:
    body = given(reason=args.reason)
    bead = client_of(args).request("POST", f"beads/{quote(args.id)}/close", body)
    emit(args, bead, lambda b: f"closed {b['id']}: {b['close_reason']}")


def cmd_plan_new(args: argparse.Namespace) -> None:
    if bool(args.beads) == bool(args.wave):
        raise CliError("give --beads (Corral proposes the waves) or --wave, once per wave")
    body = given(name=args.name, max_agents_per_wave=args.agents)
    body |= {"waves": args.wave} if args.wave else {"beads": args.beads}
    plan = client_of(args).request("POST", "plans", body)
    emit(args, plan, plan_text)


def plan_text(plan: dict[str, Any]) -> str:
    waves = plan["waves"]
    lines = [f"plan {plan['id']} ({plan['status']}): {plan['name']}, {len(waves)} wave(s)"]
    lines += [f"  wave {n}: {' '.join(wave)}" for n, wave in enumerate(waves, start=1)]
    return "\n".join(lines)


def cmd_plan_activate(args: argparse.Namespace) -> None:
    plan = client_of(args).request("POST", f"plans/{quote(args.id)}/activate")
    emit(args, plan, plan_text)


def cmd_review_list(args: argparse.Namespace) -> None:
    query = {"repo": args.repo, "limit": args.limit}
    waiting = client_of(args).request("GET", "reviews", query=query)
    rows = [(str(s["id"]), s["repo"], s["bead"], s["agent"], s["title"]) for s in waiting]
    emit(args, waiting, lambda _: table(rows) or "nothing awaits review")


def cmd_review_decide(args: argparse.Namespace) -> None:
    verb = args.decision
    path = f"reviews/{quote(args.id)}/{verb}"
    decided = client_of(args).request("POST", path, given(reason=args.reason))
    emit(args, decided, lambda d: f"{verb}d submission {d['id']} ({d['bead']}): {d['status']}")


def quote(part: object) -> str:
    from urllib.parse import quote as url_quote

    return url_quote(str(part), safe="")


# --- the command line -----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    def connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
        parser.add_argument("--url", default=default, help="Corral's URL ($CORRAL_URL)")
        parser.add_argument(
            "--token", default=default, help="an agent's or your API token ($CORRAL_TOKEN)"
        )
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
        description="Talk to Corral: find, claim, work on and submit beads (an agent's "
        "token); file, edit and close beads, plan and review (your own token).",
        epilog="Environment: CORRAL_URL, CORRAL_TOKEN, CORRAL_SESSION.",
    )
    connection_options(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        func: Callable[[argparse.Namespace], None],
        help: str,
        within: Any = sub,
    ) -> argparse.ArgumentParser:
        p = within.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=func)
        return p

    def command_group(name: str, help: str) -> Any:
        p = sub.add_parser(name, help=help, description=help)
        return p.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")

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
    p.add_argument(
        "--rate-limited-until",
        metavar="ISO",
        help="your rate limit resets then (ISO 8601): paused, no attempt counted",
    )

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
    people_commands(command, command_group)
    return parser


def people_commands(command: Callable[..., argparse.ArgumentParser], group: Any) -> None:
    """The commands a person's token runs: bead, plan, review."""

    def bead_fields(p: argparse.ArgumentParser) -> None:
        p.add_argument("--description", help="what and why")
        p.add_argument("--design", help="how")
        p.add_argument("--acceptance", help="acceptance criteria")
        p.add_argument("--notes")
        p.add_argument("--priority", type=int, choices=range(5), metavar="0-4", help="0 is highest")
        p.add_argument("--type", help="task, bug, feature, epic or chore")
        p.add_argument("--label", nargs="*", action="extend", metavar="LABEL", help="labels")
        p.add_argument("--scope", nargs="*", action="extend", metavar="PATTERN", help="path globs")

    beads = group("bead", "file, edit and close beads (your own token)")
    p = command("new", cmd_bead_new, "file a bead", beads)
    p.add_argument("title")
    p.add_argument("--repo", required=True, help="repository slug")
    bead_fields(p)

    p = command("edit", cmd_bead_edit, "change a bead's fields (those given)", beads)
    p.add_argument("id", help="the bead's id")
    p.add_argument("--title")
    bead_fields(p)
    p.add_argument("--waits-for", nargs="*", action="extend", metavar="ID", help="all its blockers")
    p.add_argument("--parent", metavar="ID", help='its epic ("" for none)')
    p.add_argument(
        "--updated-at",
        metavar="VERSION",
        help="the version you read (show --json's updated_at): refused if it changed since",
    )

    p = command("close", cmd_bead_close, "close a bead by hand", beads)
    p.add_argument("id", help="the bead's id")
    p.add_argument("--reason", help="why")

    plans = group("plan", "start and activate plans (your own token)")
    p = command("new", cmd_plan_new, "start a draft plan", plans)
    p.add_argument("name")
    p.add_argument(
        "--beads", nargs="+", action="extend", metavar="ID", help="Corral proposes waves"
    )
    p.add_argument("--wave", nargs="+", action="append", metavar="ID", help="one wave (repeat)")
    p.add_argument("--agents", type=int, metavar="N", help="agents per wave (default 4)")

    p = command("activate", cmd_plan_activate, "activate a draft plan", plans)
    p.add_argument("id", help="the plan's id")

    reviews = group("review", "the submissions awaiting review (your own token)")
    p = command("list", cmd_review_list, "list the submissions awaiting review", reviews)
    p.add_argument("--repo", help="only this repository (slug)")
    p.add_argument("--limit", type=int, default=None, help="at most N")
    for decision in ("approve", "reject"):
        p = command(decision, cmd_review_decide, f"{decision} a submission", reviews)
        p.add_argument("id", help="the submission's id")
        p.add_argument("--reason", help="why (a rejection's reason goes to the next session)")
        p.set_defaults(decision=decision)


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
