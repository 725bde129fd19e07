import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from agents.jobs.dispatch import dispatch
from agents.jobs.reconcile import reconcile


class Command(BaseCommand):
    help = "Every few seconds: reconcile() what crashes left behind, then dispatch()."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between ticks")
        parser.add_argument("--once", action="store_true", help="tick once and exit")

    def handle(self, *args: Any, interval: float, once: bool, **opts: Any) -> None:
        # -v 0 (`manage.py up` without --verbose): only repairs are worth a line.
        self.verbosity = int(opts.get("verbosity", 1))
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        while True:
            self.tick()
            if once or stop.wait(interval):
                return

    def tick(self) -> None:
        try:
            repaired = reconcile()
            started = dispatch()
        except Exception as e:  # a database or Redis hiccup: say so, try next tick
            self.stderr.write(f"tick failed: {e}")
            return
        finally:
            connections.close_all()
        if any(repaired.values()) or (started and self.verbosity >= 1):
            parts = [f"{n} {what}" for what, n in repaired.items() if n]
            self.stdout.write(
                f"tick: repaired {', '.join(parts) or 'nothing'}; dispatched {started}"
            )
