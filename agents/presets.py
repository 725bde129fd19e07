"""Argv templates for the agent CLIs Corral can run headless.

In each argv item `{prompt}` becomes the session's instruction, `{context}`
the path of its context.md, `{workdir}` its clone, `{bead}` the bead's id and
`{python}` Corral's own Python; each item stays one argv element, never a
shell. Each CLI runs headless on the prompt, may edit files, and does not
commit (Corral's lead makes the one commit per bead).

A session runs in the sandbox (workspace/sandbox.py), where the Corral user's
home is hidden. `home_files` are the CLI's own config, credentials and state
there (its documented locations), bound read-write so that it stays logged in;
`home_programs` are where its own installer puts it in the home, read-only.
Each is `~/`-relative; a `*` matches as in a shell. What is missing is skipped.

`rate_limits` are the CLI's own quota and HTTP 429 messages (regular
expressions, case-insensitive). agents/jobs/limit_reader.py tries them on the
error events of its JSON output (never on what a tool printed) and on its
plain lines; a match ends the session `paused` until the reset the message
names. A preset without them never pauses.

`conversation`, for a CLI that can resume its own conversation: `ids`, the
keys of its JSON output events (at the top, or under `msg` or `payload`) that
name the conversation; `resume`, the arguments that resume one (inserted just
before the `{prompt}` argument; `{conversation}` becomes its id);
`transcripts`, where the CLI keeps them (`**` any folders deep), looked for
before resuming, since a CLI exits with an error on an id it does not find;
`project`, for a CLI that looks only in the folder of its working directory
(`{project}`: that path with every character but a letter or digit made `-`),
where the transcript is copied.
"""

import glob
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any, NotRequired, TypedDict

PROMPT = "{prompt}"
CONVERSATION = "{conversation}"
# What a conversation id may be: it goes into an argv and a file name, and the
# agent's output it is read from is hostile.
CONVERSATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{7,99}")


class Conversation(TypedDict):
    ids: list[str]
    resume: list[str]
    transcripts: str
    project: NotRequired[str]


class Preset(TypedDict):
    label: str
    command: list[str]
    home_files: NotRequired[list[str]]
    home_programs: NotRequired[list[str]]
    rate_limits: NotRequired[list[str]]
    conversation: NotRequired[Conversation]


# Any CLI: an HTTP 429 (limit_reader reports a JSON event's 429 status in these words).
TOO_MANY_REQUESTS = r"\b429\b.*too many requests|too many requests|\bHTTP 429\b"

PRESETS: dict[str, Preset] = {
    "claude-code": {
        "label": "Claude Code",
        # stream-json: one JSON event a line, with the token usage Corral records.
        "command": [
            "claude",
            "-p",
            PROMPT,
            "--permission-mode",
            "acceptEdits",
            "--verbose",
            "--output-format",
            "stream-json",
        ],
        # Settings, credentials and sessions; ~/.claude.json: account and MCP state.
        "home_files": ["~/.claude", "~/.claude.json"],
        # The native installer: a launcher in ~/.local/bin, its versions in ~/.local/share.
        "home_programs": ["~/.local/bin/claude", "~/.local/share/claude"],
        "rate_limits": [
            # "Claude AI usage limit reached|1750000000", "Claude usage limit
            # reached. Your limit will reset at 3pm (Europe/Paris)."
            r"usage limit reached",
            r"\blimit reached\b.*\bresets?\b",  # "5-hour limit reached ∙ resets 3pm"
            r"you[’']ve hit your limit",  # "You've hit your limit · resets 3pm"
            # An assistant message's `"error": "rate_limit"`, the API's rate_limit_error.
            r"\brate[_ ]limit",
            TOO_MANY_REQUESTS,
        ],
        # Every stream-json event carries "session_id"; `--resume` looks only
        # under the project folder of its working directory.
        "conversation": {
            "ids": ["session_id"],
            "resume": ["--resume", CONVERSATION],
            "transcripts": "~/.claude/projects/*/{conversation}.jsonl",
            "project": "~/.claude/projects/{project}",
        },
    },
    "codex": {
        "label": "Codex CLI",
        # --json: JSONL events, with each turn's token usage that Corral records.
        "command": ["codex", "exec", "--full-auto", "--json", PROMPT],
        "home_files": ["~/.codex"],  # CODEX_HOME: config.toml, auth.json, sessions
        "rate_limits": [
            # "You've hit your usage limit. Upgrade to Pro (…) or try again in 2h 5m."
            r"you[’']ve hit your usage limit",
            r"\busage_limit_reached\b",
            r"\brate_limit_exceeded\b",
            r"\brate limit reached\b",  # "Rate limit reached for gpt-5 … try again in 2.5s"
            TOO_MANY_REQUESTS,
        ],
        # `thread.started` names the thread ("thread_id"); older versions said
        # "session_id" in `session_configured`. `codex exec resume <id> <prompt>`.
        "conversation": {
            "ids": ["thread_id", "session_id"],
            "resume": ["resume", CONVERSATION],
            "transcripts": "~/.codex/sessions/**/rollout-*{conversation}.jsonl",
        },
    },
    "aider": {
        "label": "Aider",
        "command": [
            "aider",
            "--yes-always",
            "--no-auto-commits",
            "--no-stream",
            "--no-pretty",
            "--message",
            PROMPT,
        ],
        # ~/.aider.conf.yml, ~/.aider.model.settings.yml, ~/.aider/ (caches).
        # Not ~/.env, which aider also reads: it may hold anything; use the agent's env.
        "home_files": ["~/.aider*"],
    },
    "gemini": {
        "label": "Gemini CLI",
        "command": ["gemini", "--yolo", "-p", PROMPT],
        "home_files": ["~/.gemini"],  # settings.json, OAuth credentials
    },
    "opencode": {
        "label": "OpenCode",
        "command": ["opencode", "run", PROMPT],
        # Config; auth.json and data; state.
        "home_files": ["~/.config/opencode", "~/.local/share/opencode", "~/.local/state/opencode"],
        "home_programs": ["~/.opencode/bin"],  # its install script's default
    },
    "shell": {
        "label": "Shell command",
        "command": [],
    },
    "demo": {
        "label": "Demo agent (deterministic, no AI service)",
        "command": ["{python}", "-m", "corral_client.demo_agent"],
    },
}

