"""The code map in a context pack: what a bead's scope holds, without its contents.

For the scope at the session's base commit: the files it matches with their
sizes, their top-level definitions (Python by `ast`; other languages by
Universal Ctags when it is installed, names alone otherwise), the files each
imports and the files that import it (one hop, Python only: other languages'
imports are not read), the patterns that match no file yet, and the
repository's hot files as the planner counts them (beads/planner.py).

Everything is read from the tree git stores for the commit in Corral's own
copy (ls-tree, cat-file, grep, log), never from a clone an agent wrote: a
symlink is listed as one and never followed, a submodule is named and not
read, and no file's text goes into the pack, only names and definitions.

A commit's tree never changes, so a map is built once per (commit, scope) and
kept, in this process and as a JSON file under CORRAL_HOME/codemaps/: a claim
that finds it pays one file read. Rendering cuts it to the room the pack
gives it (knowledge/inject.py), most useful parts first, and says what it cut.
"""

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache, lru_cache
from pathlib import Path, PurePosixPath

from django.conf import settings

from beads import planner
from knowledge.seams import SessionLike
from workspace import gitops

VERSION = 1  # bump when what a map holds changes: older cached maps are not read
PYTHON = (".py", ".pyi")
PYTHON_PATHSPECS = ("*.py", "*.pyi")
ROOTS = ("", "src/", "lib/")  # where a Python import may start (a `src/` layout)
MAX_DEFINED_FILES = 300  # files of a scope whose definitions are read
MAX_PARSED_BYTES = 512 * 1024  # a bigger file is named, not parsed
MAX_IMPORTER_FILES = 1000  # candidate importers parsed per map
MAX_DEFS = 40  # definitions kept per file
HOT_SHOWN = planner.HOT_SHOWN
MAX_LINKS = 30  # imports, and importers, kept per file
SIGNATURE_CHARS = 80
CTAGS_SECONDS = 20
MEMORY_KEPT = 64  # maps kept in this process
DISK_KEPT = 500  # map files kept per repository (the oldest go first)
_lock = threading.Lock()


@dataclass
class FileMap:
    """One file the scope matches."""

    path: str
    size: int | None
    kind: str = "file"  # file | symlink | submodule
    how: str = "names"  # python | ctags | names | too large | does not parse
    defs: list[str] = field(default_factory=list)
    more_defs: int = 0
    imports: list[str] = field(default_factory=list)
    importers: list[str] = field(default_factory=list)


@dataclass
class CodeMap:
    commit: str
    files: list[FileMap] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # patterns matching no file yet
    hot: list[tuple[str, int]] = field(default_factory=list)
    anything: bool = False  # an empty scope: any path
    notes: list[str] = field(default_factory=list)  # what the build left out

    @classmethod
    def from_json(cls, data: dict) -> "CodeMap":
        files = [FileMap(**f) for f in data.pop("files")]
        hot = [(p, n) for p, n in data.pop("hot")]
        return cls(files=files, hot=hot, **data)


# --- Building ----------------------------------------------------------------


def build(git_dir: Path, commit: str, scope: Sequence[str], ctags: str | None = None) -> CodeMap:
    """The map of `scope` in the commit's tree (`ctags`: Universal Ctags' path, or None)."""
    with ThreadPoolExecutor(1) as pool:  # git log for the hot files, meanwhile
        hot = pool.submit(planner.hot_at, str(git_dir), commit, planner.HOT_COMMITS, HOT_SHOWN)
        cmap = build_files(git_dir, commit, scope, ctags)
        cmap.hot = list(hot.result())
    return cmap


@dataclass
class TreeIndex:
    """What every scope's map at one commit reads first (read-only once made)."""

    entries: dict[str, gitops.Entry]
    tree: planner.Tree
    modules: "ModuleIndex"


@lru_cache(maxsize=8)
def tree_index(git_dir: str, commit: str) -> TreeIndex:
    """Kept per commit in the process: the beads of a wave claimed at one head share it."""
    entries = {e.path: e for e in gitops.entries_at(git_dir, commit)}
    modules = ModuleIndex(p for p, e in entries.items() if e.regular and p.endswith(PYTHON))
    return TreeIndex(entries, planner.Tree(entries), modules)


