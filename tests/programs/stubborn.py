"""An agent that ignores SIGTERM and leaves a child that ignores it too."""

import signal
import subprocess
import sys
import time
from pathlib import Path

signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(
    [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)",
    ]
)
Path(".agents/pids").write_text(f"{child.pid}\n")
print(f"child {child.pid}; ignoring SIGTERM", flush=True)
while True:
    time.sleep(1)
