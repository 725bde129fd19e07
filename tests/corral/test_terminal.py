"""up's terminal: each line prefixed with the time and its process's name,
padded to the longest, coloured per process only where colour is wanted."""

import io
import re
import subprocess
import sys

import pytest

from corral.terminal import Console, wants_colour

PREFIX = re.compile(r"^\d\d:\d\d:\d\d (\S+) *\| (.*)$")
ESCAPE = re.compile(r"\x1b\[(\d+)m")


class Terminal(io.StringIO):
    """A stream that is a terminal, or not."""

    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize(
    ("tty", "environ", "coloured"),
    [
        (True, {}, True),
        (False, {}, False),
        (False, {"FORCE_COLOR": "1"}, True),
        (True, {"NO_COLOR": "1"}, False),
        (True, {"NO_COLOR": ""}, True),  # set but empty: no-color.org says it does not count
        (True, {"TERM": "dumb"}, False),
        (False, {"FORCE_COLOR": "0"}, False),
        (True, {"NO_COLOR": "1", "FORCE_COLOR": "1"}, True),  # asked for in so many words
    ],
)
def test_colour_only_on_a_terminal_or_when_forced_and_never_with_no_color(tty, environ, coloured):
    assert wants_colour(Terminal(tty), environ) is coloured


def test_lines_are_prefixed_with_the_time_and_the_name_padded_to_the_longest():
    out = Terminal(False)
    console = Console(out, ["up", "session-worker-1"], colour=False)
    console.say("up", "Corral is running at http://127.0.0.1:8000/")
    console.say("session-worker-1", "a warning")
    lines = out.getvalue().splitlines()
    assert [PREFIX.match(line).groups() for line in lines] == [
        ("up", "Corral is running at http://127.0.0.1:8000/"),
        ("session-worker-1", "a warning"),
    ]
    assert lines[0].index("|") == lines[1].index("|")
    assert not ESCAPE.search(out.getvalue())


def test_each_process_has_a_colour_of_its_own_around_its_prefix_only():
    out = Terminal(True)
    console = Console(out, ["up", "web", "worker"], colour=True)
    for name in ("up", "web", "worker", "web"):
        console.say(name, f"from {name}")
    lines = out.getvalue().splitlines()
    codes = [ESCAPE.match(line)[1] for line in lines]
    assert len(set(codes[:3])) == 3 and codes[1] == codes[3]
    assert all(
        line.endswith(f"\x1b[0m from {name}")
        for line, name in zip(lines, ["up", "web", "worker", "web"], strict=True)
    )


def test_a_childs_output_is_read_a_line_at_a_time_and_prefixed():
    out = Terminal(False)
    console = Console(out, ["web"], colour=False)
    child = subprocess.Popen(
        [sys.executable, "-c", "print('one'); print('two', flush=True); print('tré')"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    console.pump("web", child.stdout).join(10)
    assert child.wait(10) == 0
    said = [PREFIX.match(line).groups() for line in out.getvalue().splitlines()]
    assert said == [("web", "one"), ("web", "two"), ("web", "tré")]
