"""Clone over Corral's git over HTTP against `git clone` from the path.

Run from the repository root:

    .venv/bin/python bench/git_http.py [--mb 50] [--runs 3]

Makes a repository of about --mb MB of incompressible files over a few
commits, registers it in a temporary CORRAL_HOME (SQLite, or DATABASE_URL),
serves the project with gunicorn (2 sync workers) on a free local port, and
times, median of --runs, first as registered (loose objects), then after `git
repack -ad` (as `git gc` leaves a repository): `git clone PATH` (git's local
clone: hard links),
`git clone --no-local PATH` (a pack, as a transport makes one), and `git clone
http://…/git/<slug>.git` with an agent token. Goal: HTTP within 1.5x of the
clone from the path. Exits 1 if a clone does not give the same HEAD.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from base64 import b64encode
from pathlib import Path
from statistics import median

from common import Server, git, load, scratch_django, sizes
from figures import figure

GOAL = 1.5
HTTP = "git clone http://…/git/<slug>.git"


def make_repository(path: Path, megabytes: int) -> None:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    per_commit = max(1, megabytes // 5)
    for commit in range(5):
        for n in range(per_commit):
            (path / f"data-{commit}-{n}.bin").write_bytes(os.urandom(1024 * 1024))
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"data {commit}")


def timed_clone(argv: list[str], dest: Path) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(argv + [str(dest)], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=sizes(50, 10))
    parser.add_argument("--runs", type=int, default=sizes(3, 1))
    args = parser.parse_args()
    with scratch_django("bench-git-http-", "redis://127.0.0.1:6379/11") as scratch:
        return benchmark(args, scratch.home)


def benchmark(args, home: Path) -> int:
    from agents.models import Agent
    from workspace.models import Repository, Workspace

    make_repository(home / "source", args.mb)
    repo = Repository.register(str(home / "source"), Workspace.default(), name="big")
    agent = Agent(name="bench", internal=False)
    agent.save()
    size = sum(f.stat().st_size for f in repo.canonical_path.rglob("*") if f.is_file())
    server = Server(home, timeout=300)
    try:
        server.wait()
        basic = b64encode(f"agent:{agent.plain_token}".encode()).decode()
        header = ["-c", f"http.extraHeader=Authorization: Basic {basic}"]
        url = f"http://127.0.0.1:{server.port}/git/{repo.slug}.git"
        path = str(repo.canonical_path)
        ways = {
            "git clone PATH (hard links)": ["git", "clone", "-q", path],
            "git clone --no-local PATH (a pack)": ["git", "clone", "-q", "--no-local", path],
            HTTP: ["git", *header, "clone", "-q", url],
        }
        print(f"clone of a {size / 2**20:.1f} MB repository, median of {args.runs}; {load()}")
        head = git(path, "rev-parse", "main").strip()
        for state in ("as registered", "after git repack -ad"):
            if state.startswith("after"):
                git(path, "repack", "-adq")
            print(f" {state}" + (" (loose objects)" if state == "as registered" else ""))
            times = {}
            for name, argv in ways.items():
                runs = [timed_clone(argv, home / "clone") for _ in range(args.runs)]
                if git(home / "clone", "rev-parse", "HEAD").strip() != head:
                    print(f"  {name}: WRONG HEAD")
                    return 1
                times[name] = median(runs)
                print(f"  {name:<40} {times[name]:6.2f} s")
            for name in list(ways)[:2]:
                ratio = times[HTTP] / times[name]
                verdict = "within" if ratio <= GOAL else "NOT within"
                print(f"  HTTP / {name}: {ratio:.2f}x ({verdict} {GOAL}x)")
                figure(f"git_http: HTTP / {name.split(' (')[0]}, {args.mb} MB, {state}", ratio,
                       "x", f"<= {GOAL:g}", ratio <= GOAL)  # fmt: skip
        print(f"  {load()}")
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
