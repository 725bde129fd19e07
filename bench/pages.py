"""How fast the dashboard's pages answer at fleet scale, and how many queries they make.

Run from the repository root:

    .venv/bin/python bench/pages.py [--beads 100000] [--sessions 50000] [--runs 30]
        [--largest BEADS] [--profile PAGE ...]

SQLite in a temporary CORRAL_HOME, or PostgreSQL when DATABASE_URL is set (a
database that does not exist yet is created and dropped at the end, as
bench/hook.py does). The workspace is bench/hook.py's (30 repositories, the
beads with their dependencies, in-progress work and a plan), its largest
repository holding --largest beads (a fifth of them: 20,000 of 100,000), plus
--sessions finished sessions on its closed beads, each with a log chunk, its
tokens (one usage row, on one of two priced models) and a committed
submission. Each page (the overview, the largest repository's page and lead
queue, the hook, a session, a submission, usage, /metrics scraped from an
allowed address, audit, problems, the bead list, a bead, plans, a plan, change
sets, knowledge) is fetched through Django's test Client as a logged-in admin:
--runs timed runs after 3 untimed, p50/p95 and the queries of one run (run it
at two sizes to see they do not grow).

`--profile hook overview ...` (page names as printed): after the timings, each
named page's five slowest queries and the functions of Corral's own code where
its time goes (cProfile, by cumulative time).

Goal: every page under 150 ms p95 (through the test Client: no HTTP server,
so a little under what a browser sees).
"""

import argparse
import os
import random
import time
from datetime import timedelta

from common import load, make_source, run_with_world, sizes, timed_page
from figures import figure

GOAL_MS = 150.0
MODELS = ["claude-sonnet-4-5", "gpt-5-codex"]


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beads", type=int, default=sizes(100_000, 2_000))
    parser.add_argument("--sessions", type=int, default=sizes(50_000, 1_000))
    parser.add_argument("--runs", type=int, default=sizes(30, 10))
    parser.add_argument(
        "--largest", type=int, default=None, help="beads in the largest repository (a fifth)"
    )
    parser.add_argument("--profile", nargs="*", default=[], metavar="PAGE", help="where time goes")
    return parser.parse_args()


def profile(client, name, url):
    """A page's five slowest queries and where its time goes in Corral's code."""
    import cProfile
    import pstats

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    print(f"\n== {name}: its slowest queries (ms)")
    for query in sorted(queries.captured_queries, key=lambda q: -float(q["time"]))[:5]:
        print(f"{float(query['time']) * 1000:8.1f}  {query['sql'][:160]}")
    profiler = cProfile.Profile()
    profiler.enable()
    client.get(url)
    profiler.disable()
    print(f"== {name}: where its time goes (cumulative, Corral's code)")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(
        r"/(corral|agents|beads|workspace|knowledge)/", 14
    )


