"""Landing while living with the team's remote: agents land beads into a
repository whose upstream a person pushes to as well.

Run from the repository root:

    .venv/bin/python bench/upstream.py [--n 200] [--person 50] [--agents 4] [--land-via direct]

PostgreSQL when DATABASE_URL is set, else SQLite in a temporary CORRAL_HOME;
the Redis at REDIS_URL (default redis://127.0.0.1:6379/14), whose database is
emptied at the start and at the end. A bare "upstream" repository in a
temporary folder stands in for the team's remote.

Three runs, each on a fresh upstream, each with --agents agent clients (threads
of this process: claim, write a patch on the base they were given, hand it in,
as an agent driving the API does) landing --n beads through one lead
supervisor (`manage.py lead --workers 1`, which also follows the upstream on
its schedule):

1. *without*: push off: Corral's branch is its own (the cost baseline);
2. *quiet*: push on, nobody else pushes;
3. *busy*: push on, and a person pushes --person commits at random moments
   while the agents land (pulling and pushing again when refused, as people do).

Figures: landing latency (submit to the commit on the upstream: a
submission's pushed_at less its queued_at; without push, to its commit on
Corral's branch) p50/p95, quiet and busy; the cost of following the upstream,
the quiet run's wall time over the run without (goal < 1.3); and in the busy
run the goal's properties: every bead and every person's commit on the
upstream exactly once, a linear history, no forced update in the upstream's
reflog, and Corral's branch equal to the upstream's within 60 s of the last
landing. Exits non-zero when a property fails.

`--land-via pr`: the quiet and busy runs land through pull requests on a
local fake GitHub (tests/forges/server.py, on 127.0.0.1, which checks every
request and answer against GitHub's OpenAPI description and merges by a real
rebase in the bare upstream): each bead's commit is pushed to `corral/<bead>`,
its request opened, merged once its checks pass (there are none), and the
submission lands when Corral sees the merge. Its latency is submit to the
landing after the forge's merge (the commit is on the upstream by then).
"""

import argparse
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import common
from common import database_vendor, git, load, p50_p95, run_with_world, sizes
from figures import figure

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
TIMEOUT_S = 1800
POLL_S = 0.1
COST_GOAL = 1.3  # following the upstream / landing without it, at most
CONVERGE_GOAL_S = 60  # Corral's branch equal to the upstream's after the last landing
LAND_VIA = ("direct", "pr")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=sizes(200, 24), help="beads per run")
    parser.add_argument("--person", type=int, default=sizes(50, 8), help="a person's pushes")
    parser.add_argument("--agents", type=int, default=4, help="agent clients")
    parser.add_argument("--land-via", default="direct", choices=LAND_VIA)
    parser.add_argument("--fetch-seconds", type=int, default=5, help="the follow schedule")
    parser.add_argument(
        "--work-seconds", type=float, default=0.5, help="an agent's mean time on a bead"
    )
    return parser.parse_args()


# The upstream and the person


def make_upstream(folder):
    source = common.make_source(folder / "source")
    bare = folder / "upstream.git"
    git(folder, "clone", "-q", "--bare", str(source), str(bare))
    git(bare, "config", "core.logAllRefUpdates", "always")
    return bare


class Person(threading.Thread):
    """Pushes `count` commits to the upstream at random moments."""

    def __init__(self, bare, clone, count, spread_s, seed=50):
        super().__init__(daemon=True)
        self.clone, self.count, self.spread_s = clone, count, spread_s
        self.rng = random.Random(seed)
        self.subjects, self.refused = [], 0
        git(clone.parent, "clone", "-q", str(bare), str(clone))

    def run(self):
        for n in range(self.count):
            time.sleep(self.rng.uniform(0, 2 * self.spread_s / self.count))
            (self.clone / f"person-{n}.txt").write_text(f"person {n}\n")
            git(self.clone, "add", "-A")
            ident = ["-c", "user.name=Person", "-c", "user.email=person@example.com"]
            git(self.clone, *ident, "commit", "-q", "-m", f"person {n}")
            while True:
                try:
                    git(self.clone, "push", "-q", "origin", "HEAD:main")
                    break
                except Exception:
                    self.refused += 1
                    git(self.clone, *ident, "pull", "-q", "--rebase", "origin", "main")
            self.subjects.append(f"person {n}")


# The agent clients


def new_file_patch(name, text):
    return (
        f"diff --git a/{name} b/{name}\nnew file mode 100644\n--- /dev/null\n+++ b/{name}\n"
        f"@@ -0,0 +1 @@\n+{text}\n"
    )


