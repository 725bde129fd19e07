"""A well-behaved agent: writes each `path=content` argument, leaves a handoff and a learning."""

import os
import sys
from pathlib import Path

for arg in sys.argv[1:]:
    path, _, content = arg.partition("=")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(content + "\n")
    print(f"wrote {path}", flush=True)
print(f"session {os.environ['CORRAL_SESSION']} bead {os.environ['CORRAL_BEAD']}", flush=True)
Path(".agents/handoff.md").write_text("Wrote the files I was asked to.\n")
Path(".agents/learnings/editing.md").write_text(
    "# Small edits land fast\n\nKeep each bead small.\n"
)
