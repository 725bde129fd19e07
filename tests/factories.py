"""What the tests share beyond fixtures: git in temp folders, patches,
submissions, the lead run in-process, and the test agent programs."""

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from django.db import connection
from rq import SimpleWorker

from agents import flow, queues
from agents.models import Agent, Session
from agents.runner import run_session
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
    return flow.hand_in(session, patch, summary)


def run_lead(repo):
    """Work the repository's lead queue until it is empty, in this process."""
    SimpleWorker([queues.lead_queue(repo)], connection=queues.connection()).work(burst=True)


def commits(repo):
    return int(git(repo.canonical_path, "rev-list", "--count", repo.branch))


def land(repo, agent, files, scope=("**",), title="Do it", base=None):
    bead = Bead.objects.create(repository=repo, title=title, scope=list(scope))
    base, patch = make_patch(repo, files, base=base)
    sub = submit(bead, agent, patch, base)
    return bead, sub


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
