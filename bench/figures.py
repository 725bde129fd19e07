"""The figures a benchmark reports against a goal, for `make bench` (bench/run.py).

A script calls figure() for each figure that has a goal: it prints one line,
and when BENCH_FIGURES names a file (bench/run.py sets it) appends the figure
to it as one JSON line.
"""

import json
import os


def figure(name: str, value: float | None, unit: str, goal: str, met: bool | None) -> None:
    """One figure: its value (None if it could not be measured), the goal as
    text ("< 10", ">= 1.8"), and whether it was met."""
    shown = "n/a" if value is None else f"{value:.2f}"
    line = f"figure: {name}: {shown} {unit}".rstrip()
    if goal:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[met]
        line += f" (goal {goal} {unit}".rstrip() + f"): {verdict}"
    print(line)
    path = os.environ.get("BENCH_FIGURES")
    if path:
        row = {"figure": name, "value": value, "unit": unit, "goal": goal, "met": met}
        with open(path, "a") as out:
            out.write(json.dumps(row) + "\n")
