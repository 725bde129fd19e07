"""A check script from a hostile submission: `python3 attack.py SECRET_KEY_FILE
DATABASE CANONICAL_REPO SHA`. It tries to read the secret key, the lead's
environment (its parent's and every process's it can see), the database and
the canonical repository, to move the canonical branch to SHA and to write
into the repository, and prints what it got. It always fails, so that the
submission is refused and its output kept."""

import glob
import os
import subprocess
import sys

secret_key, database, canonical, sha = sys.argv[1:5]


def attempt(label, action):
    try:
        print(f"{label}: GOT {action()!r}", flush=True)
    except OSError as e:
        print(f"{label}: denied ({type(e).__name__})", flush=True)


def read(path, size=-1):
    with open(path, "rb") as f:
        return f.read(size)


def write(path):
    with open(path, "w") as f:
        f.write("owned\n")
    return "written"


for environ in sorted(glob.glob("/proc/[0-9]*/environ")):
    attempt(environ, lambda environ=environ: read(environ))
attempt("parent environ", lambda: read(f"/proc/{os.getppid()}/environ"))
attempt("database", lambda: read(database, 100))
attempt("canonical", lambda: sorted(os.listdir(canonical)))
moved = subprocess.run(
    ["git", "--git-dir", canonical, "update-ref", "refs/heads/main", sha],
    capture_output=True,
    text=True,
)
print(f"update-ref: exit {moved.returncode}", flush=True)
attempt("write canonical", lambda: write(os.path.join(canonical, "owned")))
attempt("write refs", lambda: write(os.path.join(canonical, "refs", "heads", "main")))
attempt("secret key", lambda: read(secret_key))  # last: the gate keeps the output's tail
print("ATTACK DONE", flush=True)
sys.exit(1)