CHOICES = [(key, preset["label"]) for key, preset in PRESETS.items()]


def default_command(preset: str) -> list[str]:
    return list(PRESETS[preset]["command"])


def rate_limits(preset: str) -> list[str]:
    """The preset CLI's quota and HTTP 429 messages (regular expressions)."""
    spec = PRESETS.get(preset)
    return list(spec.get("rate_limits", [])) if spec else []


def home_files(preset: str) -> tuple[Path, ...]:
    """The preset's CLI files in the Corral user's home that exist (read-write in a session)."""
    spec = PRESETS.get(preset)
    return in_home(spec.get("home_files", []) if spec else [])


def home_programs(preset: str) -> tuple[Path, ...]:
    """Where the preset's CLI is installed in the home, if it is (read-only in a session)."""
    spec = PRESETS.get(preset)
    return in_home(spec.get("home_programs", []) if spec else [])


def in_home(patterns: list[str], existing: bool = True) -> tuple[Path, ...]:
    """The paths in the home the `~/` patterns name: those that exist (a `*`
    matching as in a shell), or, with existing=False, the paths as named."""
    home = os.path.expanduser("~")
    found: list[Path] = []
    for pattern in patterns:
        if not pattern.startswith("~/"):
            continue  # only the home: never a path of Corral's own
        if not existing:
            found.append(Path(home, pattern[2:]))
            continue
        found += [Path(p) for p in sorted(glob.glob(os.path.join(home, pattern[2:])))]
    return tuple(found)


# Resuming a CLI's own conversation.


def conversation(preset: str) -> Conversation | None:
    """How the preset's CLI resumes its conversation, if it can."""
    spec = PRESETS.get(preset)
    return spec.get("conversation") if spec else None


def conversation_in(preset: str, event: Any) -> str | None:
    """The conversation id an output event of the preset's CLI names, if any."""
    spec = conversation(preset)
    if spec is None or not isinstance(event, dict):
        return None
    for where in (event, event.get("msg"), event.get("payload")):
        if not isinstance(where, dict):
            continue
        for key in spec["ids"]:
            value = where.get(key)
            if isinstance(value, str) and CONVERSATION_ID.fullmatch(value):
                return value
    return None


def resume_argv(preset: str, template: list[str], conversation_id: str) -> list[str] | None:
    """The argv template that resumes the conversation: the preset's resume
    arguments just before the `{prompt}` one. None when it cannot (no such
    preset, a bad id, or no `{prompt}` argument to place them by)."""
    spec = conversation(preset)
    if spec is None or not CONVERSATION_ID.fullmatch(conversation_id) or PROMPT not in template:
        return None
    at = template.index(PROMPT)
    args = [arg.replace(CONVERSATION, conversation_id) for arg in spec["resume"]]
    return [*template[:at], *args, *template[at:]]


def carry_transcript(preset: str, conversation_id: str, workdir: Path) -> bool:
    """Whether the CLI will find the conversation when run in `workdir`: its
    transcript is in the home (a regular file, reached through no symlink),
    and copied into the folder of `workdir` for a CLI that looks only there."""
    spec = conversation(preset)
    if spec is None or not CONVERSATION_ID.fullmatch(conversation_id):
        return False
    found = transcript(spec["transcripts"].replace(CONVERSATION, conversation_id))
    if found is None:
        return False
    if "project" not in spec:
        return True
    project = re.sub(r"[^A-Za-z0-9]", "-", str(workdir.resolve()))
    folder = in_home([spec["project"].replace("{project}", project)], existing=False)
    if not folder:
        return False
    target = folder[0] / found.name
    if target == found:
        return True
    try:
        folder[0].mkdir(parents=True, exist_ok=True)
        copy_regular(found, target)
    except OSError:
        return False
    return True


def transcript(pattern: str) -> Path | None:
    """The newest regular file the `~/` pattern matches, reached through no
    symlink (the CLI's folder is writable by every agent's sandbox)."""
    home = Path(os.path.expanduser("~")).resolve()
    if not pattern.startswith("~/"):
        return None
    matches = glob.glob(str(home / pattern[2:]), recursive=True)
    plain = [Path(m) for m in matches if Path(m).resolve() == Path(m) and is_regular(Path(m))]
    return max(plain, key=lambda p: p.lstat().st_mtime, default=None)


def is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def copy_regular(source: Path, target: Path) -> None:
    """Copy a regular file without following a symlink at either end."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    src = os.open(source, flags)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise OSError(f"{source} is not a regular file")
        target.unlink(missing_ok=True)
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(src, "rb", closefd=False) as reader, os.fdopen(dst, "wb") as writer:
            shutil.copyfileobj(reader, writer)
    finally:
        os.close(src)
