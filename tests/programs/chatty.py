"""An agent that talks: N numbered lines, a pause between each, then writes a file."""

import sys
import time
from pathlib import Path

count, pause = int(sys.argv[1]), float(sys.argv[2])
for n in range(count):
    print(f"line {n} " + "x" * 40, flush=True)
    time.sleep(pause)
Path("src").mkdir(exist_ok=True)
Path("src/chatty.txt").write_text(f"{count} lines\n")
