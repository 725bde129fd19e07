"""An agent that sets traps for Corral in its clone's .git: an fsmonitor, hooks
and a clean filter, each a script that writes the marker file (argv[1]) with
the environment it ran in. Then it does its work: one file in scope."""

import os
import stat
import subprocess
import sys
from pathlib import Path

marker = Path(sys.argv[1])
trap = Path(".git", "trap.sh").resolve()
trap.write_text(f"#!/bin/sh\nenv >> '{marker}'\necho \"$0 $*\" >> '{marker}'\ncat\n")
trap.chmod(trap.stat().st_mode | stat.S_IXUSR)


def config(key, value):
    subprocess.run(["git", "config", key, value], check=True)


config("core.fsmonitor", str(trap))
config("filter.trap.clean", str(trap))
config("filter.trap.required", "true")
hooks = Path(".git", "hooks")
hooks.mkdir(exist_ok=True)
for name in ["post-index-change", "pre-commit", "post-checkout", "reference-transaction"]:
    hook = hooks / name
    hook.write_text(trap.read_text())
    hook.chmod(0o755)
Path(".gitattributes").write_text("* filter=trap\n")
Path("src").mkdir(exist_ok=True)
Path("src/configured.py").write_text("CONFIGURED = True\n")
print(f"traps set in {os.getcwd()}/.git", flush=True)
