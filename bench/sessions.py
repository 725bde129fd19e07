"""How fast sessions start, stream their logs and land, end to end, with real workers.

Run from the repository root:

    .venv/bin/python bench/sessions.py [--beads 40] [--lines 40] [--burst 60] [--repos 2]

PostgreSQL when DATABASE_URL is set, else SQLite in a temporary CORRAL_HOME;
the Redis at REDIS_URL (default redis://127.0.0.1:6379/9), whose database is
emptied at the start and at the end. The processes are the ones `manage.py up`
runs, as subprocesses with one environment (DATABASE_URL, REDIS_URL,
CORRAL_HOME, CORRAL_LEASE_SECONDS): two `manage.py rqworker sessions`, one
`manage.py rqworker default` (dispatch jobs), `manage.py lead` (its pool of
lead workers serves every repository) and `manage.py tick` (unless --no-tick).
The agents are tiny Python programs in bench/programs/ (the sandbox lets an
agent read the project): their first act prints time.time(), read back from
the session's log; then they write one file in their scope and exit (the
chatty one first prints a timestamped line every --every seconds).

1. Dispatch latency, from a bead's creation committed (which asks for a
   dispatch) to its agent's first act, split into stages by the session's own
   timestamps: --beads beads one at a time, each once the last has closed and
   the system is idle; then --beads beads at one every --interval seconds,
   whatever is still running. Each bead's dispatch ask is noted: a new job
   ("queued") or folded into a dispatch already running ("started"), which may
   have read the hook before the bead committed.
2. Log latency: one chatty session prints --lines lines, each carrying
   time.time(); this process polls LogChunk every 20 ms and notes when each
   line can be read from the database.
3. Throughput: --burst beads created at once over --repos repositories
   (max_agents 3 each), until the leads have closed every one: sessions/minute.
4. The hops around a start, each timed alone on the idle system: RQ pick-up,
   fork, importing the runner, the agent's interpreter.
5. With the workers stopped, dispatch() and run_session() of 10 more beads run
   in this process with each step timed (functions wrapped in this process
   only; a repository of their own, whose beads stay in review).

6. Ready to running: --unblocked pairs, one at a time on the idle system, of
   a bead and one it waits for: from the blocker's landing (its closed_at,
   when the dependent becomes ready) to the dependent's agent's first act in
   its sandbox (clone, context pack, sandbox start). And hand-in to commit:
   from a session's hand-in (its ended_at) to its commit on the branch (the
   submission's finished_at), the lead queue otherwise idle.

--workers session workers (default 8, as the issue measures it). Goals:
dispatch p95 under 1 s, log latency p95 under 2 s, ready to running p95 under
500 ms, hand-in to commit p95 under 200 ms. Exceptions in the
processes' logs are listed. Exits non-zero unless every bead of phases 1-3
landed as one commit with its submission committed.
"""

import argparse
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, median

import common
from common import ROOT, database_vendor, git, load, make_source, run_with_world, sizes
from figures import figure

from workspace import processes

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/9"
SESSION_WORKERS = 8  # --workers' default
READY_GOAL_S = 0.5
HANDIN_GOAL_S = 0.2
BURST_MAX_AGENTS = 3
DISPATCH_GOAL_S = 1.0
LOG_GOAL_S = 2.0
LOG_POLL_S = 0.02
POLL_S = 0.01
IDLE_GAP_S = 0.2  # after the system is idle, before the next bead
BEAD_TIMEOUT_S = 60
BURST_TIMEOUT_S = 900
START_TIMEOUT_S = 60

# The agents (bench/programs/): under the project, which the sandbox lets an
# agent read. Their first act prints the time, which the bench reads back from
# the session's log: the sandbox lets an agent write nothing outside its clone.
PROGRAMS = Path(__file__).resolve().parent / "programs"
STAMP = re.compile(r"^bench-start (\d+\.\d+)$", re.M)
LINE = re.compile(r"^bench-line (\d+) (\d+\.\d+)$", re.M)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--beads", type=int, default=sizes(40, 5), help="beads for the dispatch latency"
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between beads at a steady rate"
    )
    parser.add_argument(
        "--lines", type=int, default=sizes(40, 10), help="log lines for the log latency"
    )
    parser.add_argument("--every", type=float, default=0.25, help="seconds between log lines")
    parser.add_argument("--burst", type=int, default=sizes(60, 10), help="beads created at once")
    parser.add_argument("--repos", type=int, default=2, help="repositories for the burst")
    parser.add_argument("--no-tick", action="store_true", help="run without `manage.py tick`")
    parser.add_argument(
        "--workers", type=int, default=sizes(SESSION_WORKERS, 2), help="session workers"
    )
    parser.add_argument(
        "--unblocked", type=int, default=sizes(20, 3), help="pairs for ready to running"
    )
    parser.add_argument(
        "--dispatch-worker-class",
        metavar="CLASS",
        help="--worker-class for `rqworker default`, e.g. rq.SimpleWorker (default: RQ's Worker)",
    )
    return parser.parse_args()


