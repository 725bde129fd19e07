"""How fast the lead lands submissions, measured against a plain `git apply; git commit` loop.

Run from the repository root:

    .venv/bin/python bench/lead.py [--n 200] [--repos 4] [--profile DIR]

PostgreSQL when DATABASE_URL is set, else SQLite in a temporary CORRAL_HOME;
the Redis at REDIS_URL (default redis://127.0.0.1:6379/8), whose database is
emptied at the start and at the end.

1. One repository: N submissions, each adding its own file, all made against
   the same base (many agents started from one head), are queued first; then
   one `manage.py leadworker` lands them (in trains of up to 20). Figures: the overall rate from the
   worker's start, its start-up (until the first commit) and the steady rate.
2. The same N patches applied by a plain loop of `git apply --cached` and
   `git commit` in a normal clone, run just before and just after step 1 (the
   mean of the two is the floor the queue is measured against).
3. --repos repositories at once, N submissions each, one lead worker each
   (each serves the shared lead queue; the drains spread over them).

Wall-clock figures move with the machine's load (printed); the CPU
milliseconds per commit (the process and its git children; not Redis's nor
PostgreSQL's) move much less. Exits non-zero unless every repository ends
with exactly N new linear commits and every submission was committed.
--profile DIR runs the lead workers under cProfile (slower): DIR/<slug>.prof.
"""

import argparse
import os
import secrets
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import common
from common import database_vendor, git, load, run_with_world, sizes
from figures import figure

from agents.moves import lifecycle

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/8"
TIMEOUT_S = 900
POLL_S = 0.05
RATIO_GOAL = 1.5  # queue time / plain-loop time, at most
SPEEDUP_GOAL = 1.8  # repositories at once / one repository, at least
GATES = ["paths", "scope", "size", "apply", "check", "review"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=sizes(200, 30), help="submissions per repository")
    parser.add_argument("--repos", type=int, default=4, help="repositories landed at once")
    parser.add_argument("--profile", metavar="DIR", help="cProfile the lead workers into DIR")
    return parser.parse_args()


# Git, Django, Redis, CPU time


def cpu_of(pid):
    """CPU seconds of a live process and of the children it has waited for (its git calls)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def own_cpu():
    """CPU seconds of this process and of the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# Inputs: a source repository, its patches, registered repositories


def make_source(path):
    """A small git repository with one commit; returns its path and that commit."""
    path = common.make_source(path)
    return path, git(path, "rev-parse", "HEAD").strip()


def prepare_patches(source, base, n, scratch):
    """N patches against `base`, patch i adding the file f/i.txt."""
    git(source, "clone", "-q", str(source), str(scratch))
    patches = []
    for i in range(n):
        path = scratch / "f" / f"{i}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"bead {i}\n")
        git(scratch, "add", "-A")
        patches.append(git(scratch, "diff", "--cached", "--binary", base))
        git(scratch, "reset", "-q", "--hard", base)
    return patches


def register(source, names):
    from workspace.models import Repository, Workspace

    return [Repository.register(str(source), Workspace.default(), name=name) for name in names]


def make_agent(name):
    from agents.models import Agent

    return Agent.objects.create(name=name, preset="shell", max_changed_files=10)


def hand_in_all(repo, agent, base, patches):
    """A bead, a running session and a submission per patch; returns the seconds it took."""
    from agents.models import Session
    from beads.models import Bead

    started = time.monotonic()
    for i, patch in enumerate(patches):
        bead = Bead.objects.create(repository=repo, title=f"Write f/{i}.txt", scope=[f"f/{i}.txt"])
        bead.start(agent.name)
        session = Session.objects.create(agent=agent, bead=bead, status="running", base_sha=base)
        lifecycle.hand_in(session, patch, summary=f"Added f/{i}.txt.")
    return time.monotonic() - started


# Lead workers


class LeadWorker(common.Managed):
    """`manage.py leadworker <slug>`, optionally under cProfile."""

    def __init__(self, slug, env, log_path, profile=None):
        prefix = ["-m", "cProfile", "-o", profile] if profile else []
        super().__init__([*prefix, "manage.py", "leadworker", slug], env, log_path)

    def cpu(self):
        return cpu_of(self.proc.pid)

    def stop(self):
        super().stop(grace=20)  # a warm shutdown, so cProfile writes its file


