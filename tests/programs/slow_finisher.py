"""An agent that takes its time: writes its file, says so, sleeps the seconds
its first argument gives, then leaves a handoff and finishes cleanly."""

import sys
import time
from pathlib import Path

Path("src").mkdir(exist_ok=True)
Path("src/slow.py").write_text("SLOW = True\n")
print("working slowly", flush=True)
time.sleep(float(sys.argv[1]))
Path(".agents/handoff.md").write_text("Wrote src/slow.py, slowly.\n")
print("done", flush=True)