# The processes' environment


def worker_env(home):
    """Every process's environment, with this run's lease."""
    from django.conf import settings

    return common.worker_env(home, CORRAL_LEASE_SECONDS=str(settings.LEASE_SECONDS))


# The workspace: repositories, agents


def register(source, name, max_agents):
    from workspace.models import Repository, Workspace

    return Repository.register(str(source), Workspace.default(), name=name, max_agents=max_agents)


def make_agents(tag, args):
    """The two bench agents; only one is active at a time."""
    from agents.models import Agent

    env = {"BENCH_LINES": str(args.lines), "BENCH_EVERY": str(args.every)}
    return {
        name: Agent.objects.create(
            name=f"bench-{tag}-{name}",
            preset="shell",
            command=["{python}", str(PROGRAMS / f"{name}.py")],
            env=env,
            active=False,
        )
        for name in ("oneshot", "chatty")
    }


def use_agent(agents, name):
    from agents.models import Agent

    Agent.objects.filter(pk__in=[a.pk for a in agents.values()]).update(active=False)
    Agent.objects.filter(pk=agents[name].pk).update(active=True)


# What became of the dispatch asks of this process: "queued" (a new job, or
# folded into one still waiting: it will see the bead), "started" (folded into
# a dispatch already running, which may have read the hook before the bead
# committed: then nothing dispatches it until the next ask) or an exception name.
DISPATCH_ASKS = []


def observe_dispatch_asks():
    """Wrap queues.enqueue_run in this process only, to note each dispatch ask's fate."""
    from agents import queues

    enqueue_run = queues.enqueue_run

    def observed(queue, func, *args, name, **kwargs):
        try:
            job = enqueue_run(queue, func, *args, name=name, **kwargs)
        except Exception as e:
            if name == queues.DISPATCH:
                DISPATCH_ASKS.append(type(e).__name__)
            raise
        if name == queues.DISPATCH:
            status = job.get_status(refresh=False)
            DISPATCH_ASKS.append(getattr(status, "value", str(status)))
        return job

    queues.enqueue_run = observed
    # An ask that raises is logged with its traceback by after_commit(); here it
    # is counted in DISPATCH_ASKS and summed up at the end instead.
    logging.getLogger("agents.queues").setLevel(logging.CRITICAL)


def create_beads(repos, n, label):
    """n beads over repos in one transaction, as a view would; returns their ids,
    the commit time and the fate of the dispatch asks their commit made."""
    from django.db import transaction

    from beads.models import Bead

    committed, asked = [], len(DISPATCH_ASKS)
    with transaction.atomic():
        # Registered first, so it runs before the dispatch each bead enqueues.
        transaction.on_commit(lambda: committed.append(time.time()))
        ids = [
            Bead.objects.create(
                repository=repos[i % len(repos)], title=f"{label} {i}", scope=["bench/"]
            ).pk
            for i in range(n)
        ]
    return ids, committed[0], DISPATCH_ASKS[asked:]


# The processes


class Proc(common.Managed):
    """`manage.py <argv>`, named for the reports."""

    def __init__(self, name, argv, env, logs):
        self.name = name
        super().__init__(["manage.py", *argv], env, logs / f"{name}.log")


