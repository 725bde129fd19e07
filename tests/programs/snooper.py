"""An agent that tries to read what it must not: each argument is a file to
read or a folder to list (#0, #1…). It prints what it got, or that it was denied, then
every /proc/*/environ it can read, and gives up (so nothing is submitted)."""

import glob
import os
import sys


def attempt(label, action):
    try:
        print(f"{label}: GOT {action()!r}", flush=True)
    except OSError as e:
        print(f"{label}: denied ({type(e).__name__})", flush=True)


# Labelled by position, so that no path given shows in the output.
for n, path in enumerate(sys.argv[1:]):
    if os.path.isdir(path):
        attempt(f"list #{n}", lambda path=path: sorted(os.listdir(path)))
    else:
        attempt(f"read #{n}", lambda path=path: open(path, "rb").read(200))
for environ in sorted(glob.glob("/proc/[0-9]*/environ")):
    attempt(environ, lambda environ=environ: open(environ, "rb").read())
print("SNOOPED", flush=True)
sys.exit(1)
