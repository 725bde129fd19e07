"""`make bench`: run every benchmark, then one table of figures against their goals.

Run from the repository root:

    .venv/bin/python bench/run.py [--only up,lead] [--quick] [--results bench/results.json]

Each benchmark below runs as its own process with its output shown as it
comes; the figures it reports with bench/figures.py's figure() are gathered
into one table (figure, value, goal, met or not) and written with the time,
the machine's load and the database to the results file. The figures of the
results file found there before are shown alongside, so two runs compare. A
new benchmark joins with one line in BENCHMARKS. Exits 1 if a benchmark
failed or a goal was missed.

--quick (or BENCH_QUICK=1) runs every benchmark at small sizes (common.sizes),
to check that the whole run works; its figures go to bench/results-quick.json
and say nothing of the goals, which are set at the issues' sizes.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import load, quick

ROOT = Path(__file__).resolve().parent.parent

# name -> the script and its arguments (from the repository root)
BENCHMARKS = {
    "hook": ["bench/hook.py"],
    "lead": ["bench/lead.py"],
    "pages": ["bench/pages.py"],
    "review": ["bench/review.py"],
    "sessions": ["bench/sessions.py"],
    "up": ["bench/up.py"],
    "planner": ["bench/planner.py"],
    "knowledge": ["bench/knowledge.py"],
    "pack": ["bench/pack.py"],
    "changesets": ["bench/changesets.py"],
    "bd_import": ["bench/bd_import.py"],
    "git_http": ["bench/git_http.py"],
    "operability": ["bench/operability.py"],
    "chaos": ["bench/chaos.py"],
    "diff": ["bench/diff.py"],
    "upstream": ["bench/upstream.py"],
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", default="", help="comma-separated names: " + ", ".join(BENCHMARKS)
    )
    parser.add_argument(
        "--quick", action="store_true", default=quick(), help="every benchmark small"
    )
    parser.add_argument("--results", help="default bench/results.json (quick: results-quick)")
    args = parser.parse_args()
    name = "results-quick.json" if args.quick else "results.json"
    args.results = args.results or str(ROOT / "bench" / name)
    args.names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    if unknown := set(args.names) - set(BENCHMARKS):
        parser.error(f"no benchmark {', '.join(sorted(unknown))}")
    return args


def run(name, figures_path, is_quick):
    """Run one benchmark; its exit code and how long it took."""
    print(f"\n######## {name}: {' '.join(BENCHMARKS[name])} ({load()})", flush=True)
    started = time.monotonic()
    env = dict(os.environ, BENCH_FIGURES=str(figures_path), BENCH_NAME=name)
    env["BENCH_QUICK"] = "1" if is_quick else ""
    code = subprocess.call([sys.executable, *BENCHMARKS[name]], cwd=ROOT, env=env)
    return code, time.monotonic() - started


def read_figures(path, name):
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [dict(row, benchmark=name) for row in rows]


def previous(path):
    """{figure name: value} from the results file of an earlier run."""
    try:
        return {row["figure"]: row["value"] for row in json.loads(path.read_text())["figures"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def shown(value):
    return "n/a" if value is None else f"{value:.2f}"


def print_table(figures, codes, before, is_quick):
    width = max([len(row["figure"]) for row in figures] + [20])
    title = "make bench --quick (small sizes)" if is_quick else "make bench"
    print(f"\n== {title}: {len(figures)} figures ({load()}) ==")
    print(f"{'figure':<{width}}  {'value':>10}  {'before':>10}  {'goal':<12}  verdict")
    for row in figures:
        verdict = {True: "met", False: "MISSED", None: "-"}[row["met"]]
        goal = f"{row['goal']} {row['unit']}".strip() if row["goal"] else "-"
        print(
            f"{row['figure']:<{width}}  {shown(row['value']):>10}  "
            f"{shown(before.get(row['figure'])):>10}  {goal:<12}  {verdict}"
        )
    for name, (code, seconds) in codes.items():
        count = sum(row["benchmark"] == name for row in figures)
        print(f"{name}: exit {code} after {seconds:.0f} s, {count} figures")


def main():
    args = parse_args()
    results = Path(args.results)
    before = previous(results)
    database = "postgresql" if os.environ.get("DATABASE_URL") else "sqlite"
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_at_start = load()
    figures, codes = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-figures-") as scratch:
        for name in args.names:
            path = Path(scratch) / f"{name}.jsonl"
            codes[name] = run(name, path, args.quick)
            figures += read_figures(path, name)
    print_table(figures, codes, before, args.quick)
    report = {
        "started": started,
        "cpus": os.cpu_count(),
        "database": database,
        "quick": args.quick,
        "load_at_start": load_at_start,
        "load_at_end": load(),
        "exit_codes": {name: code for name, (code, _) in codes.items()},
        "figures": figures,
    }
    results.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {results}")
    failed = any(code for code, _ in codes.values()) or any(r["met"] is False for r in figures)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