class Processes:
    def __init__(self, env, home, repos, tick, dispatch_worker_class=None, workers=2):
        logs = home / "logs"
        logs.mkdir()
        self.workers = workers
        self.procs = [
            Proc(f"session-worker-{n}", ["rqworker", "sessions"], env, logs)
            for n in range(1, workers + 1)
        ]
        default = ["rqworker", "default"]
        if dispatch_worker_class:
            default += ["--worker-class", dispatch_worker_class]
        self.procs.append(Proc("default-worker", default, env, logs))
        self.procs.append(Proc("lead", ["lead"], env, logs))  # its pool serves every repository
        if tick:
            self.procs.append(Proc("ticker", ["tick"], env, logs))
        self.repos = repos

    def wait_ready(self):
        """Until every RQ worker has registered with Redis."""
        from django.conf import settings
        from rq import Worker

        from agents import queues

        wanted = {queues.SESSIONS: self.workers, queues.DEFAULT: 1}
        wanted[queues.LEAD] = settings.LEAD_WORKERS
        started = time.monotonic()
        while True:
            self.check()
            have = {name: len(Worker.all(queue=queues.queue(name))) for name in wanted}
            if all(have[name] >= n for name, n in wanted.items()):
                return time.monotonic() - started
            if time.monotonic() - started > START_TIMEOUT_S:
                tails = "\n".join(f"== {p.name}:\n{p.log_tail(5)}" for p in self.procs)
                raise SystemExit(
                    f"the workers did not start in {START_TIMEOUT_S}s: {have}\n{tails}"
                )
            time.sleep(0.1)

    def check(self):
        for proc in self.procs:
            if proc.exited():
                raise SystemExit(f"{proc.name} exited early:\n{proc.log_tail()}")

    def errors(self):
        """{process name: {exception: (count, Corral's frames of the first)}}, counting
        the last exception of each chain (the one the process was left with)."""
        found = {}
        for proc in self.procs:
            events, frames, in_traceback = [], [], False
            for line in proc.log_path.read_text(errors="replace").splitlines():
                if line.startswith("Traceback"):
                    frames, in_traceback = [], True
                elif in_traceback and line.startswith(" "):
                    where = re.match(r'^\s+File "([^"]+)", line (\d+), in (\S+)', line)
                    if where and str(ROOT) in where[1] and "/.venv/" not in where[1]:
                        path = Path(where[1]).relative_to(ROOT)
                        frames.append(f"{path}:{where[2]} {where[3]}")
                elif in_traceback:
                    events.append((line.partition(":")[0], frames))
                    in_traceback = False
                elif line.startswith(("During handling", "The above exception")) and events:
                    events.pop()  # not the last of its chain
            seen = {}
            for name, first in events:
                count, first = seen.get(name, (0, first))
                seen[name] = (count + 1, first)
            if seen:
                found[proc.name] = seen
        return found

    def stop(self):
        for proc in self.procs:
            proc.signal(signal.SIGTERM)
        for proc in self.procs:
            proc.stop()


def kill_agents(agents, home):
    """Agents still running (the bench stopped mid-session) run in their own groups:
    kill each whose process still works in this run's folder."""
    from agents.models import Session

    live = Session.objects.filter(agent__in=list(agents.values()), status__in=Session.LIVE)
    for pid in live.exclude(pid=None).values_list("pid", flat=True):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue  # gone already
        if cwd.startswith(str(home)):  # else the pid now belongs to another process
            processes.kill_group(pid)


# Waiting


def wait_for(condition, what, procs, timeout=BEAD_TIMEOUT_S, poll=POLL_S):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        procs.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)
    return result


def closed(ids):
    from beads.models import Bead

    return Bead.objects.filter(pk__in=ids, status=Bead.Status.CLOSED).count() == len(ids)


def failed_sessions(ids):
    from agents.models import Session

    return list(
        Session.objects.filter(bead__in=ids, status__in=Session.ENDINGS).values_list(
            "bead_id", "status", "error"
        )
    )


def idle():
    """No dispatch job pending and no session queued or running."""
    from agents import queues
    from agents.models import Session

    return (
        not queues.runs_pending(queues.DISPATCH)
        and not Session.objects.filter(status__in=Session.LIVE).exists()
    )


def read_stamp(bead_id):
    """The time the agent's first act printed, from its session's log."""
    from agents.models import LogChunk

    chunks = LogChunk.objects.filter(session__bead_id=bead_id).order_by("session", "seq")
    found = STAMP.search("".join(chunks.values_list("text", flat=True)))
    if found is None:
        raise SystemExit(f"no bench-start line in the log of {bead_id}'s session")
    return float(found[1])


# 1. Dispatch latency


@dataclass
class Start:
    """One bead's way from committed to its agent's first act (epoch seconds)."""

    committed: float
    claimed: float  # Session.created_at, in the dispatch job
    started: float  # Session.started_at, in the session job
    first_act: float  # the agent's own stamp
    ask: str  # what became of the bead's dispatch ask (see DISPATCH_ASKS)

    @property
    def latency(self):
        return self.first_act - self.committed


def dispatch_idle(repo, n, procs):
    """One bead at a time, each once the last has closed and the system is idle."""
    commits = {}
    for i in range(n):
        wait_for(idle, "the system to be idle", procs)
        time.sleep(IDLE_GAP_S)
        (bead_id,), *commits[bead_id] = create_beads([repo], 1, f"Latency {i}")
        wait_until_closed([bead_id], procs, BEAD_TIMEOUT_S)
    return starts_of(commits)


def dispatch_steady(repo, n, interval, procs):
    """One bead every `interval` seconds, whatever is still running."""
    wait_for(idle, "the system to be idle", procs)
    commits = {}
    next_at = time.monotonic()
    for i in range(n):
        procs.check()
        time.sleep(max(0.0, next_at - time.monotonic()))
        (bead_id,), *commits[bead_id] = create_beads([repo], 1, f"Steady {i}")
        next_at += interval
    wait_until_closed(list(commits), procs, BEAD_TIMEOUT_S + n * interval)
    return starts_of(commits)


