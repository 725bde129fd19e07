"""Argv templates for the agent CLIs Corral can run headless.

`{prompt}` is replaced by the session's instruction and `{context}` by the
path of the context pack; each item stays one argv element, never a shell.
"""

PROMPT = "{prompt}"

PRESETS = {
    "claude-code": {
        "label": "Claude Code",
        "command": ["claude", "-p", PROMPT, "--permission-mode", "acceptEdits"],
    },
    "codex": {
        "label": "Codex CLI",
        "command": ["codex", "exec", "--full-auto", PROMPT],
    },
    "aider": {
        "label": "Aider",
        "command": ["aider", "--yes-always", "--no-auto-commits", "--message", PROMPT],
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
        "command": ["python", "-m", "agents.demo_agent", "{context}"],
    },
}

CHOICES = [(key, preset["label"]) for key, preset in PRESETS.items()]


def default_command(preset):
    return list(PRESETS[preset]["command"])
