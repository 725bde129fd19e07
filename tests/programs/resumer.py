"""A stand-in for Claude Code's conversations: it names its conversation in a
stream-json init event and keeps a transcript where Claude Code does
(~/.claude/projects/<its working folder, every non-alphanumeric made ->/<id>.jsonl).
Without --resume it writes part one and thinks past its time limit; with
--resume ID it says whether that transcript is where it looks, and finishes.
"""

import json
import os
import re
import sys
import time
import uuid
from pathlib import Path

project = re.sub(r"[^A-Za-z0-9]", "-", os.getcwd())
folder = Path(os.environ["HOME"], ".claude", "projects", project)
args = sys.argv[1:]
print(f"argv: {json.dumps(args)}", flush=True)
if "--resume" in args:
    conversation = args[args.index("--resume") + 1]
    found = (folder / f"{conversation}.jsonl").is_file()
    print(f"resuming {conversation}: transcript {'found' if found else 'missing'}", flush=True)
    Path("src/part_two.py").write_text("TWO = 2\n")
    sys.exit(0)
conversation = str(uuid.uuid4())
print(json.dumps({"type": "system", "subtype": "init", "session_id": conversation}), flush=True)
folder.mkdir(parents=True, exist_ok=True)
(folder / f"{conversation}.jsonl").write_text(json.dumps({"cwd": os.getcwd()}) + "\n")
Path("src").mkdir(exist_ok=True)
Path("src/part_one.py").write_text("ONE = 1\n")
time.sleep(3600)