def build_files(git_dir: Path, commit: str, scope: Sequence[str], ctags: str | None) -> CodeMap:
    index = tree_index(str(git_dir), commit)
    entries, modules = index.entries, index.modules
    with _lock:  # the planner keeps expanded scopes on the tree
        touch = planner.expand(list(scope), index.tree)
    cmap = CodeMap(commit, anything=touch.anything, missing=list(touch.patterns))
    if touch.anything:
        return cmap
    cmap.files = [file_map(entries[p]) for p in matched(entries, touch)]
    regular = [f for f in cmap.files if f.kind == "file" and (f.size or 0) <= MAX_PARSED_BYTES]
    for f in cmap.files:
        if f.kind == "file" and (f.size or 0) > MAX_PARSED_BYTES:
            f.how = "too large"
    defined = regular[:MAX_DEFINED_FILES]
    if len(regular) > len(defined):
        cmap.notes.append(
            f"definitions read for the first {len(defined):,} of {len(regular):,} files"
        )
    python = [f for f in defined if f.path.endswith(PYTHON)]
    importers = importer_candidates(git_dir, commit, entries, modules, python, cmap)
    texts = read_texts(git_dir, [entries[p] for p in {f.path for f in python} | set(importers)])
    for f in python:
        if (tree := parsed(f, texts[f.path])) is not None:
            f.defs, f.more_defs = python_defs(tree)
            f.imports = sorted(modules.imported_by(f.path, import_nodes(tree)) - {f.path})
            del f.imports[MAX_LINKS:]
    link_importers(importers, texts, modules, python)
    others = [f for f in defined if not f.path.endswith(PYTHON)]
    if ctags and others:
        tag_files(git_dir, [entries[f.path] for f in others], others, ctags)
    return cmap


def matched(entries: dict[str, gitops.Entry], touch: planner.Touch) -> list[str]:
    """The tree's paths the scope matches. The planner reads paths a line each,
    so a name holding a line break is matched here on its own, the break read
    as any other character a wildcard may stand for."""
    found = {p for p in touch.files if p in entries}
    broken = [p for p in entries if "\n" in p or "\r" in p]
    if broken and touch.spec is not None:
        found |= {p for p in broken if touch.spec.match_file(LINE_BREAK.sub("\ufffd", p))}
    return sorted(found)


LINE_BREAK = re.compile(r"[\r\n]")


def file_map(entry: gitops.Entry) -> FileMap:
    if entry.mode == "120000":
        return FileMap(entry.path, entry.size, kind="symlink", how="not followed")
    if entry.mode == "160000":
        return FileMap(entry.path, None, kind="submodule", how="not read")
    return FileMap(entry.path, entry.size)


def read_texts(git_dir: Path, entries: Sequence[gitops.Entry]) -> dict[str, str]:
    """{path: text} of regular files, by their blob ids (never a path on disk)."""
    blobs = gitops.cat_blobs(git_dir, sorted({e.oid for e in entries}))
    return {e.path: blobs[e.oid].decode(errors="replace") for e in entries}


