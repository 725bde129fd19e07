"""An agent that spends tokens: writes a file, prints a recorded CLI output (its
first argument, JSON lines), then keeps thinking for the seconds given."""

import sys
import time
from pathlib import Path

Path("src").mkdir(exist_ok=True)
Path("src/partial.py").write_text("PARTIAL = True\n")
for line in Path(sys.argv[1]).read_text().splitlines():
    print(line, flush=True)
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 60)
