"""The team's convention: every module in jobs/ names its owner on its first
line, so whoever a failing nightly job pages knows whom to wake."""

import unittest
from pathlib import Path

HEADER = "# owner: items-team"
ROOT = Path(__file__).resolve().parent.parent


class JobOwnerTests(unittest.TestCase):
    def test_every_job_names_its_owner(self):
        for path in sorted((ROOT / "jobs").glob("**/*.py")):
            first = path.read_text().partition("\n")[0]
            if first != HEADER:
                rel = path.relative_to(ROOT).as_posix()
                self.fail(f'{rel}: every module in jobs/ must start with the line "{HEADER}"')
