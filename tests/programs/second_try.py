"""An agent that hangs on its first attempt and succeeds once its context
says an earlier attempt failed (as after its worker was killed)."""

import os
import time
from pathlib import Path

context = Path(os.environ["CORRAL_CONTEXT"]).read_text()
if "Why the last attempt failed" not in context:
    print("first attempt: hanging", flush=True)
    time.sleep(3600)
Path("src").mkdir(exist_ok=True)
Path("src/second.txt").write_text("landed on a later attempt\n")
print("later attempt: done", flush=True)
