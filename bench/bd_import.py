"""How fast a bd export imports: 10,000 beads with 15,000 dependencies.

Run from the repository root:

    .venv/bin/python bench/bd_import.py [--beads 10000] [--dependencies 15000]

PostgreSQL when DATABASE_URL is set (a database that does not exist yet is
created and dropped at the end; one that exists must hold no dependencies),
else SQLite in a temporary CORRAL_HOME. The file is made in bd's shape:
several prefixes, dotted child IDs, bd's statuses and types, every dependency
type (blocks edges only point to earlier beads, so there is no cycle), a few
external dependencies and unknown keys.

Figures: seconds to read the file and import it into an empty repository
(goal: under 10 s), to import it again (nothing changes), to import it with
one title in ten changed, and to export it. Exits 1 unless the counts match
and the second import changed nothing.
"""

import argparse
import io
import random
import sys
import time
from pathlib import Path

from common import database_vendor, load, scratch_django, sizes
from figures import figure

GOAL_S = 10.0
STATUSES = ["open"] * 5 + ["closed"] * 3 + ["in_progress", "blocked", "deferred"]
STATUSES += ["hooked", "pinned", "tombstone"]
TYPES = ["task"] * 6 + ["bug", "feature", "chore", "epic", "molecule", "agent", "gate", "convoy"]
DEP_TYPES = ["blocks"] * 6 + ["parent-child"] * 3 + ["related", "discovered-from"]
DEP_TYPES += ["waits-for", "conditional-blocks", "tracks"]
TIME = "2026-01-08T23:07:13.345837+05:30"


def records(beads: int, dependencies: int, rng: random.Random) -> list[dict]:
    ids = []
    for n in range(beads):
        prefix = rng.choice(["bd", "gt", "hq"])
        ids.append(f"{prefix}-{n:x}" + (f".{rng.randint(1, 9)}" if rng.random() < 0.2 else ""))
    out = []
    for n, bead_id in enumerate(ids):
        record = {
            "id": bead_id,
            "title": f"Bead {n}",
            "description": "Imported from bd.\n" * rng.randint(0, 3),
            "status": rng.choice(STATUSES),
            "priority": rng.randint(0, 4),
            "issue_type": rng.choice(TYPES),
            "created_at": TIME,
            "created_by": "bench",
            "updated_at": TIME,
            "labels": rng.sample(["api", "web", "infra", "docs"], k=rng.randint(0, 2)),
        }
        if rng.random() < 0.05:
            record["ephemeral"] = True
        if rng.random() < 0.05:
            record["metadata"] = {"n": n}
        out.append(record)
    pairs = set()
    while len(pairs) < dependencies:
        n = rng.randint(1, beads - 1)
        pairs.add((n, rng.randint(0, n - 1)))  # always an earlier bead: no cycle
    for n, target in sorted(pairs):
        entry = {
            "issue_id": ids[n],
            "depends_on_id": ids[target],
            "type": rng.choice(DEP_TYPES),
            "created_at": TIME,
            "created_by": "bench",
        }
        out[n].setdefault("dependencies", []).append(entry)
    for record in rng.sample(out, k=beads // 100):
        external = {"issue_id": record["id"], "depends_on_id": "external:other:x", "type": "blocks"}
        record.setdefault("dependencies", []).append(external)
    return out


def timed(what: str, func):
    start = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - start
    print(f"  {what:<40} {seconds:7.2f} s")
    return result, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beads", type=int, default=sizes(10_000, 1_000))
    parser.add_argument("--dependencies", type=int, default=sizes(15_000, 1_500))
    args = parser.parse_args()
    with scratch_django("bench-bd-", "redis://127.0.0.1:6379/10") as scratch:
        return benchmark(args, scratch.home)


def benchmark(args, home: Path) -> int:
    from beads import jsonl
    from beads.models import Bead, Dependency
    from workspace.models import Repository, Workspace

    data = records(args.beads, args.dependencies, random.Random(12))
    path = home / "issues.jsonl"
    with open(path, "w", encoding="utf-8") as stream:
        jsonl.write(data, stream)
    repo = Repository.objects.create(
        workspace=Workspace.default(), name="bench", slug="bench", bead_prefix="bd"
    )
    try:
        print(f"bd import on {database_vendor()}, {load()}")
        print(
            f"  {args.beads} beads, {args.dependencies} dependencies, {path.stat().st_size} bytes"
        )
        first, seconds = timed(
            "read + import (all new)",
            lambda: jsonl.import_records(jsonl.read_numbered(path), repo),
        )
        again, _ = timed(
            "read + import again (no change)",
            lambda: jsonl.import_records(jsonl.read_numbered(path), repo),
        )
        for record in data[::10]:
            record["title"] += " (renamed)"
        changed, _ = timed(
            "import with 1 in 10 titles changed", lambda: jsonl.import_records(data, repo)
        )
        beads = Bead.objects.filter(repository=repo).prefetch_related(
            "dependencies", "comments__person"
        )
        timed("export", lambda: jsonl.write(jsonl.export_records(beads), io.StringIO()))
        internal = sum(
            1
            for r in data
            for d in r.get("dependencies", [])
            if not d["depends_on_id"].startswith("external:")
        )
        ok = (
            len(first.created) == args.beads
            and Dependency.objects.count() == internal == args.dependencies
            and (len(again.created), len(again.updated)) == (0, 0)
            and len(changed.updated) == len(data[::10])
        )
        verdict = "meets" if seconds < GOAL_S else "MISSES"
        print(f"  first import {seconds:.2f} s: {verdict} the goal of {GOAL_S:.0f} s; {load()}")
        print("  counts: " + ("as expected" if ok else "WRONG"))
        figure(f"bd_import: first import, {args.beads} beads, {database_vendor()}", seconds, "s",
               f"< {GOAL_S:g}", seconds < GOAL_S)  # fmt: skip
        return 0 if ok else 1
    finally:  # a database that was there before keeps nothing of this run
        Bead.objects.filter(repository=repo).delete()
        repo.delete()


if __name__ == "__main__":
    sys.exit(main())