def parsed(f: FileMap, text: str) -> ast.Module | None:
    try:
        tree = ast.parse(text, filename=f.path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        f.how = "does not parse"
        return None
    f.how = "python"
    return tree


def python_defs(tree: ast.Module) -> tuple[list[str], int]:
    """The module's top-level classes and functions with their lines, and how many more."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            bases = ", ".join(ast.unparse(b) for b in node.bases)
            found.append(f"class {node.name}" + (f"({short(bases)})" if bases else ""))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
            found.append(f"{prefix} {node.name}({short(ast.unparse(node.args))})")
        else:
            continue
        found[-1] += f" :{node.lineno}"
    return found[:MAX_DEFS], max(0, len(found) - MAX_DEFS)


def short(text: str) -> str:
    return text if len(text) <= SIGNATURE_CHARS else text[: SIGNATURE_CHARS - 1] + "…"


class ModuleIndex:
    """Dotted module names of a tree's Python files, to resolve imports to files.
    A module is looked for from the root, `src/` and `lib/`, then from the
    importing file's own folder (a script's sibling)."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.by_name: dict[str, str] = {}
        self.names_of: dict[str, list[str]] = {}
        for path in sorted(paths):
            for root in ROOTS:
                if path.startswith(root) and (name := dotted(path[len(root) :])):
                    self.by_name.setdefault(name, path)
                    self.names_of.setdefault(path, []).append(name)

    def imported_by(self, path: str, statements: Iterable[ast.stmt]) -> set[str]:
        """The tree's files that `path`'s import `statements` import."""
        package = package_of(path)
        here = str(PurePosixPath(path).parent).replace("/", ".").strip(".")
        found: set[str | None] = set()
        for node in statements:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.add(self.resolve(alias.name, here))
            elif isinstance(node, ast.ImportFrom):
                base = absolute(node.module or "", node.level, package)
                if base is None:
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}" if base else alias.name
                    found.add(self.resolve(sub, here, exact=True) or self.resolve(base, here))
        return {f for f in found if f is not None}

    def resolve(self, name: str, here: str, exact: bool = False) -> str | None:
        """The file of `name`, or of its longest importable prefix (unless `exact`)."""
        parts = name.split(".")
        ends = [len(parts)] if exact else range(len(parts), 0, -1)
        for end in ends:
            candidate = ".".join(parts[:end])
            for full in (candidate, f"{here}.{candidate}" if here else ""):
                if full and (path := self.by_name.get(full)):
                    return path
        return None


def dotted(path: str) -> str | None:
    """`a/b/c.py` as `a.b.c`, `a/b/__init__.py` as `a.b` (None: not a module name)."""
    stem = path.rsplit(".", 1)[0]
    parts = stem.split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def package_of(path: str) -> str:
    """The package a relative import in `path` starts from."""
    name = dotted(path) or ""
    if path.endswith(("__init__.py", "__init__.pyi")):
        return name
    return name.rpartition(".")[0]


def absolute(module: str, level: int, package: str) -> str | None:
    """A `from` import's module made absolute (None: it climbs above the root)."""
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def importer_candidates(
    git_dir: Path,
    commit: str,
    entries: dict[str, gitops.Entry],
    modules: ModuleIndex,
    python: Sequence[FileMap],
    cmap: CodeMap,
) -> list[str]:
    """The Python files that may import a scope file: `git grep` finds those
    naming its module as a word; link_importers reads their imports."""
    names = [name for f in python for name in modules.names_of.get(f.path, [])]
    if not names:
        return []
    words = sorted({name.rsplit(".", 1)[-1] for name in names})
    found = gitops.files_with_words(git_dir, commit, words, PYTHON_PATHSPECS)
    # An absolute import names the module's top (`from pkg.sub import mod`); a
    # relative one, or a script's import of its sibling, is under the same top folder.
    heads = sorted({name.split(".", 1)[0] for name in names})
    near = set(gitops.files_with_words(git_dir, commit, heads, PYTHON_PATHSPECS))
    tops = tuple({f.path.split("/", 1)[0] + "/" for f in python})
    found = [p for p in found if p in near or p.startswith(tops)]
    candidates = [
        p
        for p in found
        if p in entries and entries[p].regular and (entries[p].size or 0) <= MAX_PARSED_BYTES
    ]
    if len(candidates) > MAX_IMPORTER_FILES:
        cmap.notes.append(
            f"importers looked for in {MAX_IMPORTER_FILES:,} of {len(candidates):,} files"
        )
    return candidates[:MAX_IMPORTER_FILES]


def link_importers(
    candidates: Sequence[str],
    texts: dict[str, str],
    modules: ModuleIndex,
    python: Sequence[FileMap],
) -> None:
    """Each scope file's importers among the candidates, their imports resolved
    as a scope file's are (a word in a comment or a string does not count)."""
    targets = {f.path: f for f in python}
    for path in candidates:
        for target in modules.imported_by(path, import_statements(texts[path])) & targets.keys():
            if target != path and len(targets[target].importers) < MAX_LINKS:
                targets[target].importers.append(path)
    for f in python:
        f.importers.sort()


