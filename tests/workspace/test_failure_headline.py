"""A failure's headline: the line that says what failed, from real unittest
and pytest output, with the whole output folded beneath it on a page."""

import os
import subprocess
import sys

from django.template import Context, Template

from workspace.failures import HEADLINE_CHARS, headline

FAILING_TEST = """import unittest


class SumTests(unittest.TestCase):
    def test_add(self):
        self.assertEqual(1 + 2, 4)

    def test_fine(self):
        self.assertTrue(True)
"""

PLAIN_ASSERT = """def test_add():
    total = 1 + 2
    assert total == 4
"""


def run(tmp_path, *argv):
    """Output as the check gate stores it: its exit code, then stdout and stderr."""
    env = {"PATH": os.environ["PATH"], "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run(
        [sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    return f"check gate: Exit code {done.returncode}.\n{done.stdout}{done.stderr}"


def test_unittests_headline_is_its_assertion(tmp_path):
    (tmp_path / "test_sum.py").write_text(FAILING_TEST)
    output = run(tmp_path, "-m", "unittest", "test_sum")
    assert "FAILED (failures=1)" in output  # the verdict is there, and a better line too
    assert headline(output) == "AssertionError: 3 != 4"


def test_pytests_headline_is_its_failed_line_when_no_exception_is_named(tmp_path):
    (tmp_path / "test_plain.py").write_text(PLAIN_ASSERT)
    output = run(tmp_path, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_plain.py")
    assert headline(output) == "FAILED test_plain.py::test_add - assert 3 == 4"


def test_pytests_exception_line_loses_its_e_marker():
    output = "E       AssertionError: the totals differ\n=== 1 failed in 0.01s ===\n"
    assert headline(output) == "AssertionError: the totals differ"


def test_without_a_test_runner_the_first_line_that_says_something():
    assert headline("Exit code 2.\n=====\nmissing fixture db\n") == "missing fixture db"
    assert headline("scope gate: src/x.py is outside the scope\nmore") == (
        "scope gate: src/x.py is outside the scope"
    )
    assert headline("") == "" and headline(None) == ""
    assert len(headline("x" * 500)) == HEADLINE_CHARS


def render(tag, text):
    return Template("{% load corral_display %}{% " + tag + " text %}").render(
        Context({"text": text})
    )


def test_a_failure_folds_its_whole_output_beneath_its_headline(tmp_path):
    (tmp_path / "test_sum.py").write_text(FAILING_TEST)
    output = run(tmp_path, "-m", "unittest", "test_sum")
    html = render("failure", output)
    assert html.startswith(
        '<details class="output failure"><summary>AssertionError: 3 != 4</summary>'
    )
    assert '<pre class="detail">check gate: Exit code 1.\n' in html
    assert "FAILED (failures=1)</pre></details>" in html


def test_a_one_line_failure_is_not_folded_and_passed_output_shows_its_first_line():
    assert render("failure", "paths gate: .git/config") == (
        '<span class="output failure">paths gate: .git/config</span>'
    )
    html = render("output", "Passed.\nRan 2 tests\n\nOK\n")
    assert html.startswith('<details class="output"><summary>Passed.</summary>')