def wait_until_closed(ids, procs, timeout):
    wait_for(
        lambda: closed(ids) or failed_sessions(ids), f"{len(ids)} bead(s) to close", procs, timeout
    )
    if problems := failed_sessions(ids):
        raise SystemExit(f"{len(problems)} session(s) failed, e.g. {problems[0]}")


def starts_of(commits):
    """A Start per bead, from its commit, its session's timestamps and its agent's stamp."""
    from agents.models import Session

    sessions = Session.objects.filter(bead__in=list(commits)).values_list(
        "bead_id", "created_at", "started_at"
    )
    starts = []
    for bead_id, claimed, started in sessions:
        committed, asks = commits[bead_id]
        ask = "+".join(sorted(set(asks))) or "none"
        first_act = read_stamp(bead_id)
        starts.append(Start(committed, claimed.timestamp(), started.timestamp(), first_act, ask))
    return sorted(starts, key=lambda s: s.committed)


# 6. Ready to running, hand-in to commit


def unblocked(repo, n, procs):
    """n pairs, one at a time on the idle system: a blocker and a bead waiting
    for it. Returns (ready to running, hand-in to commit) in seconds."""
    from django.db import transaction

    from agents.models import Session, Submission
    from beads.models import Bead, Dependency

    to_running, handed_in = [], []
    for i in range(n):
        wait_for(idle, "the system to be idle", procs)
        time.sleep(IDLE_GAP_S)
        with transaction.atomic():
            blocker = Bead.objects.create(repository=repo, title=f"Blocker {i}", scope=["bench/"])
            waiting = Bead.objects.create(repository=repo, title=f"Waiting {i}", scope=["bench/"])
            Dependency.objects.create(issue=waiting, depends_on=blocker, type="blocks")
        wait_until_closed([blocker.pk, waiting.pk], procs, 2 * BEAD_TIMEOUT_S)
        landed = Bead.objects.get(pk=blocker.pk).closed_at.timestamp()
        to_running.append(read_stamp(waiting.pk) - landed)
        for bead_id in (blocker.pk, waiting.pk):
            ended = Session.objects.filter(bead_id=bead_id, status="succeeded").get().ended_at
            committed = Submission.objects.get(bead_id=bead_id, status="committed").finished_at
            handed_in.append((committed - ended).total_seconds())
    return to_running, handed_in


# 2. Log latency


def log_latency(repo, n_lines, procs):
    """(line number, stamp, seen) for each line the chatty agent printed."""
    from agents.models import LogChunk, Session

    wait_for(idle, "the system to be idle", procs)
    (bead_id,), _, _ = create_beads([repo], 1, "Chatty")
    session_id = wait_for(
        lambda: Session.objects.filter(bead_id=bead_id).values_list("pk", flat=True).first(),
        "the chatty session",
        procs,
    )
    seen, last_seq, text = {}, -1, ""
    deadline = time.monotonic() + BEAD_TIMEOUT_S + n_lines * 1.0
    while len(seen) < n_lines:
        procs.check()
        if time.monotonic() > deadline:
            raise SystemExit(f"saw {len(seen)} of {n_lines} log lines in time")
        rows = list(
            LogChunk.objects.filter(session_id=session_id, seq__gt=last_seq)
            .order_by("seq")
            .values_list("seq", "text")
        )
        now = time.time()
        for seq, chunk in rows:
            last_seq, text = seq, text + chunk
        complete, _, text = text.rpartition("\n")
        for m in LINE.finditer(complete):
            seen.setdefault(int(m[1]), (float(m[2]), now))
        if failed_sessions([bead_id]):
            raise SystemExit(f"the chatty session failed: {failed_sessions([bead_id])}")
        time.sleep(LOG_POLL_S)
    wait_for(lambda: closed([bead_id]), "the chatty bead to close", procs)
    chunks = LogChunk.objects.filter(session_id=session_id).count()
    return [(k, stamp, at) for k, (stamp, at) in sorted(seen.items())], chunks


# 3. Throughput


@dataclass
class Burst:
    n: int
    committed: float
    closed_at: list  # epoch seconds, sorted
    sessions: list  # (created, started, ended) epoch seconds
    landings: list  # (queued, started, finished) epoch seconds
    asks: Counter  # what became of the dispatch asks the creation made

    @property
    def seconds(self):
        return self.closed_at[-1] - self.committed

    @property
    def per_minute(self):
        return self.n * 60 / self.seconds