def add_sessions(world, n, rng):
    """n finished sessions on closed beads, each with a log chunk, its tokens on
    one of two models and a committed submission."""
    import hook  # it imports Corral's apps: only once scratch_django() has set Django up
    from django.utils import timezone

    from agents.models import LogChunk, Price, Session, Submission, TokenUsage, UsageDay
    from beads.models import Bead

    agent = hook.make_agent(world, "bench-pages-agent")
    closed = list(Bead.objects.filter(status="closed").values_list("id", "repository_id"))
    now = timezone.now()
    sessions, subs = [], []
    for i in range(n):
        bead_id, repo_id = closed[i % len(closed)]
        ended = now - timedelta(minutes=n - i)
        session = Session(
            agent=agent,
            bead_id=bead_id,
            status="succeeded",
            base_sha="0" * 40,
            created_at=ended - timedelta(minutes=5),
            started_at=ended - timedelta(minutes=4),
            ended_at=ended,
            exit_code=0,
            changed_files=["src/app.py"],
            summary="Did the work.",
        )
        sessions.append(session)
        subs.append(
            Submission(
                session=session,
                bead_id=bead_id,
                repository_id=repo_id,
                status="committed",
                commit_sha=f"{i:040x}",
                queued_at=ended - timedelta(seconds=30),
                finished_at=ended,
            )
        )
    for row in (*sessions, *subs):
        row.fill_durations()  # as their moves write them (bulk_create calls no save())
    Session.objects.bulk_create(sessions, batch_size=2000)
    Submission.objects.bulk_create(subs, batch_size=2000)
    chunks = [LogChunk(session=s, seq=0, text=f"line of session {s.pk}\n" * 20) for s in sessions]
    LogChunk.objects.bulk_create(chunks, batch_size=2000)
    usage = [
        TokenUsage(
            session=s,
            agent=agent,
            repository_id=sub.repository_id,
            model=rng.choice(MODELS),
            channel="claude-code",
            input=rng.randrange(1_000, 50_000),
            output=rng.randrange(500, 20_000),
            cache_read=rng.randrange(0, 200_000),
            cache_write=rng.randrange(0, 20_000),
            updated_at=s.ended_at,
            day=s.created_at.date(),
        )
        for s, sub in zip(sessions, subs, strict=True)
    ]
    TokenUsage.objects.bulk_create(usage, batch_size=2000)
    UsageDay.rebuild()  # the days' rollup, which save() keeps and bulk_create skips
    for model in MODELS:
        Price.objects.get_or_create(
            model=model, defaults={"input_per_mtok": 3, "output_per_mtok": 15}
        )
    return sessions[-1], subs[-1]


def pages(world, session, submission):
    big = max(world.repos, key=lambda r: r.beads.count())
    return {
        "overview": "/",
        f"repository ({big.slug})": f"/repos/{big.slug}/",
        f"lead queue ({big.slug})": f"/repos/{big.slug}/lead/",
        "hook": "/hook/",
        "session": f"/sessions/{session.pk}/",
        "submission": f"/submissions/{submission.pk}/",
        "usage": "/usage/",
        "metrics": "/metrics",
        "audit": "/audit/",
        "problems": "/problems/",
        "beads": "/beads/",
        f"bead ({submission.bead_id})": f"/beads/{submission.bead_id}/",
        "plans": "/plans/",
        f"plan ({world.plans[0].pk})": f"/plans/{world.plans[0].pk}/",
        "change sets": "/changesets/",
        "knowledge": "/knowledge/",
    }


def benchmark(args, home, world):
    import hook  # as in add_sessions()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    rng = random.Random(1)
    print(f"{connection.vendor}, {os.cpu_count()} CPUs, CORRAL_HOME {home}, {load()}")
    started = time.monotonic()
    hook.register(world, make_source(home / "source"), 30)
    hook.generate(world, args.beads, rng, largest=args.largest or args.beads // 5)
    session, submission = add_sessions(world, args.sessions, rng)
    hook.analyze()
    print(f"loaded {args.beads} beads and {args.sessions} sessions in "
          f"{time.monotonic() - started:.0f} s")  # fmt: skip
    admin = get_user_model().objects.create_superuser("bench-pages", password="x" * 20)
    settings.METRICS_ALLOW = ["127.0.0.1/32"]  # the test Client's address may scrape
    client = Client(HTTP_HOST="localhost")
    client.force_login(admin)
    print(f"\n{'page':<34}{'p50 ms':>9}{'p95 ms':>9}{'queries':>9}")
    for name, url in pages(world, session, submission).items():
        p50, p95, queries = timed_page(client, url, args.runs)
        print(f"{name:<34}{p50:>9.1f}{p95:>9.1f}{queries:>9}")
        figure(f"pages: {name.split(' (')[0]} p95, {args.beads} beads, {connection.vendor}",
               p95, "ms", f"< {GOAL_MS:g}", p95 < GOAL_MS)  # fmt: skip
    for name, url in pages(world, session, submission).items():
        if name.split(" (")[0] in args.profile:
            profile(client, name, url)
    get_user_model().objects.filter(pk=admin.pk).delete()
    print(load())
    return 0


def main():
    raise SystemExit(run_with_world("corral-bench-pages-", benchmark, parse_args()))


if __name__ == "__main__":
    main()
