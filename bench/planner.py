"""How fast the wave planner proposes, and how fast the plan and bead pages render.

Run from the repository root:

    .venv/bin/python bench/planner.py [--beads 1000] [--repos 30] [--files 5000] [--runs 5]

SQLite in a temporary CORRAL_HOME, or the PostgreSQL database at DATABASE_URL
(created if missing and then dropped; one that exists must hold no beads).
The workspace: one git repository of --files files
(packages of modules, a shared config file changed by most commits) registered
--repos times; --beads beads spread over them, each scoped to a module folder,
a few files, a file not there yet, or the shared config file; about 20% blocked
by an earlier bead of the selection.

Figures (median of --runs, and the slowest):
1. planner.propose_for(beads): the whole proposal, reading the beads, each
   repository's tree at head (git ls-tree) and hot files (git log); 1b the
   same with the trees, hot files and expanded scopes of unchanged heads
   cached, as on a plan page's refresh;
2. planner.propose(items, trees): the rules alone, on data already read;
3. the plan page with --plan-beads beads in a draft plan (GET through Django's
   test Client, logged in);
4. the bead list (first page) with --list-beads beads in the workspace.

Goals (issue 10): 1 under 1 s; 3 and 4 under 150 ms.
"""

import argparse
import logging
import os
import random
import statistics
import time

from common import database_vendor, git, load, scratch_django, sizes
from figures import figure


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--beads", type=int, default=sizes(1000, 200), help="beads proposed")
    parser.add_argument("--repos", type=int, default=sizes(30, 5), help="repositories")
    parser.add_argument(
        "--files", type=int, default=sizes(5000, 1000), help="files per repository tree"
    )
    parser.add_argument("--runs", type=int, default=sizes(5, 3), help="timed runs per figure")
    parser.add_argument(
        "--plan-beads", type=int, default=sizes(200, 50), help="beads in the plan page"
    )
    parser.add_argument(
        "--list-beads", type=int, default=sizes(10_000, 1_000), help="beads for the list"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="cProfile the plan page")
    return parser.parse_args()