# An import statement at the start of a line, with its parenthesised or
# backslashed continuation: a candidate importer's statements are parsed
# alone, not its whole text (most of a file is not imports).
IMPORT_LINE = re.compile(
    r"^[ \t]*(?:from[ \t]+[.\w]+[ \t]+import[ \t]*(?:\([^)]*\)|[^\n]*)|import[ \t]+[^\n]*)"
    r"(?:\\\n[^\n]*)*",
    re.MULTILINE,
)


def import_statements(text: str) -> list[ast.stmt]:
    """The import statements of a Python text, each parsed by `ast` (a line that
    only looks like one, inside a string, is not Python alone and is dropped)."""
    found: list[ast.stmt] = []
    for match in IMPORT_LINE.finditer(text):
        try:
            found += ast.parse(match.group().strip()).body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return found


def import_nodes(tree: ast.Module) -> list[ast.stmt]:
    """The import statements of a parsed module at any depth of its statements
    (under `if`, `try`, a function), without walking every expression."""
    found: list[ast.stmt] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
            continue
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(node, name, ()):
                pending.append(child)
    return found


@cache
def ctags_program() -> str | None:
    """Universal Ctags' path when it is installed with JSON output (else None:
    other languages' files are named without definitions)."""
    path = shutil.which("ctags")
    if path is None:
        return None
    try:
        version = run_ctags(path, ["--version"], Path("/"))
        features = run_ctags(path, ["--list-features"], Path("/"))
    except (OSError, subprocess.SubprocessError):
        return None
    if "Universal Ctags" not in version or not re.search(r"(?m)^json\b", features):
        return None
    return path


def run_ctags(program: str, args: list[str], cwd: Path) -> str:
    # No option files (~/.ctags.d, ./.ctags.d: a repository could ship one), no home.
    argv = [program, "--options=NONE", *args]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", "LC_ALL": "C.UTF-8"}
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, timeout=CTAGS_SECONDS, check=False
    )
    return done.stdout.decode(errors="replace")


def tag_files(
    git_dir: Path, entries: Sequence[gitops.Entry], files: Sequence[FileMap], program: str
) -> None:
    """Top-level definitions of non-Python files by Universal Ctags, run on copies
    Corral writes under names of its own (the extension kept, for the language)."""
    texts = gitops.cat_blobs(git_dir, sorted({e.oid for e in entries}))
    with tempfile.TemporaryDirectory(prefix="corral-ctags-") as tmp:
        names = {}
        for n, (entry, f) in enumerate(zip(entries, files, strict=True)):
            suffix = re.sub(r"[^A-Za-z0-9]", "", PurePosixPath(entry.path).suffix)[:10]
            name = f"f{n}.{suffix}" if suffix else f"f{n}"
            Path(tmp, name).write_bytes(texts[entry.oid])
            names[name] = f
        try:
            out = run_ctags(
                program,
                ["--output-format=json", "--fields=+nKZ-P", "-f", "-", *sorted(names)],
                Path(tmp),
            )
        except (OSError, subprocess.SubprocessError):
            return
    tags: dict[str, list[tuple[int, str]]] = {}
    for line in out.splitlines():
        try:
            tag = json.loads(line)
        except ValueError:
            continue
        if tag.get("_type") == "tag" and "scope" not in tag and tag.get("path") in names:
            shown = f"{tag.get('kind', 'tag')} {tag.get('name', '')}"
            tags.setdefault(tag["path"], []).append((int(tag.get("line", 0)), short(shown)))
    for name, f in names.items():
        found = [f"{text} :{line}" for line, text in sorted(tags.get(name, []))]
        f.how, f.defs, f.more_defs = "ctags", found[:MAX_DEFS], max(0, len(found) - MAX_DEFS)


# --- Caching -----------------------------------------------------------------

_memory: OrderedDict[str, CodeMap] = OrderedDict()


def cache_key(commit: str, scope: Sequence[str], ctags: str | None) -> str:
    """A commit names its tree and history: the key needs no repository."""
    raw = json.dumps([VERSION, commit, list(scope), bool(ctags)])
    return hashlib.sha256(raw.encode()).hexdigest()