def burst(repos, n, procs):
    from agents.models import Session, Submission
    from beads.models import Bead

    wait_for(idle, "the system to be idle", procs)
    ids, committed, asks = create_beads(repos, n, "Burst")
    wait_for(
        lambda: closed(ids) or failed_sessions(ids),
        "the burst to land",
        procs,
        BURST_TIMEOUT_S,
        0.1,
    )
    if problems := failed_sessions(ids):
        raise SystemExit(f"{len(problems)} session(s) failed, e.g. {problems[0]}")
    closed_at = sorted(
        t.timestamp() for t in Bead.objects.filter(pk__in=ids).values_list("closed_at", flat=True)
    )
    sessions = [
        tuple(t.timestamp() for t in row)
        for row in Session.objects.filter(bead__in=ids).values_list(
            "created_at", "started_at", "ended_at"
        )
    ]
    landings = [
        tuple(t.timestamp() for t in row)
        for row in Submission.objects.filter(bead__in=ids).values_list(
            "queued_at", "started_at", "finished_at"
        )
    ]
    return Burst(n, committed, closed_at, sessions, landings, Counter(asks))


# 4. Where the time goes


def timed(fn, runs):
    """Median milliseconds of fn() over runs calls."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return median(times)


def rq_pickup(queue_name, runs, procs):
    """Median ms from enqueue to the job's function running in a worker (in the
    horse it forks, with RQ's Worker)."""
    from agents import queues

    q = queues.queue(queue_name)
    times = []
    for _ in range(runs):
        wait_for(idle, "the system to be idle", procs)
        enqueued = time.time()
        job = q.enqueue_call("time.time", result_ttl=60)
        wait_for(lambda job=job: job.get_status(refresh=True) == "finished", "a probe job", procs)
        times.append((job.return_value(refresh=True) - enqueued) * 1000)
        job.delete()
    return median(times)


IMPORT_RUNNER = """\
import time, django
django.setup()
started = time.perf_counter()
import agents.jobs.runner
print((time.perf_counter() - started) * 1000)
"""


