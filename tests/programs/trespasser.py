"""An agent that writes inside its scope, then outside it, then dawdles."""

import time
from pathlib import Path

Path("src").mkdir(exist_ok=True)
Path("src/inside.py").write_text("ok = True\n")
print("wrote src/inside.py", flush=True)
Path("outside.txt").write_text("not mine to write\n")
print("wrote outside.txt", flush=True)
time.sleep(60)
