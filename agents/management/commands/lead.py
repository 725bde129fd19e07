import os
import signal
import subprocess
import sys
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections

from agents import queues
from workspace.models import Repository

PUSH_RETRY_S = 60
STOP_GRACE_S = 8  # under `up`'s own grace, so the workers stop before it kills us


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Command(BaseCommand):
    help = "Keep exactly one lead worker per active repository, until SIGTERM or Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between looks")

    def handle(self, *args, interval, **opts):
        self.workers = {}  # slug -> Popen
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.say(f"lead supervisor running (pid {os.getpid()})")
        next_push_retry = time.monotonic() + PUSH_RETRY_S
        while not stop.is_set():
            self.reconcile(self.active_slugs())
            if time.monotonic() >= next_push_retry:
                queues.retry_pushes()
                next_push_retry = time.monotonic() + PUSH_RETRY_S
            stop.wait(interval)
        self.stop_workers(list(self.workers))
        self.say("lead supervisor stopped")

    def active_slugs(self):
        slugs = set(Repository.objects.filter(active=True).values_list("slug", flat=True))
        connections.close_all()  # hold no connection while idle
        return slugs

    def reconcile(self, wanted):
        for slug, proc in list(self.workers.items()):
            code = proc.poll()
            if code is not None:
                self.say(f"lead worker for {slug} exited with code {code}; restarting", err=True)
                kill_group(proc.pid)  # whatever it left running, e.g. a check command
                del self.workers[slug]
        self.stop_workers(sorted(set(self.workers) - wanted))
        for slug in sorted(wanted - set(self.workers)):
            self.start_worker(slug)

    def start_worker(self, slug):
        argv = [sys.executable, "manage.py", "leadworker", slug]
        proc = subprocess.Popen(argv, cwd=settings.BASE_DIR, start_new_session=True)
        self.workers[slug] = proc
        self.say(f"started lead worker for {slug} (pid {proc.pid})")

    def stop_workers(self, slugs):
        """SIGTERM them all (RQ finishes the job at hand), SIGKILL what outlives the grace."""
        procs = {slug: self.workers.pop(slug) for slug in slugs}
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for slug, proc in procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            kill_group(proc.pid)  # the worker if it outlived the grace, and what it started
            proc.wait()
            self.say(f"stopped lead worker for {slug}")

    def say(self, line, err=False):
        stream = self.stderr if err else self.stdout
        stream.write(line)
        stream.flush()