def stages(home, procs, runs=10):
    """The parts of a start the trace cannot see, each timed alone on the idle system."""
    from rq import Worker

    from agents import queues

    def agent_start():
        env = dict(os.environ, CORRAL_BEAD="stage-probe")
        workdir = home / "probe"
        workdir.mkdir(exist_ok=True)
        before = time.time()
        proc = processes.spawn(  # as the runner starts an agent, bwrap aside
            [sys.executable, str(PROGRAMS / "oneshot.py")],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = proc.communicate()
        return (float(STAMP.search(out)[1]) - before) * 1000

    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    def import_runner():
        done = subprocess.run(
            [sys.executable, "-c", IMPORT_RUNNER], cwd=ROOT, capture_output=True, text=True
        )
        return float(done.stdout.strip() or "nan")

    wait_for(idle, "the system to be idle", procs)
    return [
        ("RQ: enqueue -> job running (default worker)", rq_pickup(queues.DEFAULT, runs, procs)),
        ("RQ: enqueue -> job running (session worker)", rq_pickup(queues.SESSIONS, runs, procs)),
        ("fork() + exit of this Django process", timed(fork, runs)),
        (
            "Worker.all(sessions) (free_slots' Redis read)",
            timed(lambda: Worker.all(queue=queues.queue(queues.SESSIONS)), runs),
        ),
        (
            "import agents.jobs.runner (each session job's fork)",
            median(import_runner() for _ in range(3)),
        ),
        (
            "Popen agent -> its first act (interpreter, no bwrap)",
            median(agent_start() for _ in range(runs)),
        ),
    ]


# 5. One start traced step by step, in this process


class Tracer:
    """Wraps functions in this process only, summing the time spent in each per run."""

    def __init__(self):
        self.runs, self.current, self.patches = [], None, []

    def wrap(self, owner, name, label):
        original = getattr(owner, name)

        def traced(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                if self.current is not None:
                    spent, calls = self.current.get(label, (0.0, 0))
                    self.current[label] = (spent + time.perf_counter() - started, calls + 1)

        setattr(owner, name, traced)
        self.patches.append((owner, name, original))

    def restore(self):
        for owner, name, original in reversed(self.patches):
            setattr(owner, name, original)
        self.patches = []

    def begin(self):
        self.current = {}

    def end(self, **extra):
        self.current.update({label: (seconds, 1) for label, seconds in extra.items()})
        self.runs.append(self.current)
        self.current = None

    def rows(self, labels):
        """(label, median ms, calls per run) for each label, in the order given."""
        rows = []
        for label in labels:
            spent = [run.get(label, (0.0, 0)) for run in self.runs]
            calls = mean(c for _, c in spent)
            rows.append((label, median(t for t, _ in spent) * 1000, calls))
        return rows


TRACE_LABELS = [
    "dispatch()",
    "  least_busy_agent",
    "  hook.claim",
    "    hook.claim_once (the claim's statement)",
    "    gitops.head_sha",
    "  Session.queue",
    "  queues.enqueue_session",
    "run_session(): job start -> agent's first act",
    "  Session.start",
    "  Run.prepare",
    "    gitops.clone_for_session",
    "    SessionIndex() (read-tree; here and in collect)",
    "    inject.render_context",
    "  Run.launch",
    "    Session.issue_token",
    "    processes.spawn",
    "run_session(): the whole job",
    "  Run.watch (agent running, log pumped)",
    "    Run.look (here and in collect)",
    "  Run.collect",
    "    lifecycle.hand_in",
    "new database connection (each forked job opens one)",
]


def trace_starts(source, tag, agents, world, runs=10):
    """dispatch() and run_session() of `runs` beads, in this process with the workers
    stopped, each step timed. A repository of its own: its beads stay in review."""
    from django.db import connection

    from agents import queues
    from agents.jobs import dispatch as dispatch_module
    from agents.jobs import runner
    from agents.models import Session
    from agents.moves import lifecycle
    from beads import hook
    from beads.models import Bead
    from knowledge import inject
    from workspace import gitops, processes

    repo = register(source, f"bench-{tag}-trace", max_agents=1)
    world.repos.append(repo)
    use_agent(agents, "oneshot")
    tracer = Tracer()
    free_slots = dispatch_module.free_slots
    dispatch_module.free_slots = lambda: 1  # this process only: no worker is listening

    wraps = [
        (dispatch_module, "dispatch", "dispatch()"),
        (dispatch_module, "least_busy_agent", "  least_busy_agent"),
        (hook, "claim", "  hook.claim"),
        (hook, "claim_once", "    hook.claim_once (the claim's statement)"),
        (Bead, "start", "    Bead.start"),
        (gitops, "head_sha", "    gitops.head_sha"),
        (Session, "queue", "  Session.queue"),
        (queues, "enqueue_session", "  queues.enqueue_session"),
        (Session, "start", "  Session.start"),
        (runner.Run, "prepare", "  Run.prepare"),
        (gitops, "clone_for_session", "    gitops.clone_for_session"),
        (gitops.SessionIndex, "__init__", "    SessionIndex() (read-tree; here and in collect)"),
        (inject, "render_context", "    inject.render_context"),
        (runner.Run, "launch", "  Run.launch"),
        (Session, "issue_token", "    Session.issue_token"),
        (processes, "spawn", "    processes.spawn"),
        (runner.Run, "watch", "  Run.watch (agent running, log pumped)"),
        (runner.Run, "look", "    Run.look (here and in collect)"),
        (runner.Run, "collect", "  Run.collect"),
        (lifecycle, "hand_in", "    lifecycle.hand_in"),
    ]
    try:
        for owner, name, label in wraps:
            tracer.wrap(owner, name, label)
        for i in range(runs):
            bead = Bead.objects.create(repository=repo, title=f"Traced {i}", scope=["bench/"])
            tracer.begin()
            if dispatch_module.dispatch() != 1:
                raise SystemExit("the traced dispatch started nothing")
            session = Session.objects.get(bead=bead)
            started = time.time()
            runner.run_session(session.pk)
            whole = time.time() - started
            first_act = read_stamp(bead.pk) - started
            connection.close()
            before = time.perf_counter()
            connection.ensure_connection()
            connect = time.perf_counter() - before
            tracer.end(
                **{
                    "run_session(): job start -> agent's first act": first_act,
                    "run_session(): the whole job": whole,
                    "new database connection (each forked job opens one)": connect,
                }
            )
    finally:
        tracer.restore()
        dispatch_module.free_slots = free_slots
    return tracer.rows(TRACE_LABELS)


# Verification


def verify(repos, base, landed):
    """What is wrong: each repository must have one new linear commit per landed bead."""
    from agents.models import Submission
    from beads.models import Bead

    problems = []
    for repo in repos:
        n = landed[repo.slug]
        count = int(git(repo.canonical_path, "rev-list", "--count", f"{base}..{repo.branch}"))
        merges = git(repo.canonical_path, "rev-list", "--merges", f"{base}..{repo.branch}").split()
        statuses = Counter(
            Submission.objects.filter(repository=repo).values_list("status", flat=True)
        )
        beads = Counter(Bead.objects.filter(repository=repo).values_list("status", flat=True))
        if count != n:
            problems.append(f"{repo.slug}: {count} new commits, not {n}")
        if merges:
            problems.append(f"{repo.slug}: {len(merges)} merge commit(s)")
        if statuses != Counter({"committed": n}):
            problems.append(f"{repo.slug}: submissions {dict(statuses)}")
        if beads != Counter({"closed": n}):
            problems.append(f"{repo.slug}: beads {dict(beads)}")
    return problems


# Figures


def pct(values, q):
    """The q-quantile (0..1) of values, linearly interpolated."""
    s = sorted(values)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def verdict(ok):
    return "met" if ok else "MISSED"


def ms_row(title, values, width=44):
    ms = [v * 1000 for v in values]
    return (
        f"{title:<{width}}{len(ms):>4}{pct(ms, 0.5):>9.0f}{pct(ms, 0.95):>9.0f}"
        f"{max(ms):>9.0f}{mean(ms):>9.0f}"
    )


def ms_header(width=44):
    return f"{'':<{width}}{'n':>4}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'mean ms':>9}"


def print_dispatch(title, starts):
    print(f"dispatch latency, {title}, by stage:")
    print(ms_header())
    print(ms_row("bead committed -> agent's first act", [s.latency for s in starts]))
    print(
        ms_row("  committed -> claimed (dispatch job)", [s.claimed - s.committed for s in starts])
    )
    print(ms_row("  claimed -> session job started", [s.started - s.claimed for s in starts]))
    print(ms_row("  session job started -> first act", [s.first_act - s.started for s in starts]))
    for ask in sorted({s.ask for s in starts}):
        latencies = [s.latency for s in starts if s.ask == ask]
        print(ms_row(f"  beads whose dispatch ask was {ask}", latencies))
    for before, after in zip(starts, [*starts[1:], None], strict=True):
        if before.latency < DISPATCH_GOAL_S:
            continue
        line = (
            f"  slow: {before.latency * 1000:.0f} ms, ask {before.ask}, claimed "
            f"{(before.claimed - before.committed) * 1000:.0f} ms after its commit"
        )
        if after is not None and after.committed < before.claimed:
            line += (
                f", {(before.claimed - after.committed) * 1000:.0f} ms after the next bead's "
                "(whose dispatch took it)"
            )
        print(line)


def print_log(lines, chunks):
    print(f"log latency: {len(lines)} lines in {chunks} LogChunks")
    print(ms_header())
    print(ms_row("line printed -> readable in LogChunk", [at - stamp for _, stamp, at in lines]))


def print_burst(result, repos, workers):
    runs = [ended - started for _, started, ended in result.sessions]
    waits = [started - created for created, started, _ in result.sessions]
    lead = [finished - started for _, started, finished in result.landings]
    queued = [started - queued for queued, started, _ in result.landings]
    busy = sum(runs) / (workers * result.seconds)
    ended = sorted(e for _, _, e in result.sessions)
    # A slot frees when a session hands in; the next claim refills it.
    refills = [
        created - max(e for e in ended if e < created)
        for created, _, _ in result.sessions
        if any(e < created for e in ended)
    ]
    print(
        f"burst: {result.n} beads over {len(repos)} repositories (max_agents "
        f"{BURST_MAX_AGENTS} each), all closed in {result.seconds:.2f} s = "
        f"{result.per_minute:.1f} sessions/minute"
    )
    asks = ", ".join(f"{n} {ask}" for ask, n in sorted(result.asks.items()))
    print(f"dispatch asks made by the burst's commit: {asks}")
    print(ms_header())
    print(ms_row("session: claimed -> job started", waits))
    print(ms_row("session: job started -> handed in", runs))
    print(ms_row("a session handed in -> the next claimed", refills))
    print(ms_row("submission: queued -> lead started", queued))
    print(ms_row("submission: lead started -> committed", lead))
    print(f"session workers busy (started -> handed in): {busy:.0%} of {workers} workers")
    print(f"bound from the run time alone: {workers * 60 / mean(runs):.1f} sessions/minute")


def print_trace(rows):
    print("one start traced in this process (workers stopped), median ms per run:")
    for label, ms, calls in rows:
        times = f" x{calls:g}" if calls not in (0, 1) else ""
        print(f"  {label:<56}{ms:>8.1f}{times}")


def print_stages(rows):
    print("the hops around a start (each alone, idle system, median ms):")
    for title, ms in rows:
        print(f"  {title:<52}{ms:>8.1f}")


def print_errors(errors):
    if not errors:
        print("exceptions in the processes' logs: none")
    for name, found in errors.items():
        for exception, (count, frames) in found.items():
            print(f"exceptions in {name}'s log: {count} {exception}, the first from")
            for frame in frames:
                print(f"    {frame}")


def print_summary(args, starts, steady, lines, result, problems, to_running, handed_in):
    latencies = {
        "dispatch, one at a time": [s.latency for s in starts],
        f"dispatch, one every {args.interval:g} s": [s.latency for s in steady],
        "log line -> readable in the database": [at - stamp for _, stamp, at in lines],
        f"ready -> running, {args.workers} session workers": to_running,
        "hand-in -> commit, idle lead queue": handed_in,
    }
    goals = [DISPATCH_GOAL_S, DISPATCH_GOAL_S, LOG_GOAL_S, READY_GOAL_S, HANDIN_GOAL_S]
    print(
        f"\n== summary: {database_vendor()}, {args.workers} session workers, "
        f"ticker {'off' if args.no_tick else 'on'}, dispatch worker "
        f"{args.dispatch_worker_class or 'rq.Worker'}, {os.cpu_count()} CPUs, {load()} =="
    )
    print(ms_header() + "  goal (p95)")
    for (title, values), goal in zip(latencies.items(), goals, strict=True):
        ok = pct(values, 0.95) < goal
        print(ms_row(title, values) + f"  < {goal * 1000:.0f} ms: {verdict(ok)}")
        figure(f"sessions: {title} p95, {database_vendor()}", pct(values, 0.95) * 1000, "ms",
               f"< {goal * 1000:.0f}", ok)  # fmt: skip
    print(
        f"throughput: {result.n} sessions in {result.seconds:.2f} s = "
        f"{result.per_minute:.1f} sessions/minute (bead created -> closed by the lead)"
    )
    asks = Counter(DISPATCH_ASKS)
    failed = sum(n for ask, n in asks.items() if ask not in ("queued", "started"))
    print(
        "dispatch asks made by this process: "
        + ", ".join(f"{n} {ask}" for ask, n in sorted(asks.items()))
        + (f" ({failed} raised: lost until the next ask)" if failed else "")
    )
    print("verified: " + ("; ".join(problems) if problems else "every bead landed as one commit"))


# The benchmark


def benchmark(args, home, world):
    observe_dispatch_asks()
    tag = secrets.token_hex(3)
    print(f"{database_vendor()}, CORRAL_HOME {home}, {os.cpu_count()} CPUs, {load()}")
    source = make_source(home / "source")
    base = git(source, "rev-parse", "HEAD").strip()
    latency_repo = register(source, f"bench-{tag}-latency", max_agents=args.workers)
    world.repos.append(latency_repo)
    burst_repos = [
        register(source, f"bench-{tag}-{k}", max_agents=BURST_MAX_AGENTS)
        for k in range(1, args.repos + 1)
    ]
    world.repos += burst_repos
    agents = make_agents(tag, args)
    world.agents += agents.values()
    repos = [latency_repo, *burst_repos]

    procs = Processes(
        worker_env(home), home, repos, not args.no_tick, args.dispatch_worker_class, args.workers
    )
    try:
        print(f"workers ready in {procs.wait_ready():.1f} s")
        use_agent(agents, "oneshot")
        starts = dispatch_idle(latency_repo, args.beads, procs)
        print_dispatch("one at a time on the idle system", starts)
        steady = dispatch_steady(latency_repo, args.beads, args.interval, procs)
        print_dispatch(f"one bead every {args.interval:g} s", steady)
        to_running, handed_in = unblocked(latency_repo, args.unblocked, procs)
        print(ms_header())
        print(ms_row("ready (blocker landed) -> running", to_running))
        print(ms_row("hand-in -> commit, idle lead queue", handed_in))

        use_agent(agents, "chatty")
        lines, chunks = log_latency(latency_repo, args.lines, procs)
        print_log(lines, chunks)

        use_agent(agents, "oneshot")
        result = burst(burst_repos, args.burst, procs)
        print_burst(result, burst_repos, args.workers)

        print_stages(stages(home, procs))
        print(load())
    finally:
        procs.stop()
        kill_agents(agents, home)
    if errors := procs.errors():
        kept = Path(tempfile.mkdtemp(prefix="corral-bench-logs-"))
        shutil.copytree(home / "logs", kept, dirs_exist_ok=True)
        print(f"the processes' logs are kept in {kept}")
    print_errors(errors)
    print_trace(trace_starts(source, tag, agents, world))

    landed = {latency_repo.slug: 2 * args.beads + 1 + 2 * args.unblocked}
    for i in range(args.burst):
        slug = burst_repos[i % len(burst_repos)].slug
        landed[slug] = landed.get(slug, 0) + 1
    problems = verify(repos, base, landed)
    print_summary(args, starts, steady, lines, result, problems, to_running, handed_in)
    return 1 if problems else 0


def main():
    sys.exit(run_with_world("corral-bench-sessions-", benchmark, parse_args(), DEFAULT_REDIS_URL))


if __name__ == "__main__":
    main()