def cached(
    git_dir: Path, slug: str, commit: str, scope: Sequence[str], ctags: str | None
) -> CodeMap:
    """The map, from this process, else from CORRAL_HOME/codemaps/, else built."""
    key = cache_key(commit, scope, ctags)
    with _lock:
        if (hit := _memory.get(key)) is not None:
            _memory.move_to_end(key)
            return hit
    path = Path(settings.CORRAL_HOME) / "codemaps" / slug / f"{key}.json"
    cmap = from_disk(path)
    if cmap is None:
        cmap = build(git_dir, commit, scope, ctags)
        to_disk(path, cmap)
    with _lock:
        _memory[key] = cmap
        while len(_memory) > MEMORY_KEPT:
            _memory.popitem(last=False)
    return cmap


def from_disk(path: Path) -> CodeMap | None:
    try:
        return CodeMap.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):
        return None  # none yet, or unreadable: built again


def to_disk(path: Path, cmap: CodeMap) -> None:
    """Written whole or not at all (another process may write the same map)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            json.dump(asdict(cmap), f)
        os.replace(f.name, path)
        prune(path.parent)
    except OSError:
        pass  # a cache: the map was built, the pack goes on without keeping it


def prune(folder: Path) -> None:
    files = list(folder.glob("*.json"))
    if len(files) <= DISK_KEPT:
        return
    files.sort(key=lambda p: p.stat().st_mtime)
    for old in files[: len(files) - DISK_KEPT * 4 // 5]:
        old.unlink(missing_ok=True)


# --- Rendering ---------------------------------------------------------------

CONTROLS = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}


def code(text: str) -> str:
    """`text` as a Markdown code span nothing in it can end or break out of:
    control and format characters (newlines, bidi overrides) written as escapes,
    a fence longer than any run of backticks inside."""
    shown = "".join(
        c if unicodedata.category(c) not in CONTROLS else f"\\u{ord(c):04x}" for c in text
    )
    longest = max((len(run) for run in re.findall(r"`+", shown)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if shown.startswith(("`", " ")) or shown.endswith(("`", " ")) else ""
    return f"{fence}{pad}{shown}{pad}{fence}"


@dataclass
class Part:
    """A piece of the rendered map, chosen by `tier` (lower first) while room is left."""

    tier: int
    text: str
    file: int = -1  # the file it belongs to (-1: none)
    kind: str = ""


def render(cmap: CodeMap, room: int) -> tuple[str, str]:
    """The map's Markdown within `room` characters, and a note of what was cut ("" if
    nothing). The files' names come first, then the hot files, then definitions,
    then imports, then importers."""
    head = (
        f"\n## Code map of your scope at {cmap.commit[:12]}\n\n"
        "Read from git: names, sizes and top-level definitions (`:line`), not the files' text. "
        "Imports are read for Python files only.\n"
    )
    parts = map_parts(cmap)
    if len(head) > room:
        return "", omitted("no room after the bead's own text")
    used = len(head)
    chosen: list[Part] = []
    listed: set[int] = set()
    for part in sorted(parts, key=lambda p: p.tier):
        if part.file >= 0 and part.kind != "file" and part.file not in listed:
            continue
        if used + len(part.text) <= room:
            chosen.append(part)
            used += len(part.text)
            if part.kind == "file":
                listed.add(part.file)
    if parts and not chosen:  # a title alone maps nothing
        return "", omitted("no room after the bead's own text")
    return head + assemble(cmap, parts, chosen), cut_note(parts, chosen, room, cmap)


def map_parts(cmap: CodeMap) -> list[Part]:
    parts: list[Part] = []
    for n, f in enumerate(cmap.files):
        parts.append(Part(0, file_line(f), n, "file"))
        if f.defs:
            more = f" and {f.more_defs} more" if f.more_defs else ""
            parts.append(Part(2, ": " + "; ".join(map(code, f.defs)) + more, n, "defs"))
        if f.imports:
            parts.append(Part(3, "\n  - imports " + ", ".join(map(code, f.imports)), n, "imports"))
        if f.importers:
            text = "\n  - imported by " + ", ".join(map(code, f.importers))
            parts.append(Part(4, text, n, "importers"))
    parts += [Part(0, f"- not in the tree yet: {code(p)}\n", kind="missing") for p in cmap.missing]
    parts += [Part(1, f"- {code(p)}: changed by {n} commits\n", kind="hot") for p, n in cmap.hot]
    return parts


def file_line(f: FileMap) -> str:
    if f.kind == "symlink":
        return f"\n- {code(f.path)}: a symbolic link, not followed"
    if f.kind == "submodule":
        return f"\n- {code(f.path)}: a submodule, not read"
    what = {"too large": ", too large to read", "does not parse": ", does not parse"}
    return f"\n- {code(f.path)} ({f.size or 0:,} bytes{what.get(f.how, '')})"


def assemble(cmap: CodeMap, parts: list[Part], chosen: list[Part]) -> str:
    """The chosen parts in reading order: each file with its definitions and links."""
    picked = {id(p) for p in chosen}
    order = {"file": 0, "defs": 1, "imports": 2, "importers": 3}
    files = [p for p in parts if p.file >= 0 and id(p) in picked]
    files.sort(key=lambda p: (p.file, order[p.kind]))
    text = ""
    if cmap.anything:
        text += "\nThe bead has no scope (any path): no files are mapped.\n"
    elif files or any(p.kind == "missing" and id(p) in picked for p in parts):
        text += "\n### Files in scope\n" + "".join(p.text for p in files) + "\n"
        missing = [p.text for p in parts if p.kind == "missing" and id(p) in picked]
        text += "".join(missing)
    hot = [p.text for p in parts if p.kind == "hot" and id(p) in picked]
    if hot:
        text += (
            f"\n### Hot files (the planner's: most changed in the branch's last "
            f"{planner.HOT_COMMITS} commits; beads touching them conflict most)\n\n" + "".join(hot)
        )
    return text


def cut_note(parts: list[Part], chosen: list[Part], room: int, cmap: CodeMap) -> str:
    """What the room left out, and what the build did not read, in NOTE_CHARS at most."""
    picked = {id(p) for p in chosen}
    left: dict[str, int] = {}
    for p in parts:
        if id(p) not in picked:
            left[p.kind] = left.get(p.kind, 0) + 1
    said = [f"{n} {CUT_WORDS[kind][n > 1]}" for kind, n in left.items()]
    text = ""
    if said:
        text = f"Code map cut to its share of {room:,} characters: left out " + ", ".join(said)
    if cmap.notes:
        text += ("; " if text else "Code map: ") + "; ".join(cmap.notes)
    return clipped(f"[{text}.]\n") if text else ""


CUT_WORDS = {  # (one, several)
    "file": ("file's name", "files' names"),
    "missing": ("new-file pattern", "new-file patterns"),
    "hot": ("hot file", "hot files"),
    "defs": ("file's definitions", "files' definitions"),
    "imports": ("file's imports", "files' imports"),
    "importers": ("file's importers", "files' importers"),
}
NOTE_CHARS = 200  # the most a map's note takes of the pack's room for notes


def clipped(note: str) -> str:
    return note if len(note) <= NOTE_CHARS else note[: NOTE_CHARS - 3] + "…]\n"


def omitted(reason: str) -> str:
    return clipped(f"[Code map left out: {reason}.]\n")


# --- For a session -----------------------------------------------------------


def for_session(session: SessionLike, source: Path | None = None) -> tuple[CodeMap | None, str]:
    """The map of the session's bead at its base commit, read from `source` (a
    worker's mirror) or the canonical copy; else None and why."""
    bead = session.bead
    repository = bead.repository
    git_dir = source or repository.canonical_path
    if not gitops.can_read_repository(git_dir):
        return None, omitted("this worker cannot read the repository")
    try:
        commit = session.base_sha or gitops.head_sha(git_dir, repository.branch)
        return cached(git_dir, repository.slug, commit, bead.scope, ctags_program()), ""
    except (gitops.GitError, OSError, ValueError, subprocess.SubprocessError) as e:
        return None, omitted(f"git could not read it ({gitops.last_line(str(e))})")
