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
"""

import glob
import os
from pathlib import Path
from typing import NotRequired, TypedDict

PROMPT = "{prompt}"


class Preset(TypedDict):
    label: str
    command: list[str]
    home_files: NotRequired[list[str]]
    home_programs: NotRequired[list[str]]


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
    },
    "codex": {
        "label": "Codex CLI",
        # --json: JSONL events, with each turn's token usage that Corral records.
        "command": ["codex", "exec", "--full-auto", "--json", PROMPT],
        "home_files": ["~/.codex"],  # CODEX_HOME: config.toml, auth.json, sessions
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
        "command": ["{python}", "-m", "agents.demo_agent"],
    },
}

CHOICES = [(key, preset["label"]) for key, preset in PRESETS.items()]


def default_command(preset: str) -> list[str]:
    return list(PRESETS[preset]["command"])


def home_files(preset: str) -> tuple[Path, ...]:
    """The preset's CLI files in the Corral user's home that exist (read-write in a session)."""
    spec = PRESETS.get(preset)
    return in_home(spec.get("home_files", []) if spec else [])


def home_programs(preset: str) -> tuple[Path, ...]:
    """Where the preset's CLI is installed in the home, if it is (read-only in a session)."""
    spec = PRESETS.get(preset)
    return in_home(spec.get("home_programs", []) if spec else [])


def in_home(patterns: list[str]) -> tuple[Path, ...]:
    home = os.path.expanduser("~")
    found: list[Path] = []
    for pattern in patterns:
        if not pattern.startswith("~/"):
            continue  # only the home: never a path of Corral's own
        found += [Path(p) for p in sorted(glob.glob(os.path.join(home, pattern[2:])))]
    return tuple(found)
