"""What landing together costs: a change set against the same beads landed apart.

Run from the repository root:

    .venv/bin/python bench/changesets.py [--rounds 20] [--wide 5]

PostgreSQL when DATABASE_URL is set, else SQLite in a temporary CORRAL_HOME;
the Redis at REDIS_URL (default redis://127.0.0.1:6379/13), whose database is
emptied at the start and at the end. The lead queues are worked in this
process (rq's SimpleWorker, burst), so the figures are the lead's own work:
hand-in, gates, hold, integration gate, locks, journal and commits.

Each round, timed from the first hand-in to the last commit:
1. apart: one bead in each of two repositories, landed as single beads;
2. together: the same two as a change set, with the integration command `true`
   (run in the sandbox, like a check), and again with no integration command
   (what the sandbox and the scratch checkouts cost);
3. wide: a change set over --wide repositories.
Prints the median and mean milliseconds of each, and the overhead of (2) over
(1). Exits non-zero unless every round landed every bead.
"""

import argparse
import statistics
import sys
import time

import common
from common import database_vendor, load, scratch_django, sizes
from figures import figure

from agents.moves import lifecycle

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
INTEGRATION = ["true"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=sizes(20, 3), help="landings of each kind")
    parser.add_argument("--wide", type=int, default=5, help="repositories in the wide change set")
    return parser.parse_args()


def work(repos):
    from rq import SimpleWorker

    from agents import queues

    worker = SimpleWorker([queues.lead_queue(r) for r in repos], connection=queues.connection())
    worker.work(burst=True, logging_level="WARNING")


def hand_in(bead, agent, n):
    """A running session on the bead hands in a patch adding one new file."""
    from agents.models import Session

    repo = bead.repository
    base = common.git(repo.canonical_path, "rev-parse", repo.branch).strip()
    blob = common.git(repo.canonical_path, "hash-object", "-w", "--stdin", stdin=f"{n}\n").strip()
    name = f"f/{bead.pk}.txt"
    patch = (
        f"diff --git a/{name} b/{name}\nnew file mode 100644\nindex 0000000..{blob[:7]}\n"
        f"--- /dev/null\n+++ b/{name}\n@@ -0,0 +1 @@\n+{n}\n"
    )
    bead.start(agent.name)
    session = Session.objects.create(agent=agent, bead=bead, status="running", base_sha=base)
    lifecycle.hand_in(session, patch, "bench")


def land(repos, agent, n, together, command=INTEGRATION):
    """Seconds to land one bead per repository, as a change set or apart."""
    from agents.moves import changesets
    from beads.models import Bead

    beads = [Bead.objects.create(repository=r, title=f"b{n}", scope=["f/**"]) for r in repos]
    if together:
        changesets.create(f"cs{n}", beads, repos[0].workspace, command=command)
    started = time.perf_counter()
    for bead in beads:
        hand_in(bead, agent, n)
    work(repos)
    took = time.perf_counter() - started
    closed = Bead.objects.filter(pk__in=[b.pk for b in beads], status="closed").count()
    if closed != len(beads):
        sys.exit(f"round {n}: {closed} of {len(beads)} beads landed")
    return took


def summary(name, seconds):
    ms = [s * 1000 for s in seconds]
    med, avg = statistics.median(ms), statistics.mean(ms)
    print(f"  {name:<34} median {med:7.1f} ms   mean {avg:7.1f} ms   (n={len(ms)})")
    return med


def main():
    args = parse_args()
    with scratch_django("corral-bench-changesets-", DEFAULT_REDIS_URL) as scratch:
        benchmark(args, scratch.home)


def benchmark(args, home):
    from agents import queues
    from agents.models import Agent
    from workspace.models import Repository, Workspace

    queues.connection().flushdb()
    source = common.make_source(home / "source")
    names = [f"r{i}" for i in range(max(2, args.wide))]
    repos = [Repository.register(str(source), Workspace.default(), name=n) for n in names]
    agent = Agent.objects.create(name="bench", preset="shell")
    print(f"bench/changesets.py on {database_vendor()}, {load()}")
    apart, together, bare, wide = [], [], [], []
    for n in range(args.rounds):  # interleaved, so that load drifts hit all alike
        apart.append(land(repos[:2], agent, 4 * n, together=False))
        together.append(land(repos[:2], agent, 4 * n + 1, together=True))
        bare.append(land(repos[:2], agent, 4 * n + 2, together=True, command=[]))
        wide.append(land(repos[: args.wide], agent, 4 * n + 3, together=True))
    print("Landing one bead in each repository, from first hand-in to last commit:")
    base = summary("2 repositories, apart", apart)
    pair = summary("2 repositories, one change set", together)
    summary("  the same, no integration command", bare)
    wide_ms = summary(f"{args.wide} repositories, one change set", wide)
    print(
        f"Overhead of the change set over landing apart: {pair - base:+.1f} ms (median), "
        f"x{pair / base:.2f}"
    )
    # The issue asks for the overhead, with no goal.
    vendor = database_vendor()
    figure(f"changesets: 2 repos together / apart, median, {vendor}", pair / base, "x", "", None)
    figure(f"changesets: {args.wide} repos, one change set, median, {vendor}", wide_ms, "ms", "",
           None)  # fmt: skip
    print(f"({load()})")
    queues.connection().flushdb()


if __name__ == "__main__":
    main()
