"""The wave planner: a proposal of waves for a selection of beads, and the shared files.

The rules, in order (DESIGN.md, "Plans and waves"):

1. `blocks` dependencies give the order: a bead goes to a wave after the
   waves of the beads of the plan it waits for;
2. two beads whose scopes may touch a common file never share a wave.
   Scopes are expanded against each repository's tree at head; a pattern
   that matches no file yet (a file the bead will create) is compared as a
   pattern (beads.scopes); an empty scope is any path of its repository;
3. a wave holds at most the plan's agents per wave ("fewer workers, more waves").

Each bead takes the first wave that satisfies all three, in order of its
blockers, then priority, then age. The shared-files report lists every file
two or more beads may touch, with the repository's hot files (changed by the
most commits lately), and the two fixes for each: serialize the beads that
touch it, or add a bead in an earlier wave that changes it first.

The rules work on plain data (Item, Tree), so they are fast and testable
without a database; the functions at the end read beads and git into them.
"""

import bisect
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pathspec

from beads import scopes
from beads.models import Bead, Dependency
from workspace import gitops
from workspace.models import Repository

DEFAULT_CAP = 4
HOT_COMMITS = 100  # "lately": the branch's last commits read for hot files
HOT_SHOWN = 5  # hot files listed per repository
ANY_PATH = "(any path)"  # what an empty scope touches


@dataclass(frozen=True)
class Item:
    """A bead as the planner sees it. `repo` is its repository's slug; `blocked_by`
    the beads it `blocks`-depends on (those outside the plan are the hook's affair)."""

    id: str
    repo: str
    scope: tuple[str, ...] = ()
    priority: int = 2
    blocked_by: tuple[str, ...] = ()


class Tree:
    """A repository's files at head, sorted, ready for many pattern matches."""

    def __init__(self, files: Iterable[str]) -> None:
        self.files = sorted(files)
        self.text = "\n".join(self.files)
        self.touches: dict[tuple[str, ...], Touch] = {}  # read-only once made

    def under(self, root: str) -> tuple[str, list[str]]:
        """The files at or below `root` (a path without wildcards), as text and a list."""
        start = bisect.bisect_left(self.files, root)
        end = bisect.bisect_left(self.files, root + "0")  # "0" follows "/"
        found = [f for f in self.files[start:end] if f == root or f.startswith(root + "/")]
        return "\n".join(found), found

    def matching(self, pattern: pathspec.Pattern) -> set[str]:
        """The files one gitignore-style pattern matches (negation aside)."""
        text = written(pattern).removeprefix("!")
        root = scopes.literal_root(text) if scopes.anchored(text) else ""
        if root and root == text.strip("/"):
            return set(self.under(root)[1])  # a plain path: that file, or a folder's files
        text = self.under(root)[0] if root else self.text
        regex = pattern.regex.pattern  # type: ignore[attr-defined]  # pathspec's regex patterns
        # One scan of the joined paths, one path a line: C speed for thousands of files.
        line = re.compile("(?m)^(?=" + regex.removeprefix("^") + ").*$")
        return {m.group() for m in line.finditer(text)}


def written(pattern: pathspec.Pattern) -> str:
    """A pattern as the scope wrote it."""
    return str(getattr(pattern, "pattern", ""))


@dataclass
class Touch:
    """What a bead's scope may touch in its repository."""

    files: set[str] = field(default_factory=set)
    patterns: list[str] = field(default_factory=list)  # matching no file at head
    anything: bool = False  # an empty scope
    spec: pathspec.PathSpec | None = None


def expand(scope: Sequence[str], tree: Tree) -> Touch:
    """The files of `tree` a scope matches (later negations remove files, as in
    gitignore), and its patterns that match none. Kept with the tree: a plan
    page asks again for the same scopes at the same head on every refresh."""
    key = tuple(scope)
    if (touch := tree.touches.get(key)) is None:
        touch = tree.touches[key] = match_scope(scope, tree)
    return touch