@dataclass
class Run:
    """One landing run: when the workers started, when each submission finished
    (epoch seconds, per repository), and the workers' CPU seconds, sampled when
    every worker had committed once and at the end, with the commits done then."""

    started: float
    finished: dict  # slug -> sorted finish times
    cpu_samples: tuple  # ((commits, cpu_s) once all had started, (commits, cpu_s) at the end)

    @property
    def commits(self):
        return sum(len(times) for times in self.finished.values())

    @property
    def seconds(self):
        return max(times[-1] for times in self.finished.values()) - self.started

    @property
    def startup(self):
        """Until every worker had made its first commit."""
        return max(times[0] for times in self.finished.values()) - self.started

    @property
    def steady(self):
        """(commits, seconds) after every worker's first commit."""
        since = self.started + self.startup
        commits = sum(t > since for times in self.finished.values() for t in times)
        return commits, self.seconds - self.startup

    @property
    def cpu_ms_per_commit(self):
        """Steady-state CPU milliseconds per commit, from the two samples."""
        (c0, cpu0), (c1, cpu1) = self.cpu_samples
        return (cpu1 - cpu0) * 1000 / (c1 - c0) if c1 > c0 else float("nan")


def land(repos, env, home, profile_dir=None):
    """Start one lead worker per repository together; wait until every submission finished."""
    from agents.models import Submission

    submissions = Submission.objects.filter(repository__in=repos)
    total = submissions.count()
    finished = submissions.filter(finished_at__isnull=False)
    workers, first = [], None
    started = time.time()
    try:
        for repo in repos:
            profile = profile_dir and str(Path(profile_dir).resolve() / f"{repo.slug}.prof")
            workers.append(LeadWorker(repo.slug, env, home / f"{repo.slug}.log", profile))
        while (done := finished.count()) < total:
            check_workers(workers, started)
            if first is None and landed_in(finished) == len(repos):
                first = (done, sum(w.cpu() for w in workers))
            time.sleep(POLL_S)
        last = (done, sum(w.cpu() for w in workers))
    finally:
        for worker in workers:
            worker.stop()
    return Run(started, finish_times(repos), (first or last, last))


def landed_in(finished):
    """How many repositories have a finished submission."""
    return finished.order_by().values("repository").distinct().count()


def check_workers(workers, started):
    if time.time() - started > TIMEOUT_S:
        raise SystemExit(f"timed out after {TIMEOUT_S}s waiting for the lead workers")
    for worker in workers:
        if worker.exited():
            raise SystemExit(f"a lead worker exited early:\n{worker.log_tail()}")


def finish_times(repos):
    from agents.models import Submission

    rows = Submission.objects.filter(repository__in=repos).values_list(
        "repository__slug", "finished_at"
    )
    times = {}
    for slug, at in rows:
        times.setdefault(slug, []).append(at.timestamp())
    return {slug: sorted(ts) for slug, ts in times.items()}


# The baseline


@dataclass
class Plain:
    seconds: float
    cpu_s: float
    commits: int


def plain_loop(source, patches, clone):
    """Apply and commit each patch in a fresh normal clone."""
    git(source, "clone", "-q", str(source), str(clone))
    started, cpu = time.monotonic(), own_cpu()
    for i, patch in enumerate(patches):
        git(clone, "apply", "--cached", "--binary", "-", stdin=patch)
        git(clone, "commit", "-q", "-m", f"Write f/{i}.txt")
    seconds, cpu = time.monotonic() - started, own_cpu() - cpu
    commits = int(git(clone, "rev-list", "--count", "HEAD")) - 1
    return Plain(seconds, cpu, commits)


# What the lead spent its time on


