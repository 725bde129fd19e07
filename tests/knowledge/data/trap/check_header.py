"""The repositories' check: every Python module under src/ starts with the licence line."""

import pathlib
import sys

HEADER = "# SPDX-License-Identifier: MIT"
bad = [p for p in sorted(pathlib.Path("src").rglob("*.py")) if not p.read_text().startswith(HEADER)]
for path in bad:
    print(f"{path}: every module must start with the line '{HEADER}'")
sys.exit(1 if bad else 0)
