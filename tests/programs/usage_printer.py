"""An agent that prints a recorded CLI output (its first argument, a file of JSON
lines) as it works, then writes each further `path=content` argument."""

import sys
import time
from pathlib import Path

for line in Path(sys.argv[1]).read_text().splitlines():
    print(line, flush=True)
    time.sleep(0.01)
for arg in sys.argv[2:]:
    path, _, content = arg.partition("=")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(content + "\n")