def make_tree(path, files):
    """A repository of `files` files: pkgNN/modNN/fileNN.py, and config/settings.py
    changed by each of 20 commits (the hot file)."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    per_module = 50
    modules = max(1, files // per_module)
    for m in range(modules):
        folder = path / f"pkg{m // 10:02d}" / f"mod{m % 10}"
        folder.mkdir(parents=True)
        for f in range(per_module):
            (folder / f"file{f:02d}.py").write_text(f"# {m} {f}\n")
    (path / "config").mkdir()
    for n in range(20):
        (path / "config" / "settings.py").write_text(f"VERSION = {n}\n")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"commit {n}")
    return modules


def scope_for(rng, modules, n):
    module = rng.randrange(modules)
    folder = f"pkg{module // 10:02d}/mod{module % 10}"
    kind = rng.random()
    if kind < 0.5:
        return [f"{folder}/**"]
    if kind < 0.75:
        return [
            f"{folder}/file{rng.randrange(50):02d}.py",
            f"{folder}/file{rng.randrange(50):02d}.py",
        ]
    if kind < 0.9:
        return [f"{folder}/new_{n}.py", f"{folder}/file{rng.randrange(50):02d}.py"]
    return ["config/settings.py", f"{folder}/file{rng.randrange(50):02d}.py"]


def make_beads(repos, count, modules, rng, blocked_share=0.2):
    from beads.models import Bead, Dependency

    beads = []
    for n in range(count):
        repo = repos[n % len(repos)]
        bead = Bead(repository=repo, title=f"bench bead {n}", scope=scope_for(rng, modules, n))
        bead.save()
        beads.append(bead)
    edges = [
        Dependency(issue=bead, depends_on=rng.choice(beads[:n]))
        for n, bead in enumerate(beads)
        if n and rng.random() < blocked_share
    ]
    Dependency.objects.bulk_create(edges)  # earlier beads only: no cycle
    return beads


def timed(runs, call):
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - start)
    return result, samples


def report(name, samples, goal_ms=None, figure_name=None):
    """Print the median and the slowest; a figure (the median) when it has a goal."""
    median, worst = statistics.median(samples) * 1000, max(samples) * 1000
    goal = f" (goal {goal_ms:.0f} ms: {'met' if median < goal_ms else 'MISSED'})" if goal_ms else ""
    print(f"{name}: median {median:.1f} ms, slowest {worst:.1f} ms{goal}")
    if figure_name:
        figure(f"planner: {figure_name} median, {database_vendor()}", median, "ms",
               f"< {goal_ms:g}", median < goal_ms)  # fmt: skip


def main():
    args = parse_args()
    rng = random.Random(args.seed)
    with scratch_django("corral-bench-planner-") as scratch:
        home = scratch.home
        logging.getLogger("agents.queues").setLevel(logging.ERROR)  # no Redis: dispatch waits
        from beads import planner
        from workspace.models import Repository, Workspace

        started = time.perf_counter()
        modules = make_tree(home / "source", args.files)
        workspace = Workspace.default()
        repos = [
            Repository.register(str(home / "source"), workspace, name=f"bench-{k:02d}")
            for k in range(args.repos)
        ]
        beads = make_beads(repos, args.beads, modules, rng)
        print(f"set up {args.repos} repositories of {modules * 50 + 1} files and")
        print(f"{args.beads} beads in {time.perf_counter() - started:.1f} s")
        print(f"{database_vendor()}, {os.cpu_count()} CPUs, {load()}")

        def cold():
            planner.tree_at.cache_clear()
            planner.hot_at.cache_clear()
            return planner.propose_for(beads)

        proposal, samples = timed(args.runs, cold)
        report(
            f"1. propose_for, {args.beads} beads in {args.repos} repositories",
            samples,
            1000,
            f"propose, {args.beads} beads, {args.repos} repos",
        )
        _, samples = timed(args.runs, lambda: planner.propose_for(beads))
        report("1b. propose_for again: trees, hot files and expanded scopes cached", samples)
        items = planner.items_for(beads)
        trees = planner.trees_for(repos)
        hot = planner.hot_files(repos)

        def rules():
            fresh = {slug: planner.Tree(tree.files) for slug, tree in trees.items()}
            return planner.propose(items, fresh, 4, hot)

        _, samples = timed(args.runs, rules)
        report("2. propose (the rules alone, trees read, scopes not yet expanded)", samples)
        sizes = [len(w) for w in proposal.waves]
        print(f"   {len(proposal.waves)} waves (largest {max(sizes)}),")
        print(
            f"   {len(proposal.shared)} shared files, {len(proposal.pairs)} pairs of beads sharing"
        )
        assert not planner.clashes(proposal.waves, proposal.pairs)
        assert not planner.out_of_order(proposal.waves, items)
        pages(args, workspace, beads, repos)


def pages(args, workspace, beads, repos):
    """Figures 3 and 4: the plan page and the bead list through Django's test Client."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from beads import plans
    from beads.models import Bead

    person = get_user_model().objects.create_superuser("bench", password="x")
    client = Client(HTTP_HOST="localhost")
    client.force_login(person)
    plan = plans.start(workspace, "bench", beads[: args.plan_beads], 4)
    url = plan.get_absolute_url()

    def get(path, **params):
        response = client.get(path, params)
        assert response.status_code == 200, response.status_code
        return response

    get(url)  # warm: templates compiled, trees read
    _, samples = timed(args.runs, lambda: get(url))
    report(
        f"3. plan page, {args.plan_beads} beads in {len(plans.waves_of(plan))} waves",
        samples,
        150,
        f"plan page, {args.plan_beads} beads",
    )
    if args.profile:
        import cProfile
        import pstats

        cProfile.runctx("get(url)", globals(), {"get": get, "url": url}, "/tmp/plan_page.prof")
        pstats.Stats("/tmp/plan_page.prof").sort_stats("cumtime").print_stats(45)
    more = args.list_beads - Bead.objects.count()
    Bead.objects.bulk_create(
        [
            Bead(id=f"bench-x{n:05d}", repository=repos[n % len(repos)], title=f"listed bead {n}")
            for n in range(max(0, more))
        ],
        batch_size=2000,
    )
    count = Bead.objects.count()
    get("/beads/")
    _, samples = timed(args.runs, lambda: get("/beads/"))
    report(f"4. bead list, first page of {count} beads", samples, 150, f"bead list, {count} beads")
    _, samples = timed(args.runs, lambda: get("/beads/", q="bead 99", page="2"))
    report("4b. bead list, a text filter, page 2", samples, 150, f"bead list q=, {count} beads")
    _, samples = timed(args.runs, lambda: get("/beads/", label="none", status="open"))
    report(
        "4c. bead list, a label and a status filter",
        samples,
        150,
        f"bead list label=, {count} beads",
    )


if __name__ == "__main__":
    main()
