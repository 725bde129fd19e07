"""The terminal of `manage.py up`: every line prefixed with the time and the
name of the process that said it, each name in a colour of its own, as
honcho and foreman print. Colour only on a terminal, or when FORCE_COLOR asks
for it; NO_COLOR (https://no-color.org) or TERM=dumb turn it off.
"""

import threading
import time
from collections.abc import Iterable, Mapping
from typing import IO, Any, Protocol

RESET = "\x1b[0m"
# honcho's order: cyan, yellow, green, magenta, red, blue, then their bright kin.
COLOURS = ["36", "33", "32", "35", "31", "34", "96", "93", "92", "95", "91", "94"]


class Stream(Protocol):
    def write(self, text: str) -> Any: ...
    def flush(self) -> Any: ...
    def isatty(self) -> bool: ...


def wants_colour(stream: Stream, environ: Mapping[str, str]) -> bool:
    if environ.get("FORCE_COLOR", "") not in ("", "0", "false"):
        return True
    if environ.get("NO_COLOR", "") or environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


class Console:
    """Lines from many threads (one per child's output, and up's own), whole and in order."""

    def __init__(self, stream: Stream, names: Iterable[str], colour: bool) -> None:
        self.stream = stream
        self.colour = colour
        self.lock = threading.Lock()
        self.width = 0
        self.colours: dict[str, str] = {}
        for name in names:
            self.add(name)

    def add(self, name: str) -> None:
        """A name to prefix lines with, given the next colour."""
        if name not in self.colours:
            self.colours[name] = COLOURS[len(self.colours) % len(COLOURS)]
            self.width = max(self.width, len(name))

    def prefix(self, name: str) -> str:
        self.add(name)
        text = f"{time.strftime('%H:%M:%S')} {name:<{self.width}} |"
        return f"\x1b[{self.colours[name]}m{text}{RESET}" if self.colour else text

    def say(self, name: str, line: str) -> None:
        with self.lock:
            self.stream.write(f"{self.prefix(name)} {line}\n")
            self.stream.flush()

    def pump(self, name: str, pipe: IO[bytes]) -> threading.Thread:
        """Read a child's output in a thread of its own, a line at a time, until it closes."""
        thread = threading.Thread(target=self._pump, args=(name, pipe), daemon=True)
        thread.start()
        return thread

    def _pump(self, name: str, pipe: IO[bytes]) -> None:
        with pipe:
            for raw in iter(pipe.readline, b""):
                self.say(name, raw.decode("utf-8", "replace").rstrip())