def match_scope(scope: Sequence[str], tree: Tree) -> Touch:
    if not any(scopes.adds_paths(p) for p in scope):
        return Touch(anything=True)
    spec = pathspec.GitIgnoreSpec.from_lines(scope)
    touch = Touch(spec=spec)
    for pattern in spec.patterns:
        if pattern.include is None:
            continue  # a comment or a blank line
        hits = tree.matching(pattern)
        if pattern.include:
            touch.files |= hits
            if not hits:
                touch.patterns.append(written(pattern))
        else:
            touch.files -= hits
    return touch


def patterns_meet(pattern: str, other: Touch) -> bool:
    """Whether a file `pattern` names (one not there yet) may also be touched by `other`."""
    if other.anything:
        return True
    if not scopes.GLOB.search(pattern) and other.spec is not None:
        return other.spec.match_file(pattern.strip("/"))  # a plain path: ask the other scope
    theirs = [p for p in (other.spec.patterns if other.spec else []) if p.include]
    return any(
        scopes.pattern_within(pattern, q) or scopes.pattern_within(q, pattern)
        for q in map(written, theirs)
    )


def overlaps(items: Sequence[Item], touches: dict[str, Touch]) -> dict[frozenset[str], list[str]]:
    """{pair of bead ids: the files they share}, for beads of the same repository.

    Files are indexed, so only beads that do share one are compared; the
    pairwise comparison is kept to beads with a pattern matching nothing or
    an empty scope, which are few.
    """
    found: defaultdict[frozenset[str], list[str]] = defaultdict(list)
    by_repo: defaultdict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_repo[item.repo].append(item)
    for members in by_repo.values():
        holders: defaultdict[str, list[str]] = defaultdict(list)
        for item in members:
            for path in touches[item.id].files:
                holders[path].append(item.id)
        for path, ids in holders.items():
            for i, first in enumerate(ids):
                for second in ids[i + 1 :]:
                    found[frozenset((first, second))].append(path)
        loose = [m for m in members if touches[m.id].patterns or touches[m.id].anything]
        loose_ids = {m.id for m in loose}
        for a in loose:
            for b in members:
                pair = frozenset((a.id, b.id))
                if a.id == b.id or (b.id in loose_ids and b.id < a.id):
                    continue
                ta, tb = touches[a.id], touches[b.id]
                extra = [ANY_PATH] if ta.anything or tb.anything else []
                extra += [p for p in ta.patterns if patterns_meet(p, tb)]
                extra += [p for p in tb.patterns if patterns_meet(p, ta)]
                for path in extra:
                    if path not in found[pair]:
                        found[pair].append(path)
    return {pair: sorted(paths) for pair, paths in found.items() if paths}


def topological_order(items: Sequence[Item]) -> list[Item]:
    """Blockers before the beads they block, then priority and the given order.
    A bead in a cycle (refused when filed, so only from an import) comes last."""
    ids = {item.id for item in items}
    waiting = {item.id: {b for b in item.blocked_by if b in ids and b != item.id} for item in items}
    position = {item.id: n for n, item in enumerate(items)}
    by_id = {item.id: item for item in items}
    order: list[Item] = []
    done: set[str] = set()
    while len(order) < len(items):
        free = [i for i, w in waiting.items() if i not in done and w <= done]
        if not free:
            free = [i for i in waiting if i not in done]  # a cycle: keep what is left in order
        free.sort(key=lambda i: (by_id[i].priority, position[i]))
        order += [by_id[i] for i in free]
        done |= set(free)
    return order