def breakdown(repo):
    """Per submission, in mean milliseconds: its share of its train's landing
    (a train's members share started_at and land together), by gate, and the
    gap between trains; and the mean train length."""
    from django.db.models import Avg

    from agents.models import GateResult, Submission

    trains = {}
    for start, end in Submission.objects.filter(repository=repo).values_list(
        "started_at", "finished_at"
    ):
        trains.setdefault(start, []).append(end)
    spans = sorted((start, max(ends), len(ends)) for start, ends in trains.items())
    n = sum(size for _, _, size in spans)
    landing = sum((end - start).total_seconds() for start, end, _ in spans) * 1000 / n
    gaps = [(b[0] - a[1]).total_seconds() * 1000 for a, b in zip(spans, spans[1:], strict=False)]
    gates = dict(
        GateResult.objects.filter(submission__repository=repo)
        .values("gate")
        .annotate(ms=Avg("duration_ms"))
        .values_list("gate", "ms")
    )
    return landing, sum(gaps) / n, gates, n / len(spans)


def print_breakdown(repo):
    landing, gap, gates, length = breakdown(repo)
    in_gates = sum(gates.values())
    per_gate = ", ".join(f"{g} {gates[g]:.1f}" for g in GATES if g in gates)
    print(f"  mean per submission: {landing + gap:.1f} ms (trains of {length:.1f} on average)")
    print(
        f"    its share of its train's landing (started_at to last finished_at): {landing:.1f} ms"
    )
    print(f"      gates {in_gates:.1f} ms ({per_gate}; whole ms each, small ones read low)")
    print(
        f"      the rest {landing - in_gates:.1f} ms (commit-tree, its share of update-ref, rows)"
    )
    print(f"    its share of the gaps between trains (jobs, queries): {gap:.1f} ms")


# Verification


def verify(repos, base, n, plain):
    """What is wrong with the result: each repository must have n new linear commits."""
    from agents.models import Submission

    problems = [f"plain loop: {p.commits} commits, not {n}" for p in plain if p.commits != n]
    for repo in repos:
        path = repo.canonical_path
        count = int(git(path, "rev-list", "--count", f"{base}..{repo.branch}"))
        merges = git(path, "rev-list", "--merges", f"{base}..{repo.branch}").split()
        statuses = Counter(
            Submission.objects.filter(repository=repo).values_list("status", flat=True)
        )
        if count != n:
            problems.append(f"{repo.slug}: {count} new commits, not {n}")
        if merges:
            problems.append(f"{repo.slug}: {len(merges)} merge commit(s)")
        if statuses != Counter({"committed": n}):
            problems.append(f"{repo.slug}: submissions {dict(statuses)}")
    return problems


# Figures


def rate(commits, seconds):
    return commits / seconds if seconds > 0 else float("inf")


def verdict(ok):
    return "met" if ok else "MISSED"


def print_run(title, run):
    commits, seconds = run.steady
    print(
        f"{title}: {run.commits} commits in {run.seconds:.2f} s = "
        f"{rate(run.commits, run.seconds):.1f}/s; start-up {run.startup:.2f} s; "
        f"steady {commits} in {seconds:.2f} s = {rate(commits, seconds):.1f}/s; "
        f"{run.cpu_ms_per_commit:.1f} CPU ms/commit"
    )


def print_plain(title, plain):
    print(
        f"{title}: {plain.commits} commits in {plain.seconds:.2f} s = "
        f"{rate(plain.commits, plain.seconds):.1f}/s; "
        f"{plain.cpu_s * 1000 / plain.commits:.1f} CPU ms/commit"
    )


