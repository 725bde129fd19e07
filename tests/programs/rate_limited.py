"""An agent whose CLI hits its rate limit: it writes part of the work, then
says so as its CLI would, and exits with 1 (or, with --hang, waits to be stopped).

    rate_limited.py claude|claude-json|codex|codex-json [SECONDS] [--hang]

claude: Claude Code's "Claude AI usage limit reached|<epoch>" line; claude-json:
the same in its stream-json (an assistant message with `"error": "rate_limit"`,
then a `result` with `is_error`); codex: Codex's "You've hit your usage limit…
try again in …" line; codex-json: the same as `codex exec --json` events.
SECONDS: when the limit resets, from now (default 120).
"""

import json
import sys
import time
from pathlib import Path

args = [a for a in sys.argv[1:] if a != "--hang"]
form = args[0]
seconds = int(args[1]) if len(args) > 1 else 120
reset = int(time.time()) + seconds

Path("src").mkdir(exist_ok=True)
Path("src/partial.py").write_text("PARTIAL = 1\n")
Path(".agents/handoff.md").write_text("Wrote src/partial.py; the rest is left.\n")

claude = f"Claude AI usage limit reached|{reset}"
codex = (
    "You've hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro), or "
    f"try again in {seconds // 60}m {seconds % 60}s."
)
if form == "claude":
    lines = [claude]
elif form == "claude-json":
    message = {"id": "msg_1", "role": "assistant", "content": [{"type": "text", "text": claude}]}
    lines = [
        json.dumps({"type": "system", "subtype": "init", "model": "claude-sonnet-4-5"}),
        json.dumps({"type": "assistant", "message": message, "error": "rate_limit"}),
        json.dumps({"type": "result", "subtype": "success", "is_error": True, "result": claude}),
    ]
elif form == "codex":
    lines = [f"ERROR: {codex}"]
elif form == "codex-json":
    lines = [
        json.dumps({"type": "thread.started", "thread_id": "0199a213"}),
        json.dumps({"type": "turn.started"}),
        json.dumps({"type": "error", "message": codex}),
        json.dumps({"type": "turn.failed", "error": {"message": codex}}),
    ]
else:
    sys.exit(f"unknown form {form!r}")
for line in lines:
    print(line, flush=True)
if "--hang" in sys.argv:
    time.sleep(120)  # a CLI that waits for its limit to reset: the runner stops it
sys.exit(1)
