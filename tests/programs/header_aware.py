"""An agent that writes each `path=content` argument, and heads each module with
the licence line only when its context pack says the repository wants it."""

import os
import re
import sys
from pathlib import Path

context = Path(os.environ["CORRAL_CONTEXT"]).read_text()
known = re.search(r"start with the line '([^']+)'", context)
for arg in sys.argv[1:]:
    path, _, content = arg.partition("=")
    text = content + "\n"
    if known:
        text = known.group(1) + "\n" + text
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    print(f"wrote {path}" + (" with the header the context asked for" if known else ""), flush=True)
