"""The submission page of a large patch: server time to draw its diff.

    .venv/bin/python bench/diff.py [--lines 2000] [--runs 40]

A repository with ten Python modules; a patch of about `--lines` lines that
changes every other line of a stretch of each (so hunks, context, removed and
added lines, all highlighted); a submission awaiting review with a comment on
a line. The page is fetched through Django's test Client as an operator
(server time: the view, Pygments, the templates), unified and side by side
(the paint kept in the cache after the first draw, as a reader finds it), and
the first draw with the cache emptied each time (Pygments on every line).
Goal (issue 23): the page of a 2,000-line patch under 300 ms p95. The load
average is printed with the figures.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import database_vendor, git, load, p50_p95, scratch_django, sizes, timed_page
from figures import figure

GOAL_MS = 300


def module(n, lines, changed=False):
    """A Python module of `lines` lines; `changed`: every other function body edited."""
    out = []
    for i in range(lines // 2):
        body = f"    return {i} * {n}  # item {i}"
        if changed and i % 2 == 0:  # a change every 4 lines: hunks of the whole file
            body = f"    return compute({i}, {n}, 'edited <b>{i}</b>')"
        out += [f"def item_{n}_{i}(x):", body]
    return "\n".join(out) + "\n"


def world(home, lines):
    from django.contrib.auth import get_user_model

    from agents.models import Agent, ReviewComment, Session, Submission
    from beads.models import Bead
    from workspace import roles
    from workspace.models import Repository, Workspace

    files = 10
    per_file = lines // files  # patch lines per file: half removed, half added
    source = Path(home) / "source"
    source.mkdir()
    git(source, "init", "-q", "-b", "main")
    for n in range(files):
        (source / f"mod_{n}.py").write_text(module(n, per_file * 4 // 5))
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "start")
    base = git(source, "rev-parse", "HEAD").strip()
    for n in range(files):
        (source / f"mod_{n}.py").write_text(module(n, per_file * 4 // 5, changed=True))
    patch = subprocess.run(
        ["git", "diff", "--binary", base], cwd=source, capture_output=True, text=True, check=True
    ).stdout
    git(source, "checkout", "-q", "--", ".")
    repo = Repository.register(str(source), Workspace.default(), review_mode="human")
    agent = Agent.objects.create(name="bench-diff", preset="shell")
    bead = Bead.objects.create(repository=repo, title="Edit", scope=["**"], status="review")
    session = Session.objects.create(
        agent=agent, bead=bead, status="submitted", base_sha=base, patch=patch
    )
    sub = Submission.objects.create(
        session=session, repository=repo, bead=bead, status="awaiting_review"
    )
    user = get_user_model().objects.create_user("bench-reviewer", password="x")
    roles.assign(user, roles.OPERATOR)
    ReviewComment.objects.create(
        submission=sub, path="mod_0.py", line=2, side="new", text="why?", author=user
    )
    return sub, user, len(patch.splitlines())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=sizes(2000, 400))
    parser.add_argument("--runs", type=int, default=sizes(40, 8))
    args = parser.parse_args()
    with scratch_django("corral-bench-diff-"):
        from django.core.cache import cache
        from django.test import Client

        home = Path(tempfile.mkdtemp(prefix="corral-bench-diff-src-"))
        sub, user, patch_lines = world(home, args.lines)
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        vendor = database_vendor()
        print(f"a patch of {patch_lines} lines in 10 files; {load()}")
        for view in ("unified", "split"):
            p50, p95, queries = timed_page(client, f"/submissions/{sub.pk}/?view={view}", args.runs)
            name = f"diff: submission page p95, {view}, {patch_lines}-line patch, {vendor}"
            print(f"{view}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, {queries} queries; {load()}")
            figure(name, p95, "ms", f"< {GOAL_MS}", p95 < GOAL_MS)
            figure(name.replace("p95", "p50"), p50, "ms", "", None)
        cold = []
        for _ in range(min(args.runs, 10)):
            cache.clear()  # the paint kept from the last draw: gone, Pygments again
            started = time.perf_counter()
            client.get(f"/submissions/{sub.pk}/")
            cold.append((time.perf_counter() - started) * 1000)
        p50, p95 = p50_p95(cold)
        print(f"first draw (no kept paint): p50 {p50:.1f} ms, p95 {p95:.1f} ms; {load()}")
        name = f"diff: submission page p95, first draw, {patch_lines}-line patch, {vendor}"
        figure(name, p95, "ms", f"< {GOAL_MS}", p95 < GOAL_MS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
