"""What `manage.py up` costs in memory and processes, with few and with many repositories.

Run from the repository root:

    .venv/bin/python bench/up.py [--repos 3,30] [--settle 8]

Registers the first count of repositories (one small git repository under many
names) in a scratch CORRAL_HOME with SQLite, runs `manage.py up --no-demo` with
its embedded Redis, and once everything it started has settled (the same
processes and a PSS that moved less than 2% for --settle seconds) reads every
process under `up` from /proc: the sum of PSS (`/proc/PID/smaps_rollup`, each
shared page split between the processes sharing it), the sum of RSS and the
process count. Then it stops `up`, registers repositories up to the next
count and measures again.

Goals: with 30 repositories the sum of PSS under 500 MB, and the same process
count as with 3. Exits 1 if `up` does not start.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from common import load, make_source, scratch_django, sizes
from figures import figure

from workspace import processes

ROOT = Path(__file__).resolve().parent.parent
GOAL_PSS_MB = 500
START_TIMEOUT_S = 180


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repos", default=sizes("3,30", "3,10"), help="repository counts, ascending"
    )
    parser.add_argument(
        "--settle", type=float, default=sizes(8.0, 3.0), help="seconds of no change"
    )
    args = parser.parse_args()
    args.counts = sorted(int(n) for n in args.repos.split(","))
    return args


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of():
    """{ppid: [pid, …]} for every live process, read from /proc."""
    tree = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, ppid = text.rpartition(")")[2].split()[:2]
        if state != "Z":
            tree.setdefault(int(ppid), []).append(int(stat.parent.name))
    return tree


def descendants(pid):
    tree, found, todo = children_of(), [], [pid]
    while todo:
        found.extend(kids := tree.get(todo.pop(), []))
        todo.extend(kids)
    return found


def memory_kb(pid):
    """(PSS, RSS) of a process in kB; zeros if it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    fields = dict(re.findall(r"^(\w+):\s+(\d+) kB", text, re.M))
    return int(fields.get("Pss", 0)), int(fields.get("Rss", 0))


def command_of(pid):
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    words = raw.decode(errors="replace").split("\0")
    # The argv after the interpreter and manage.py names the process best.
    shown = [w for w in words if w and not w.endswith(("python", "python3"))]
    return " ".join(shown)[:70]


def snapshot(up_pid):
    """Everything `up` started, up itself included: [(pid, pss kB, rss kB, command)]."""
    pids = [up_pid, *descendants(up_pid)]
    return [(pid, *memory_kb(pid), command_of(pid)) for pid in pids]


def settled(up_pid, settle_s):
    """The snapshot once the processes stay the same and PSS moves under 2% for settle_s."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        snap = snapshot(up_pid)
        pids, pss = {p for p, *_ in snap}, sum(s for _, s, *_ in snap)
        if last is None or pids != last[0] or abs(pss - last[1]) > 0.02 * last[1]:
            last, since = (pids, pss), time.monotonic()
        elif time.monotonic() - since >= settle_s:
            return snap
        time.sleep(1)
    return snapshot(up_pid)


def run_up(home, settle_s):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(
        CORRAL_HOME=str(home),
        CORRAL_ADMIN_USER="bench",
        CORRAL_ADMIN_PASSWORD="a long bench password 42",
        PYTHONUNBUFFERED="1",
    )
    log_path = home / "up.log"
    argv = [sys.executable, "manage.py", "up", "--no-demo", "--port", str(free_port())]
    with open(log_path, "w") as log:
        proc = processes.spawn(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Corral is running" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"up did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        return settled(proc.pid, settle_s)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def register(source, have, want):
    from workspace.models import Repository, Workspace

    for n in range(have, want):
        Repository.register(str(source), Workspace.default(), name=f"repo{n:03}")


def print_snapshot(count, snap):
    print(f"\n== {count} repositories: {len(snap)} processes ==")
    print(f"{'pid':>8}{'PSS MB':>9}{'RSS MB':>9}  command")
    for pid, pss, rss, command in sorted(snap, key=lambda row: -row[1]):
        print(f"{pid:>8}{pss / 1024:>9.1f}{rss / 1024:>9.1f}  {command}")
    pss, rss = sum(row[1] for row in snap) / 1024, sum(row[2] for row in snap) / 1024
    print(f"{'sum':>8}{pss:>9.1f}{rss:>9.1f}")
    return pss, rss


def main():
    args = parse_args()
    # SQLite in the scratch home, whatever DATABASE_URL says: `up` is started
    # without it (and with its own Redis), so the repositories must be there.
    os.environ.pop("DATABASE_URL", None)
    with scratch_django("bench-up-", "redis://127.0.0.1:6379/15") as scratch:
        benchmark(args, scratch.home)


def benchmark(args, home):
    source = make_source(home / "source")
    print(f"CORRAL_HOME {home}, {os.cpu_count()} CPUs, {load()}")
    results, have = {}, 0
    for count in args.counts:
        register(source, have, count)
        have = count
        results[count] = print_snapshot(count, snap := run_up(home, args.settle)), len(snap)
    print(f"\n== summary ({load()}) ==")
    for count, ((pss, rss), procs) in results.items():
        print(
            f"{count:>4} repositories: {procs:>3} processes, PSS {pss:7.1f} MB, RSS {rss:7.1f} MB"
        )
    (most_pss, _), most_procs = results[args.counts[-1]]
    _, fewest_procs = results[args.counts[0]]
    figure(
        f"up: PSS with {args.counts[-1]} repos", most_pss, "MB", f"< {GOAL_PSS_MB}",
        most_pss < GOAL_PSS_MB,
    )  # fmt: skip
    figure(
        f"up: processes with {args.counts[-1]} repos (vs {args.counts[0]})",
        most_procs, "", f"= {fewest_procs}", most_procs == fewest_procs,
    )  # fmt: skip


if __name__ == "__main__":
    main()
