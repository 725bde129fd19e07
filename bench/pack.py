"""The context pack's share of each agent's context window, and its code map.

Run from the repository root:

    .venv/bin/python bench/pack.py [--files 1000] [--runs 5]

SQLite in a temporary CORRAL_HOME, or the PostgreSQL database at DATABASE_URL
(created if missing and then dropped). The repositories: the demo's three
(corral/demo.py, with its beads), and one of about --files files generated
from bench/data/pack_repo.toml (Python packages importing each other,
JavaScript, Markdown, a hot settings file; never checked in), with its beads
(a folder, two files, a file not there yet, the hot file, every Python file,
and a bead whose own text fills most of a small window) and its learnings.

For every preset and each bead, a session's pack is rendered as a claim
renders it (knowledge.inject.render_context), at the agent's default budget
(40,000 characters) and at a budget of 2,000,000 (where only the 40% rule
holds it). Per preset: the largest pack in tokens (characters / 4, the
estimator inject.py uses), the window, the largest share, the code map's
largest and median size, and how many packs cut what (the bead, the map,
learnings). Then the map's build time: p50/p95 cold (built from git, caches
emptied) and warm (read back from its file in CORRAL_HOME/codemaps/).

Goals (issue 27): every pack within 40% of its window; no pack whose bead
text the map squeezed (the bead's part of the pack is what it would be with
no map at all).
"""

import argparse
import resource
import statistics
import time
import tomllib
from collections import defaultdict

from common import ROOT, git, load, p50_p95, scratch_django, sizes
from figures import figure

TEMPLATE = ROOT / "bench" / "data" / "pack_repo.toml"
BUDGETS = (40_000, 2_000_000)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=sizes(1000, 300), help="generated files")
    parser.add_argument("--runs", type=int, default=sizes(5, 2), help="map builds per scope")
    return parser.parse_args()


