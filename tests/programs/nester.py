"""An agent that leaves a folder Corral's git would take for another
repository: `src/vendored/.git` is a gitdir file naming argv[1] (a repository
outside the clone), or with `link` a symlink to it. It writes a file beside
it and one in scope, leaves a handoff, and exits 0."""

import os
import sys
from pathlib import Path

vendored = Path("src/vendored")
vendored.mkdir(parents=True, exist_ok=True)
if sys.argv[2:] == ["link"]:
    os.symlink(sys.argv[1], vendored / ".git")
else:
    (vendored / ".git").write_text(f"gitdir: {sys.argv[1]}\n")
(vendored / "lib.py").write_text("VENDORED = True\n")
Path("src/own.py").write_text("OWN = True\n")
Path(".agents/handoff.md").write_text("Wrote src/own.py.\n")
print("nested", flush=True)
