"""A failure's headline: the one line of a refusal, a gate's detail or a
check's output that says what failed, shown with the rest folded beneath it.

The rule, first found wins:

1. the first exception line: `AssertionError: 3 != 4`, `ModuleNotFoundError: ...`
   (pytest's `E   AssertionError: ...` too, its `E` dropped);
2. else the test runner's verdict: unittest's `FAILED (failures=1)`, pytest's
   `FAILED tests/test_x.py::test_y - ...` or `=== 1 failed in 0.1s ===`;
3. else the first line that says something: not blank, not a rule of ===== or
   ----- as unittest prints, not one starting `Exit code` (the check gate's first).

At most HEADLINE_CHARS characters of it.
"""

import re

HEADLINE_CHARS = 160
EXCEPTION = re.compile(r"^(?:E\s+)?([A-Za-z_][\w.]*(?:Error|Exception)\b: .*)$")
VERDICT = re.compile(r"^(?:FAILED\b.*|=+ .*\b(?:failed|errors?)\b.* =+)$")


def says_something(line: str) -> bool:
    return any(c.isalnum() for c in line) and not line.startswith("Exit code")


def headline(output: str | None) -> str:
    """The line of `output` that says what failed (see the module's rule)."""
    lines = [line.strip() for line in (output or "").splitlines()]
    for line in lines:
        if found := EXCEPTION.match(line):
            return found.group(1)[:HEADLINE_CHARS]
    for line in lines:
        if VERDICT.match(line):
            return line[:HEADLINE_CHARS]
    said = [line for line in lines if says_something(line)]
    return (said or [""])[0][:HEADLINE_CHARS]