def agent_client(agent, repo, errors, work_s, seed):
    """Claim, write, hand in, until the hook is empty (sessions run nowhere: the
    client is the agent)."""
    from django.db import connection

    from agents.moves import lifecycle

    rng = random.Random(seed)
    try:
        while True:
            try:
                session = lifecycle.claim(agent, repository=repo)
            except Exception:
                session = None
            if session is None:  # a bead sent back is claimed again: wait until all land
                if not repo.beads.exclude(status="closed").exists():
                    return
                time.sleep(0.05)
                continue
            time.sleep(rng.uniform(0, 2 * work_s))  # the agent at work
            name = session.bead.scope[0]
            patch = new_file_patch(name, f"bead {session.bead.pk}")
            lifecycle.hand_in(session, patch, f"Wrote {name}.")
    except Exception as e:  # reported by the run, never lost in a thread
        errors.append(repr(e))
    finally:
        connection.close()


def run(args, home, world, label, push, person_count):
    """One run; its figures as a dict."""
    from agents.models import Agent, Submission
    from beads.models import Bead
    from workspace import gitops
    from workspace.models import Repository, Workspace

    folder = home / label
    folder.mkdir()
    bare = make_upstream(folder)
    forge, via_pr = None, push and args.land_via == "pr"
    fields = {}
    if via_pr:
        from tests.forges.server import FakeForge

        forge = FakeForge("github", bare).start()
        fields = {
            "land_via": "pr",
            "forge": "github",
            "forge_url": forge.url,
            "forge_repo": forge.repo,
            "forge_token": forge.token,
        }
    repo = Repository.register(
        str(bare),
        Workspace.default(),
        name=f"up-{label}",
        push=push,
        max_agents=args.agents,
        **fields,
    )
    world.repos.append(repo)
    for i in range(args.n):
        Bead.objects.create(repository=repo, title=f"Write f/{i}.txt", scope=[f"f/{label}-{i}.txt"])
    agents = [
        Agent.objects.create(name=f"{label}-client-{i}", preset="shell", max_changed_files=10)
        for i in range(args.agents)
    ]
    world.agents.extend(agents)
    # The schedule stands in for the forge's webhook, as for the upstream's pushes.
    every = str(args.fetch_seconds)
    env = common.worker_env(
        home, CORRAL_UPSTREAM_FETCH_SECONDS=every, CORRAL_FORGE_POLL_SECONDS=every
    )
    lead = common.Managed(["manage.py", "lead", "--workers", "1"], env, folder / "lead.log")
    spread_s = max(5, args.n * args.work_seconds / args.agents)  # about the run's length
    person = Person(bare, folder / "person", person_count, spread_s=spread_s)
    errors = []
    try:
        wait_for_lead(lead)
        started = time.monotonic()
        threads = [
            threading.Thread(target=agent_client, args=(a, repo, errors, args.work_seconds, n))
            for n, a in enumerate(agents)
        ]
        for thread in threads:
            thread.start()
        if person_count:
            person.start()
        for thread in threads:
            thread.join()
        landed = Submission.objects.filter(repository=repo, status="committed")
        # Through a pull request, it lands once the forge merged it onto the upstream.
        done_field = "pushed_at" if push and not via_pr else "finished_at"
        while landed.filter(**{f"{done_field}__isnull": True}).exists():
            if lead.exited():
                raise SystemExit(f"the lead supervisor exited:\n{lead.log_tail()}")
            if time.monotonic() - started > TIMEOUT_S:
                raise SystemExit(f"{label}: timed out; lead log:\n{lead.log_tail()}")
            time.sleep(POLL_S)
        seconds = time.monotonic() - started
        if person_count:
            person.join()
        converged = converge(repo, bare) if push else None
    finally:
        lead.stop()
        if forge is not None:
            forge.stop()
            if forge.problems:
                raise SystemExit(
                    f"{label}: requests or answers off GitHub's description: {forge.problems[:3]}"
                )
    if errors:
        raise SystemExit(f"{label}: an agent client failed: {errors[0]}")
    repo.refresh_from_db()
    if push and not via_pr:
        print(f"{label}: last push {repo.push_message!r}, failures in a row {repo.push_failures}")
        finished = landed.values_list("finished_at", "pushed_at")
        waits = [(p - f).total_seconds() for f, p in finished]
        print(f"{label}: committed to pushed p50/p95 {p50_p95(waits)}")
    rows = list(landed.values_list("queued_at", done_field))
    latencies = [(done - queued).total_seconds() for queued, done in rows]
    result = {"seconds": seconds, "latency": p50_p95(latencies), "converged": converged}
    if push:
        result.update(properties(repo, bare, person.subjects))
        result["person_refused"] = person.refused
    statuses = Counter(Submission.objects.filter(repository=repo).values_list("status", flat=True))
    result["statuses"] = dict(statuses)
    head = gitops.head_sha(repo.canonical_path, repo.branch)
    result["commits"] = int(git(repo.canonical_path, "rev-list", "--count", head))
    return result


