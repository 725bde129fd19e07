"""An agent that thinks silently for a while (its first argument, seconds) but
sends Corral a heartbeat every half second, as `corral heartbeat` would; then
writes src/thought.py."""

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

url = f"{os.environ['CORRAL_URL']}/api/v1/sessions/{os.environ['CORRAL_SESSION']}/heartbeat"
request = urllib.request.Request(
    url, method="POST", data=b"", headers={"Authorization": f"Bearer {os.environ['CORRAL_TOKEN']}"}
)
print("thinking quietly", flush=True)
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    with urllib.request.urlopen(request, timeout=10) as answer:
        json.load(answer)
    time.sleep(0.5)
Path("src").mkdir(exist_ok=True)
Path("src/thought.py").write_text("THOUGHT = 1\n")