def assign(
    items: Sequence[Item], shared: dict[frozenset[str], list[str]], cap: int = DEFAULT_CAP
) -> list[list[str]]:
    """Waves of bead ids: each bead in the first wave after its blockers' waves
    with room and no bead it shares a file with."""
    cap = max(1, cap)
    neighbours: defaultdict[str, set[str]] = defaultdict(set)
    for pair in shared:
        a, b = tuple(pair)
        neighbours[a].add(b)
        neighbours[b].add(a)
    waves: list[list[str]] = []
    members: list[set[str]] = []
    wave_of: dict[str, int] = {}
    for item in topological_order(items):
        earliest = max((wave_of[b] + 1 for b in item.blocked_by if b in wave_of), default=0)
        n = earliest
        while n < len(waves) and (len(waves[n]) >= cap or neighbours[item.id] & members[n]):
            n += 1
        if n == len(waves):
            waves.append([])
            members.append(set())
        waves[n].append(item.id)
        members[n].add(item.id)
        wave_of[item.id] = n
    return waves


@dataclass
class SharedFile:
    """A file two or more beads of the plan may touch."""

    repo: str
    path: str
    beads: list[str]
    hot: int = 0  # commits among the last HOT_COMMITS that changed it

    @property
    def is_pattern(self) -> bool:
        return self.path == ANY_PATH or bool(scopes.GLOB.search(self.path))

    def fixes(self) -> list[str]:
        """The two fixes the planner offers, in words."""
        names = ", ".join(self.beads)
        return [
            f"Serialize {names}: one wave after another.",
            f"Add a bead in an earlier wave that changes {self.path} first, "
            f"so {names} no longer need to.",
        ]


@dataclass
class Proposal:
    waves: list[list[str]]
    shared: list[SharedFile]  # most beads first, then hottest
    hot: dict[str, list[tuple[str, int]]]  # {repo: [(path, commits)]}
    pairs: dict[frozenset[str], list[str]]
    items: list[Item] = field(default_factory=list)

    def wave_of(self) -> dict[str, int]:
        return {bead: n for n, wave in enumerate(self.waves) for bead in wave}


def shared_files(
    pairs: dict[frozenset[str], list[str]],
    repo_of: dict[str, str],
    hot: dict[str, list[tuple[str, int]]],
) -> list[SharedFile]:
    holders: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for pair, paths in pairs.items():
        a = next(iter(pair))
        for path in paths:
            holders[repo_of[a], path] |= pair
    heat = {(repo, path): n for repo, files in hot.items() for path, n in files}
    report = [
        SharedFile(repo, path, sorted(ids), heat.get((repo, path), 0))
        for (repo, path), ids in holders.items()
    ]
    return sorted(report, key=lambda s: (-len(s.beads), -s.hot, s.repo, s.path))


def propose(
    items: Sequence[Item],
    trees: dict[str, Tree],
    cap: int = DEFAULT_CAP,
    hot: dict[str, list[tuple[str, int]]] | None = None,
) -> Proposal:
    """Waves for `items` over the repositories' `trees` ({slug: Tree})."""
    empty = Tree([])
    touches = {item.id: expand(item.scope, trees.get(item.repo, empty)) for item in items}
    pairs = overlaps(items, touches)
    hot = hot or {}
    repo_of = {item.id: item.repo for item in items}
    shared = shared_files(pairs, repo_of, hot)
    return Proposal(assign(items, pairs, cap), shared, hot, pairs, list(items))


def clashes(
    waves: Sequence[Sequence[str]], pairs: dict[frozenset[str], list[str]]
) -> list[tuple[int, str, str, list[str]]]:
    """In waves as a person edited them: (wave number, bead, bead, files) for
    each two beads of one wave that share a file."""
    found = []
    for n, wave in enumerate(waves):
        for i, a in enumerate(wave):
            for b in wave[i + 1 :]:
                if paths := pairs.get(frozenset((a, b))):
                    found.append((n, a, b, paths))
    return found


def out_of_order(waves: Sequence[Sequence[str]], items: Sequence[Item]) -> list[tuple[str, str]]:
    """(bead, blocker) for each bead placed in a wave not after its blocker's."""
    wave_of = {bead: n for n, wave in enumerate(waves) for bead in wave}
    return [
        (item.id, blocker)
        for item in items
        for blocker in item.blocked_by
        if blocker in wave_of and item.id in wave_of and wave_of[blocker] >= wave_of[item.id]
    ]


