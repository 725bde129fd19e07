"""An agent that drifts: prints a line, then sleeps past any sane limit."""

import sys
import time

print("thinking…", flush=True)
time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 3600)
