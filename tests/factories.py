"""What the tests share beyond fixtures: git in temp folders, patches,
submissions, the lead run in-process, the test agent programs, and a reader
of HTML that finds markup a page must never carry."""

import re
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

from django.db import connection
from rq import SimpleWorker

from agents import queues
from agents.jobs.runner import run_session
from agents.models import Agent, Session
from agents.moves import lifecycle, outcomes
from beads.models import Bead

# Small deterministic programs that stand in for an AI CLI.
PROGRAMS = Path(__file__).parent / "programs"


def git(cwd, *args):
    """Run git with a fixed identity, returning its stdout."""
    argv = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args]
    done = subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def make_patch(repo, write=None, delete=(), base=None):
    """(base sha, git diff) of changes made in a private clone of the repository."""
    base = base or git(repo.canonical_path, "rev-parse", repo.branch)
    with tempfile.TemporaryDirectory() as work:
        git(work, "clone", "-q", "--shared", str(repo.canonical_path), ".")
        git(work, "checkout", "-q", "--detach", base)
        for rel, text in (write or {}).items():
            path = Path(work, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for rel in delete:
            Path(work, rel).unlink()
        git(work, "add", "-A")
        return base, git_raw(work, "diff", "--cached", "--binary", base)


def git_raw(cwd, *args):
    """git's stdout exactly as printed (a patch must keep its last newline)."""
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def submit(bead, agent, patch, base, summary="Did the work."):
    """A running session on the bead that hands in `patch`: the lead's input."""
    bead.start(agent.name)
    session = Session.objects.create(agent=agent, bead=bead, status="running", base_sha=base)
    return lifecycle.hand_in(session, patch, summary)


def run_lead(repo):
    """Work the repository's lead queue until it is empty, in this process."""
    worker = SimpleWorker(
        [queues.lead_queue(repo)], connection=queues.connection(), job_class=queues.Job
    )
    worker.work(burst=True)


def commits(repo):
    return int(git(repo.canonical_path, "rev-list", "--count", repo.branch))


def land(repo, agent, files, scope=("**",), title="Do it", base=None):
    bead = Bead.objects.create(repository=repo, title=title, scope=list(scope))
    base, patch = make_patch(repo, files, base=base)
    sub = submit(bead, agent, patch, base)
    return bead, sub


def run_bead(repo, agent, scope=("src/**",), **fields):
    """A new bead claimed by `agent` and its session run to its end, in this
    process: (session, bead), both read again."""
    bead = Bead.objects.create(repository=repo, title="Do the thing", scope=list(scope), **fields)
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    run_session(session.pk)
    session.refresh_from_db()
    bead.refresh_from_db()
    return session, bead


def program_agent(name, *args, **fields):
    command = [sys.executable, str(PROGRAMS / f"{name}.py"), *args]
    return Agent.objects.create(name=f"{name}-{Agent.objects.count()}", command=command, **fields)


def run_in_thread(session_id):
    def run():
        try:
            run_session(session_id)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for(predicate, timeout=20):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# Tags that run or fetch something when they carry what an attacker wrote.
ACTIVE_TAGS = {"script", "img", "svg", "iframe", "object", "embed", "style", "link", "meta"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "xlink:href"}
SAFE_SCHEMES = {"http", "https", "mailto"}
SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.-]*):")


class UnsafeMarkup(HTMLParser):
    """Everything in a page that could run what `marker` marks: an inline event
    handler or style attribute anywhere, a link to a scheme other than http(s)
    or mailto, an HTML comment, and an active tag (script, img, svg, ...)
    carrying the marker in its attributes or its text."""

    def __init__(self, marker):
        super().__init__()
        self.marker, self.found, self.open = marker, [], []

    def handle_starttag(self, tag, attrs):
        self.open.append(tag)
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.found.append(f"<{tag} {name}={value!r}>")
            scheme = SCHEME.match(value or "") if name in URL_ATTRIBUTES else None
            if scheme and scheme.group(1).lower() not in SAFE_SCHEMES:
                self.found.append(f"<{tag} {name}={value!r}>")
        if tag in ACTIVE_TAGS and any(self.marker in (value or "") for _, value in attrs):
            self.found.append(f"<{tag} {attrs!r}>")

    def handle_endtag(self, tag):
        if tag in self.open:
            del self.open[len(self.open) - 1 - self.open[::-1].index(tag) :]

    def handle_data(self, data):
        if self.marker in data and ACTIVE_TAGS & set(self.open):
            self.found.append(f"{self.open[-1]} text {data!r}")

    def handle_comment(self, data):
        self.found.append(f"<!--{data}-->")


def unsafe_markup(html, marker):
    """The pieces of `html` that could run what `marker` marks (see UnsafeMarkup)."""
    reader = UnsafeMarkup(marker)
    reader.feed(html)
    reader.close()
    return reader.found


# What the check gate says when a test fails, as the lead words a refusal.
CHECK_REFUSAL = (
    "check gate: Exit code 1.\n"
    + "=" * 70
    + "\nFAIL: test_every_job_names_its_owner (tests.test_owners.OwnerTests)\n"
    + "-" * 70
    + "\nTraceback (most recent call last):\n"
    '  File "tests/test_owners.py", line 9, in test_every_job_names_its_owner\n'
    "    self.assertTrue(text.startswith(OWNER), msg)\n"
    "AssertionError: jobs/report.py: every module in jobs/ must start with the line "
    '"# owner: ops"\n' + "-" * 70 + "\nRan 4 tests in 0.002s\n\nFAILED (failures=1)\n"
)


def refused_by_check(bead, agent, times=1, reason=CHECK_REFUSAL):
    """The bead's work handed in and refused by its check `times` times, as the
    lead refuses it (outcomes.refuse): attempts counted, the lesson captured."""
    base, patch = make_patch(bead.repository, {"jobs/report.py": "print(42)\n"})
    subs = []
    for _ in range(times):
        bead.refresh_from_db()
        sub = submit(bead, agent, patch, base)
        assert outcomes.refuse(sub, "rejected", reason)
        subs.append(sub)
    bead.refresh_from_db()
    return subs