def serialize(waves: Sequence[Sequence[str]], beads: Sequence[str]) -> list[list[str]]:
    """The first fix: the given beads one wave after another, in their current
    order; each later one moves down to the wave after the one before it (a new
    wave at the end if there is none)."""
    result = [list(wave) for wave in waves]
    place = {bead: (n, i) for n, wave in enumerate(result) for i, bead in enumerate(wave)}
    wave_of = {bead: n for bead, (n, _) in place.items()}
    ordered = sorted((b for b in beads if b in place), key=place.__getitem__)
    previous = -1
    for bead in ordered:
        target = max(previous + 1, wave_of[bead])
        if target != wave_of[bead]:
            result[wave_of[bead]].remove(bead)
            while len(result) <= target:
                result.append([])
            result[target].append(bead)
            wave_of[bead] = target
        previous = target
    return [wave for wave in result if wave]


# Reading beads and git into the rules' data.


def items_for(beads: Sequence[Bead]) -> list[Item]:
    """The beads as Items, their blockers read in one query."""
    ids = [bead.id for bead in beads]
    blocked: defaultdict[str, list[str]] = defaultdict(list)
    edges = Dependency.objects.filter(issue_id__in=ids, type=Dependency.Type.BLOCKS)
    for issue, depends_on in edges.values_list("issue_id", "depends_on_id"):
        blocked[issue].append(depends_on)
    slugs = dict(Repository.objects.values_list("pk", "slug"))
    return [
        Item(b.id, slugs[b.repository_id], tuple(b.scope), b.priority, tuple(blocked[b.id]))
        for b in beads
    ]


def trees_for(repositories: Iterable[Repository]) -> dict[str, Tree]:
    return {r.slug: tree_at(str(r.canonical_path), head_of(r)) for r in repositories}


def hot_files(
    repositories: Iterable[Repository], commits: int = HOT_COMMITS, shown: int = HOT_SHOWN
) -> dict[str, list[tuple[str, int]]]:
    """{slug: [(path, commits that changed it)]}, the most changed first, among
    each repository's last `commits` commits (files changed only once are not hot)."""
    return {r.slug: hot_at(str(r.canonical_path), head_of(r), commits, shown) for r in repositories}


def head_of(repository: Repository) -> str:
    """The branch's head commit, "" if it has none (read from the ref files: no git process)."""
    try:
        return gitops.head_sha(repository.canonical_path, repository.branch)
    except gitops.GitError:
        return ""


# A commit's tree and history never change: each is read from git once per
# head, and a plan edited again and again costs no git process.
@lru_cache(maxsize=64)
def tree_at(path: str, commit: str) -> Tree:
    return Tree(gitops.files_at(path, commit) if commit else [])


@lru_cache(maxsize=64)
def hot_at(path: str, commit: str, commits: int, shown: int) -> list[tuple[str, int]]:
    counts = Counter(gitops.changed_files(path, commit, commits) if commit else [])
    return [(name, n) for name, n in counts.most_common(shown) if n > 1]


def propose_for(beads: Sequence[Bead], cap: int = DEFAULT_CAP) -> Proposal:
    """A proposal for these beads (epics left out: their children carry the work)."""
    work = [b for b in beads if b.issue_type != Bead.Type.EPIC]
    repositories = Repository.objects.filter(pk__in={b.repository_id for b in work})
    return propose(items_for(work), trees_for(repositories), cap, hot_files(repositories))


def as_dict(proposal: Proposal) -> dict[str, Any]:
    """The proposal as plain data (for the API, the CLI and the benchmark's checks)."""
    return {
        "waves": proposal.waves,
        "shared_files": [
            {"repo": s.repo, "path": s.path, "beads": s.beads, "hot": s.hot, "fixes": s.fixes()}
            for s in proposal.shared
        ],
        "hot_files": proposal.hot,
    }
