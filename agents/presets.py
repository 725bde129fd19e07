"""Argv templates for the agent CLIs Corral can run headless.

In each argv item `{prompt}` becomes the session's instruction, `{context}`
the path of its context.md, `{workdir}` its clone, `{bead}` the bead's id and
`{python}` Corral's own Python; each item stays one argv element, never a
shell. Each CLI runs headless on the prompt, may edit files, and does not
commit (Corral's lead makes the one commit per bead).
"""

from typing import TypedDict

PROMPT = "{prompt}"


class Preset(TypedDict):
    label: str
    command: list[str]


PRESETS: dict[str, Preset] = {
    "claude-code": {
        "label": "Claude Code",
        "command": ["claude", "-p", PROMPT, "--permission-mode", "acceptEdits", "--verbose"],
    },
    "codex": {
        "label": "Codex CLI",
        "command": ["codex", "exec", "--full-auto", PROMPT],
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
    },
    "gemini": {
        "label": "Gemini CLI",
        "command": ["gemini", "--yolo", "-p", PROMPT],
    },
    "opencode": {
        "label": "OpenCode",
        "command": ["opencode", "run", PROMPT],
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