def print_summary(args, plains, one, many, problems):
    n, repos = args.n, args.repos
    plain_s = mean(p.seconds for p in plains)
    plain_cpu = mean(p.cpu_s for p in plains) * 1000 / n
    one_steady, many_steady = one.steady, many.steady
    ratios = {
        "overall": one.seconds / plain_s,
        "steady": (one_steady[1] / one_steady[0]) / (plain_s / n),
        "CPU": one.cpu_ms_per_commit / plain_cpu,
    }
    speedups = {
        "overall": rate(many.commits, many.seconds) / rate(one.commits, one.seconds),
        "steady": rate(*many_steady) / rate(*one_steady),
    }
    rows = [
        ("plain loop (mean of 2)", n, plain_s, plain_cpu),
        ("queue, 1 repo, overall", one.commits, one.seconds, None),
        ("queue, 1 repo, steady", *one_steady, one.cpu_ms_per_commit),
        (f"queue, {repos} repos, overall", many.commits, many.seconds, None),
        (f"queue, {repos} repos, steady", *many_steady, many.cpu_ms_per_commit),
    ]
    print(f"\n== summary: {database_vendor()}, n={n}, repos={repos}, {os.cpu_count()} CPUs ==")
    print(f"{'':<28}{'commits':>8}{'seconds':>9}{'commits/s':>11}{'CPU ms/commit':>15}")
    for title, commits, seconds, cpu in rows:
        cpu = "" if cpu is None else f"{cpu:.1f}"
        print(f"{title:<28}{commits:>8}{seconds:>9.2f}{rate(commits, seconds):>11.1f}{cpu:>15}")
    print(f"start-up: 1 repo {one.startup:.2f} s, {repos} repos {many.startup:.2f} s")
    for name, ratio in ratios.items():
        goal = f"goal <= {RATIO_GOAL:g}: {verdict(ratio <= RATIO_GOAL)}"
        print(f"queue/plain, {name + ':':<9}{ratio:5.2f}  ({goal})")
    for name, speedup in speedups.items():
        goal = f"goal >= {SPEEDUP_GOAL:g}: {verdict(speedup >= SPEEDUP_GOAL)}"
        print(f"speed-up, {name + ':':<12}{speedup:5.2f}x ({goal})")
    print("verified: " + ("; ".join(problems) if problems else f"all {1 + repos} repositories OK"))
    vendor = database_vendor()
    for name, ratio in ratios.items():
        figure(f"lead: queue/plain, {name}, {vendor}", ratio, "x", f"<= {RATIO_GOAL:g}",
               ratio <= RATIO_GOAL)  # fmt: skip
    for name, speedup in speedups.items():
        figure(f"lead: {repos} repos / 1, {name}, {vendor}", speedup, "x", f">= {SPEEDUP_GOAL:g}",
               speedup >= SPEEDUP_GOAL)  # fmt: skip
    figure(f"lead: commits/s, 1 repo, {vendor}", rate(one.commits, one.seconds), "/s", "", None)
    figure(f"lead: commits/s, plain git loop, {vendor}", n / plain_s, "/s", "", None)
    figure(f"lead: repositories verified, {vendor}", len(problems), "problems", "= 0", not problems)


# The benchmark


def benchmark(args, home, world):
    n, tag = args.n, secrets.token_hex(3)
    print(f"{database_vendor()}, CORRAL_HOME {home}, n={n}, repos={args.repos}, {load()}")
    source, base = make_source(home / "source")
    patches = prepare_patches(source, base, n, home / "scratch")
    single = register(source, [f"bench-{tag}-one"])
    world.repos += single
    many = register(source, [f"bench-{tag}-{k}" for k in range(1, args.repos + 1)])
    world.repos += many
    agent = make_agent(f"bench-{tag}")
    world.agents.append(agent)
    env = common.worker_env(home)

    seconds = hand_in_all(single[0], agent, base, patches)
    print(f"handed in {n} submissions in {seconds:.2f} s ({rate(n, seconds):.1f}/s)")
    plains = [plain_loop(source, patches, home / "plain-before")]
    print_plain("plain loop, before", plains[0])
    one = land(single, env, home, args.profile)
    print_run("queue, 1 repo", one)
    print_breakdown(single[0])
    plains.append(plain_loop(source, patches, home / "plain-after"))
    print_plain("plain loop, after", plains[1])

    for repo in many:
        hand_in_all(repo, agent, base, patches)
    several = land(many, env, home, args.profile)
    print_run(f"queue, {len(many)} repos", several)
    print(load())

    problems = verify(single + many, base, n, plains)
    print_summary(args, plains, one, several, problems)
    return 1 if problems else 0


def main():
    sys.exit(run_with_world("corral-bench-lead-", benchmark, parse_args(), DEFAULT_REDIS_URL))


if __name__ == "__main__":
    main()
