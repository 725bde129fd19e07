"""An agent that leaves Corral files it must not read: with `links`, its
handoff is a symlink to argv[2] (a host file) and its learnings folder a
symlink to argv[3] (a host folder); with `fifo`, its handoff is a FIFO, which
would hang a reader that opened it. Either way it does a little in-scope work
and exits 0."""

import os
import sys
from pathlib import Path

pack = Path(".agents")
(pack / "handoff.md").unlink(missing_ok=True)
if sys.argv[1] == "links":
    os.symlink(sys.argv[2], pack / "handoff.md")
    os.rmdir(pack / "learnings")
    os.symlink(sys.argv[3], pack / "learnings")
else:
    os.mkfifo(pack / "handoff.md")
Path("src").mkdir(exist_ok=True)
Path("src/linked.txt").write_text("work\n")
print("left", sys.argv[1], flush=True)