def fill(text, **values):
    """The template's {name}s filled (plain replacement: code has braces of its own)."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def generate(path, spec, files):
    """The repository the template describes, scaled to about `files` files."""
    scale = files / 1000
    packages = max(2, round(spec["packages"] * scale))
    modules = spec["modules"]
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for p in range(packages):
        package = f"pkg{p:02d}"
        (path / package).mkdir()
        (path / package / "__init__.py").write_text("")
        for m in range(modules - 1):
            n = p * modules + m
            nxt = ((p + 1) % packages) * modules + m
            values = dict(
                n=n,
                package=package,
                module=f"mod_{m:03d}",
                sibling=f"mod_{(m + 1) % (modules - 1):03d}",
                n_sibling=p * modules + (m + 1) % (modules - 1),
                next_package=f"pkg{(p + 1) % packages:02d}",
                next_module=f"mod_{m:03d}",
                n_next=nxt,
            )
            (path / package / f"mod_{m:03d}.py").write_text(fill(spec["python"], **values))
    for folder, count, key, name in (
        ("web", spec["javascript"], "javascript_module", "component_{n}.js"),
        ("docs", spec["markdown"], "markdown_page", "page_{n}.md"),
    ):
        (path / folder).mkdir()
        for n in range(round(count * scale)):
            (path / folder / fill(name, n=f"{n:03d}")).write_text(fill(spec[key], n=n))
    hot = path / spec["hot_file"]
    hot.parent.mkdir(parents=True, exist_ok=True)
    for n in range(spec["hot_commits"]):
        hot.write_text(fill(spec["hot_text"], n=n))
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"settings {n}")
    return int(git(path, "ls-files", "-z").count("\0"))


def register_generated(home, spec, files):
    from beads.models import Bead
    from knowledge.models import Learning
    from workspace.models import Repository, Workspace

    count = generate(home / "generated-src", spec, files)
    repo = Repository.register(str(home / "generated-src"), Workspace.default(), name="generated")
    for bead in spec["beads"]:
        description = bead["description"] * bead.get("description_repeat", 1)
        Bead.objects.create(
            repository=repo, title=bead["title"], description=description, scope=bead["scope"]
        )
    body = spec["learning_body"] * spec["learning_repeat"]
    Learning.objects.bulk_create(
        Learning(
            workspace=repo.workspace,
            repository=repo,
            title=fill(spec["learning_title"], n=n),
            body=fill(body, n=n),
            status=Learning.Status.APPROVED,
        )
        for n in range(spec["learning_count"])
    )
    return repo, count


def pack_rows(repositories):
    """One row per (preset, budget, bead): the pack as a claim renders it, measured."""
    from agents.models import Agent, Session
    from agents.presets import PRESETS
    from beads.models import Bead
    from knowledge import inject
    from workspace import gitops

    rows = []
    heads = {r.pk: gitops.head_sha(r.canonical_path, r.branch) for r in repositories}
    beads = list(Bead.objects.filter(repository__in=repositories).select_related("repository"))
    for preset in PRESETS:
        for budget in BUDGETS:
            agent, _ = Agent.objects.get_or_create(
                name=f"pack-{preset}-{budget}", preset=preset, context_budget_chars=budget
            )
            for bead in beads:
                session = Session.objects.create(
                    agent=agent, bead=bead, status="failed", base_sha=heads[bead.repository_id]
                )
                text = inject.render_context(session, budget)
                limit, _ = inject.pack_limit(preset, budget)
                bead_part, _ = inject.bead_text(session, limit - inject.NOTE_ROOM)
                rows.append(measure(preset, budget, bead, text, bead_part))
    return rows


def measure(preset, budget, bead, text, bead_part):
    from knowledge import inject

    window = inject.WINDOW_TOKENS.get(preset, inject.DEFAULT_WINDOW_TOKENS)
    tokens = len(text) / inject.CHARS_PER_TOKEN
    start = text.find("\n## Code map of your scope")
    map_chars = 0
    if start >= 0:
        ends = [text.find(m, start + 1) for m in ("\n## Learnings", "[Code map", "\n[")]
        map_chars = min([e for e in ends if e > 0], default=len(text)) - start
    return {
        "preset": preset,
        "budget": budget,
        "bead": bead.id,
        "tokens": tokens,
        "window": window,
        "share": tokens / window,
        "map": map_chars,
        "bead_whole": text.startswith(bead_part),
        "cut_bead": "[Context cut:" in text,
        "cut_map": "[Code map cut" in text,
        "map_left_out": "[Code map left out" in text,
        "cut_learnings": "relevant learning(s) left out" in text,
    }


def report(rows, where):
    by_preset = defaultdict(list)
    for row in rows:
        by_preset[row["preset"], row["budget"]].append(row)
    print(f"\nPacks ({where}): largest pack, window, share; code map size; packs that cut")
    print(
        f"{'preset':<12} {'budget':>9} {'packs':>5} {'tokens':>8} {'window':>9} {'share':>6} "
        f"{'map max':>8} {'map p50':>8}  cut: bead / map / map out / learnings"
    )
    worst = 0.0
    for (preset, budget), group in sorted(by_preset.items()):
        largest = max(group, key=lambda r: r["tokens"])
        maps = [r["map"] for r in group]
        cuts = [sum(r[k] for r in group) for k in ("cut_bead", "cut_map", "map_left_out")]
        cuts.append(sum(r["cut_learnings"] for r in group))
        worst = max(worst, largest["share"])
        print(
            f"{preset:<12} {budget:>9,} {len(group):>5} {largest['tokens']:>8,.0f} "
            f"{largest['window']:>9,} {largest['share']:>6.1%} {max(maps):>8,} "
            f"{statistics.median(maps):>8,.0f}  " + " / ".join(map(str, cuts))
        )
        figure(
            f"pack: largest share of the window, {preset}, budget {budget:,}, {where}",
            100 * largest["share"],
            "%",
            "<= 40",
            largest["share"] <= 0.4,
        )
    squeezed = sum(not r["bead_whole"] for r in rows)
    figure(
        f"pack: packs whose bead text the map squeezed, {where}", squeezed, "", "0", squeezed == 0
    )
    return worst


def build_times(repositories, runs):
    """Cold: built from git with every cache emptied; warm: read back from its file."""
    from beads import planner
    from beads.models import Bead
    from knowledge import codemap
    from workspace import gitops

    cold, cpu, warm, sizes_seen = [], [], [], []
    program = codemap.ctags_program()
    for bead in Bead.objects.filter(repository__in=repositories).select_related("repository"):
        repo = bead.repository
        commit = gitops.head_sha(repo.canonical_path, repo.branch)
        for _ in range(runs):
            planner.hot_at.cache_clear()
            codemap.tree_index.cache_clear()
            spent = cpu_seconds()
            started = time.perf_counter()
            cmap = codemap.build(repo.canonical_path, commit, bead.scope, program)
            cold.append(time.perf_counter() - started)
            cpu.append(cpu_seconds() - spent)
        sizes_seen.append(len(cmap.files))
        codemap.cached(repo.canonical_path, repo.slug, commit, bead.scope, program)
        for _ in range(runs):
            codemap._memory.clear()
            started = time.perf_counter()
            codemap.cached(repo.canonical_path, repo.slug, commit, bead.scope, program)
            warm.append(time.perf_counter() - started)
    return cold, cpu, warm, sizes_seen, program


def cpu_seconds():
    """This process's CPU and its finished children's (git, ctags)."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main():
    args = parse_args()
    spec = tomllib.loads(TEMPLATE.read_text())
    print(f"load at start: {load()}")
    with scratch_django("corral-bench-pack-", new_database=True) as scratch:
        from corral import demo

        seeded = demo.seed()
        generated, count = register_generated(scratch.home, spec, args.files)
        print(f"repositories: the demo's {len(seeded.repositories)}, and one of {count} files")
        report(pack_rows(seeded.repositories), "demo")
        report(pack_rows([generated]), f"{count} files")
        for name, repos in (("demo", seeded.repositories), (f"{count} files", [generated])):
            cold, cpu, warm, files, program = build_times(repos, args.runs)
            p50, p95 = p50_p95(cold)
            c50, c95 = p50_p95(cpu)
            w50, w95 = p50_p95(warm)
            print(
                f"\nmap build ({name}, ctags: {program or 'none'}; scopes of {min(files)} to "
                f"{max(files)} files): cold p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms "
                f"(CPU with git's: p50 {c50 * 1000:.1f} ms, p95 {c95 * 1000:.1f} ms); "
                f"from its file p50 {w50 * 1000:.2f} ms, p95 {w95 * 1000:.2f} ms"
            )
            figure(f"pack: map build p95, cold, {name}", p95 * 1000, "ms", "", None)
            figure(f"pack: map build CPU p95, cold, {name}", c95 * 1000, "ms", "", None)
            figure(f"pack: map read p95, cached, {name}", w95 * 1000, "ms", "", None)
    print(f"load at end: {load()}")


if __name__ == "__main__":
    main()
