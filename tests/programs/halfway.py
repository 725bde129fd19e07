"""An agent that does its bead in two sittings, as one that runs out of time does.

The first sitting (no src/part_one.py in its clone) writes part one, leaves
a handoff, with --stray writes a file outside any `src/**` scope a second
later (after the watchdog's first look), and thinks past its time limit. A
later sitting finds part one in its clone (the salvage carried into it),
says what it was offered, writes part two and finishes.
"""

import sys
import time
from pathlib import Path

part_one = Path("src/part_one.py")
if not part_one.exists():
    part_one.parent.mkdir(exist_ok=True)
    part_one.write_text("ONE = 1\n")
    Path(".agents/handoff.md").write_text("Wrote part one. Part two is left.\n")
    if "--stray" in sys.argv:
        time.sleep(1)
        Path("stray.txt").write_text("not mine to write\n")
    print("part one written; thinking…", flush=True)
    time.sleep(3600)
offered = Path(".agents/salvage.patch")
if offered.is_file():
    print("offered a salvage patch:", offered.read_text().splitlines()[0], flush=True)
print(f"part one holds {part_one.read_text().strip()!r}", flush=True)
Path("src/part_two.py").write_text("TWO = 2\n")
Path(".agents/handoff.md").write_text("Wrote part two: the bead is done.\n")
print("part two written", flush=True)
