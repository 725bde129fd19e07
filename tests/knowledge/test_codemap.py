"""The code map in the context pack: the scope's files with their sizes and
definitions, imports one hop both ways, the planner's hot files, read from git
at the base commit, cut to its share with a note, and inert however hostile
the names and code it shows."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from agents.models import Session
from beads.models import Bead
from knowledge import codemap, inject
from tests.factories import git, unsafe_markup
from tests.races import race
from workspace.models import Repository

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data" / "codemap"
SCOPE = ["pkg/store.py", "pkg/api.py", "pkg/link.py", "web/**", "pkg/new_*.py"]
NEVER_IN_THE_PACK = (
    "store-body-never-in-the-pack",  # a scope file's text: only its definitions go in
    "util-body-never-in-the-pack",  # a file the scope does not name, imported by one it does
    "secret-target-never-in-the-pack",  # what a symlink in the scope points at
    "leaked",
)


def commit_all(path, message):
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)


@pytest.fixture
def source(tmp_path):
    """The data repository, a symlink in its scope, and a hot config file."""
    path = tmp_path / "src-mapped"
    shutil.copytree(DATA / "repo", path)
    os.symlink("../secret.txt", path / "pkg" / "link.py")
    git(path, "init", "-q", "-b", "main")
    commit_all(path, "start")
    for n in range(1, 4):
        (path / "config" / "settings.py").write_text(f"VERSION = {n}\n")
        commit_all(path, f"settings {n}")
    return path


@pytest.fixture
def mapped(source, workspace):
    return Repository.register(str(source), workspace, name="mapped")


def head(repo):
    return git(repo.canonical_path, "rev-parse", repo.branch)


def session_on(repo, agent, scope=SCOPE, description="Make the store faster."):
    bead = Bead.objects.create(
        repository=repo, title="Speed up the store", description=description, scope=scope
    )
    return Session.objects.create(agent=agent, bead=bead, status="running", base_sha=head(repo))


def by_path(cmap):
    return {f.path: f for f in cmap.files}


def test_python_files_have_their_definitions_and_imports_one_hop_both_ways(mapped):
    files = by_path(codemap.build(mapped.canonical_path, head(mapped), SCOPE, ctags=None))
    store, api = files["pkg/store.py"], files["pkg/api.py"]
    size = (DATA / "repo" / "pkg" / "store.py").stat().st_size
    assert (store.size, store.how) == (size, "python")
    assert store.defs == [
        "class Store :6",
        "def make_store(path, *, cache=True) :11",
        "async def refresh(store) :15",
    ]
    assert api.imports == ["pkg/store.py", "pkg/util.py"]  # absolute and relative
    # `from pkg import store` counts; scripts/run.py names "store" in a comment only.
    assert store.importers == ["pkg/api.py", "tests/store_checks.py"]
    assert api.importers == ["scripts/run.py"]


def test_the_pack_carries_the_map_and_the_planners_hot_files(mapped, agent):
    text = inject.render_context(session_on(mapped, agent), 40_000)
    assert "## Code map of your scope at" in text
    assert "- `pkg/store.py` (" in text and "`class Store :6`" in text
    assert "  - imported by `pkg/api.py`, `tests/store_checks.py`" in text
    assert "  - imports `pkg/store.py`, `pkg/util.py`" in text
    assert "- not in the tree yet: `pkg/new_*.py`" in text
    assert "- `config/settings.py`: changed by 4 commits" in text
    assert "[Code map" not in text  # room for all of it: nothing cut
    assert text.index("## Scope") < text.index("## Code map") < len(text)


def test_a_non_python_file_is_named_with_its_size_only_without_ctags(mapped):
    files = by_path(codemap.build(mapped.canonical_path, head(mapped), SCOPE, ctags=None))
    app = files["web/app.js"]
    assert (app.how, app.defs) == ("names", [])
    assert app.size == (DATA / "repo" / "web" / "app.js").stat().st_size
    shown, _ = codemap.render(codemap.build(mapped.canonical_path, head(mapped), SCOPE), 10_000)
    assert f"- `web/app.js` ({app.size:,} bytes)\n" in shown and "renderWidget" not in shown


def test_universal_ctags_where_installed_gives_other_languages_top_level_definitions(mapped):
    program = codemap.ctags_program()
    files = by_path(codemap.build(mapped.canonical_path, head(mapped), SCOPE, ctags=program))
    app = files["web/app.js"]
    if program:  # this machine has Universal Ctags: top-level definitions, no methods
        assert app.how == "ctags"
        assert app.defs == ["function renderWidget :1", "class Widget :5"]
    else:  # none here: names only, as above
        assert (app.how, app.defs) == ("names", [])


def test_a_symlink_in_the_scope_is_named_and_never_followed(mapped, agent):
    files = by_path(codemap.build(mapped.canonical_path, head(mapped), SCOPE, ctags=None))
    link = files["pkg/link.py"]
    assert (link.kind, link.defs, link.importers) == ("symlink", [], [])
    text = inject.render_context(session_on(mapped, agent), 40_000)
    assert "- `pkg/link.py`: a symbolic link, not followed" in text
    assert "secret.txt" not in text


def test_the_pack_holds_no_files_text_only_names_and_definitions(mapped, agent):
    text = inject.render_context(session_on(mapped, agent), 40_000)
    assert "`pkg/util.py`" in text  # named, as what api.py imports
    for marker in NEVER_IN_THE_PACK:
        assert marker not in text, marker


def many_modules(tmp_path, workspace, count=120):
    path = tmp_path / "src-big"
    (path / "big").mkdir(parents=True)
    for n in range(count):
        defs = "".join(f"def function_{n}_{d}(argument_{d}):\n    pass\n\n\n" for d in range(6))
        (path / "big" / f"module_{n:03d}.py").write_text(defs)
    git(path, "init", "-q", "-b", "main")
    commit_all(path, "many modules")
    return Repository.register(str(path), workspace, name="big")


def test_a_map_too_big_for_its_share_is_cut_and_the_note_says_what_went(tmp_path, workspace, agent):
    repo = many_modules(tmp_path, workspace)
    text = inject.render_context(session_on(repo, agent, ["big/**"]), 8_000)
    assert len(text) <= 8_000
    shown = text.split("## Code map of your scope")[1].split("\n[")[0]
    assert len(shown) <= inject.MAP_SHARE * 8_000
    assert "[Code map cut to its share of 2,000 characters: left out " in text
    assert "files' definitions" in text and "files' names" in text
    assert "- `big/module_000.py` (" in shown  # the first names made it


def test_the_map_never_squeezes_out_the_beads_own_text(mapped, agent):
    budget = 4_000
    description = "Keep every word of this. " * 135  # 3,375 characters: most of the pack
    session = session_on(mapped, agent, description=description)
    text = inject.render_context(session, budget)
    assert description.strip() in text and "## Scope" in text
    assert "[Code map left out: no room after the bead's own text.]" in text
    assert "## Code map" not in text and len(text) <= budget
    # With room, the whole bead and the map both go in.
    roomy = inject.render_context(session, 40_000)
    assert description.strip() in roomy and "## Code map" in roomy


@pytest.fixture
def hostile(tmp_path, workspace):
    spec = json.loads((DATA / "hostile.json").read_text())
    path = tmp_path / "src-hostile"
    (path / "hostile").mkdir(parents=True)
    for name in spec["names"]:
        (path / name).parent.mkdir(parents=True, exist_ok=True)  # "</script>" has a slash
        (path / name).write_text("function inside() {}\n")
    (path / spec["python_path"]).write_text(spec["python"])
    git(path, "init", "-q", "-b", "main")
    commit_all(path, "hostile names")
    return Repository.register(str(path), workspace, name="hostile"), spec


def test_hostile_names_and_code_are_inert_in_the_pack_and_on_the_session_page(
    hostile, agent, logged_in
):
    repo, spec = hostile
    session = session_on(repo, agent, ["hostile/**"])
    text = inject.render_context(session, 40_000)
    assert "`def trap(" in text and "class Evil" in text
    assert "\n# Injected" not in text and "\u202e" not in text  # escaped: \u000a, \u202e
    assert "evil\\u000a# Injected heading.py" in text
    # Read as Markdown (raw HTML allowed), what the names and the code hold stays
    # inside code spans: no tag, link or heading of theirs.
    html = MarkdownIt("commonmark").render(text)
    outside = re.sub(r"<code>.*?</code>", "", html, flags=re.S)
    for marker in ("alert(", "Injected", "<img", "javascript", "<b>"):
        assert marker not in outside, marker
    assert "docstring-never-in-the-pack" not in text
    session.record_context("", text)
    page = logged_in.get(session.get_absolute_url()).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.js" in page
    assert unsafe_markup(page, "alert(") == []


def test_a_map_is_built_once_per_commit_and_scope(mapped, source, tmp_path):
    commit = head(mapped)
    first = codemap.cached(mapped.canonical_path, "mapped", commit, SCOPE, None)
    codemap._memory.clear()
    moved = tmp_path / "moved.git"
    mapped.canonical_path.rename(moved)  # no git to read: the map comes from its file
    try:
        again = codemap.cached(mapped.canonical_path, "mapped", commit, SCOPE, None)
    finally:
        moved.rename(mapped.canonical_path)
    assert again == first
    (source / "pkg" / "new_cache.py").write_text("def fresh():\n    pass\n")
    commit_all(source, "a new file")
    git(mapped.canonical_path, "fetch", "-q", str(source), "main:main")
    later = codemap.cached(mapped.canonical_path, "mapped", head(mapped), SCOPE, None)
    assert "pkg/new_cache.py" in by_path(later) and "pkg/new_cache.py" not in by_path(first)


def build_in_a_process(git_dir, commit):
    codemap._memory.clear()
    return json.dumps(codemap.asdict(codemap.cached(Path(git_dir), "raced", commit, SCOPE, None)))


def test_maps_built_at_once_by_many_processes_agree_and_one_file_is_kept(
    mapped, settings, tmp_path
):
    settings.CORRAL_HOME = tmp_path / "home"
    commit = head(mapped)
    results = race(build_in_a_process, [(str(mapped.canonical_path), commit)] * 4)
    assert len(set(results)) == 1
    kept = list((Path(settings.CORRAL_HOME) / "codemaps" / "raced").glob("*.json"))
    assert [json.loads(p.read_text())["commit"] for p in kept] == [commit]