def wait_for_lead(lead):
    """Until its workers listen: its start-up is not a landing's latency."""
    deadline = time.monotonic() + 60
    while "started lead worker" not in lead.log_path.read_text():
        if lead.exited() or time.monotonic() > deadline:
            raise SystemExit(f"the lead supervisor did not start:\n{lead.log_tail()}")
        time.sleep(POLL_S)
    time.sleep(1)  # the worker's own start


def converge(repo, bare):
    """Seconds after the last landing until Corral's branch equals the upstream's
    (the schedule's follow brings the person's last pushes), or None past the goal."""
    from workspace import gitops

    started = time.monotonic()
    while time.monotonic() - started < CONVERGE_GOAL_S * 2:
        ours = gitops.head_sha(repo.canonical_path, repo.branch)
        if ours == git(bare, "rev-parse", "main").strip():
            return time.monotonic() - started
        time.sleep(POLL_S)
    return None


def properties(repo, bare, person_subjects):
    from beads.models import Bead

    trailers = git(bare, "log", "--format=%(trailers:key=Bead,valueonly,separator=)", "main")
    landed = Counter(line for line in trailers.splitlines() if line)
    beads = set(Bead.objects.filter(repository=repo).values_list("pk", flat=True))
    subjects = Counter(git(bare, "log", "--format=%s", "main").splitlines())
    moves = git(bare, "reflog", "show", "--format=%H", "refs/heads/main").split()
    forced = [
        1
        for new, old in zip(moves, moves[1:], strict=False)
        if common_is_ancestor(bare, old, new) is False
    ]
    return {
        "beads_once": set(landed) == beads and set(landed.values()) == {1},
        "person_once": all(subjects[s] == 1 for s in person_subjects),
        "linear": git(bare, "rev-list", "--merges", "main").strip() == "",
        "no_force": not forced,
    }


def common_is_ancestor(bare, old, new):
    import subprocess

    done = subprocess.run(["git", "merge-base", "--is-ancestor", old, new], cwd=bare)
    return done.returncode == 0


def benchmark(args, home, world):
    vendor = database_vendor()
    size = f"{args.n} beads, {args.agents} agents, {args.land_via}, {vendor}"
    print(f"upstream: {size}, a person pushing {args.person} commits in the busy run; {load()}")
    without = run(args, home, world, "without", push=False, person_count=0)
    quiet = run(args, home, world, "quiet", push=True, person_count=0)
    busy = run(args, home, world, "busy", push=True, person_count=args.person)
    for label, result in (("without", without), ("quiet", quiet), ("busy", busy)):
        p50, p95 = result["latency"]
        print(
            f"{label}: {result['seconds']:.1f} s for {args.n} beads, latency p50 {p50:.2f} s "
            f"p95 {p95:.2f} s, submissions {result['statuses']}"
        )
    figure(f"upstream: landing latency p50, quiet, {size}", quiet["latency"][0], "s", "", None)
    figure(f"upstream: landing latency p95, quiet, {size}", quiet["latency"][1], "s", "", None)
    figure(f"upstream: landing latency p50, busy, {size}", busy["latency"][0], "s", "", None)
    figure(f"upstream: landing latency p95, busy, {size}", busy["latency"][1], "s", "", None)
    figure(
        f"upstream: landing latency p50, without push, {size}", without["latency"][0], "s", "", None
    )
    cost = quiet["seconds"] / without["seconds"]
    if args.land_via == "pr":  # the goal is direct landing's: through requests, a figure
        figure(
            f"upstream: wall time through pull requests / without push, {size}", cost, "x", "", None
        )
    else:
        figure(
            f"upstream: cost of following the upstream, {size}",
            cost,
            "x",
            f"< {COST_GOAL}",
            cost < COST_GOAL,
        )
    converged = busy["converged"]
    figure(
        f"upstream: Corral's branch equals the upstream's after the last landing, {size}",
        converged,
        "s",
        f"< {CONVERGE_GOAL_S}",
        converged is not None,
    )
    print(f"busy: the person's pushes refused and retried {busy['person_refused']} time(s)")
    checks = {k: busy[k] for k in ("beads_once", "person_once", "linear", "no_force")}
    checks.update({f"quiet {k}": quiet[k] for k in ("beads_once", "linear", "no_force")})
    print("properties: " + ", ".join(f"{k} {'ok' if v else 'FAILED'}" for k, v in checks.items()))
    return 0 if all(checks.values()) and converged is not None else 1


def main():
    sys.exit(run_with_world("corral-bench-upstream-", benchmark, parse_args(), DEFAULT_REDIS_URL))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
