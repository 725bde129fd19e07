"""Seed a demo workspace: three small repositories with history, beads across
them, and two demo agents. Used by `manage.py demo`.

The demo is data, in the folder demo/ at the top of the repository (its
README.md describes it): each repository's manifest and the files of each of
its commits, and the beads in bd's JSONL format. Seeding builds each
repository's history under $CORRAL_HOME/demo-src, registers it, and imports
the beads.

The demo is recognised by its repository slugs (`demo-api`, `demo-web`,
`demo-infra`): if any of them is registered, seeding changes nothing. Seeding
is all or nothing: on a failure the database rolls back and every folder this
run created is removed again.
"""

import os
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents.models import Agent, ChangeSet
from agents.moves import changesets
from beads import jsonl, plans
from beads.models import Bead, Dependency, Plan
from workspace.gitops import GitError, last_line
from workspace.models import Repository, Workspace

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
AGENTS = ["demo-1", "demo-2"]


class DemoError(Exception):
    """Seeding failed; the message is one line fit to show a person."""


@dataclass
class Seeded:
    already: bool = False
    repositories: list = field(default_factory=list)
    beads: list = field(default_factory=list)
    dependencies: list = field(default_factory=list)
    agents: list = field(default_factory=list)  # (agent, plain token or None if it existed)
    changesets: list = field(default_factory=list)
    plan: Plan | None = None  # the draft plan
    source_dir: object = None


# --- The data ------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    folder: Path  # the files this commit adds or replaces
    author: str  # "Name <email>", author and committer alike
    date: datetime
    message: str


@dataclass(frozen=True)
class DemoRepo:
    name: str
    branch: str
    bead_prefix: str  # the prefix of its beads' IDs in beads.jsonl
    check_command: str
    review_mode: str
    commits: list[Commit]


def manifest() -> dict[str, Any]:
    with open(DEMO_DIR / "demo.toml", "rb") as f:
        return tomllib.load(f)


def demo_slugs() -> list[str]:
    return list(manifest()["repositories"])


def load_repo(name: str) -> DemoRepo:
    folder = DEMO_DIR / name
    with open(folder / "repository.toml", "rb") as f:
        data = tomllib.load(f)
    commits = [
        Commit(folder / c["folder"], c["author"], c["date"], c["message"]) for c in data["commits"]
    ]
    return DemoRepo(
        name=data["name"],
        branch=data["branch"],
        bead_prefix=data["bead_prefix"],
        check_command=data["check_command"],
        review_mode=data["review_mode"],
        commits=commits,
    )


# --- Seeding -------------------------------------------------------------------


def seed() -> Seeded:
    """Create the demo workspace, or report the one already there."""
    existing = list(Repository.objects.filter(slug__in=demo_slugs()))
    if existing:
        return Seeded(already=True, repositories=existing)
    if shutil.which("git") is None:
        raise DemoError("git is not installed (or not on PATH); the demo needs it")
    source_dir = settings.CORRAL_HOME / "demo-src"
    made: list[Path] = []  # folders this run created, removed again if it fails
    try:
        data = manifest()
        specs = [load_repo(name) for name in data["repositories"]]
        # The data's dates are as of `recorded_at`; moved by this much, the
        # demo's history ends just before now, however old the data is.
        shift = timezone.now() - data["recorded_at"]
        sources = {
            spec.name: make_source(source_dir / spec.name, spec, shift, made) for spec in specs
        }
        with transaction.atomic():
            result = seed_database(specs, sources, shift, made)
    except BaseException as e:
        for path in reversed(made):
            shutil.rmtree(path, ignore_errors=True)
        if isinstance(e, GitError | OSError | ValueError):  # ValueError: bad data
            raise DemoError(str(e)) from None
        if isinstance(e, ValidationError):
            raise DemoError("; ".join(e.messages)) from None
        raise
    result.source_dir = source_dir
    return result


def seed_database(
    specs: list[DemoRepo], sources: dict[str, Path], shift: timedelta, made: list[Path]
) -> Seeded:
    workspace = Workspace.default()
    result = Seeded()
    repos: dict[str, Repository] = {}  # by the prefix the beads' IDs have in beads.jsonl
    for spec in specs:
        prefix = spec.bead_prefix
        if Repository.objects.filter(bead_prefix=prefix).exists():
            prefix = Repository.free_prefix(spec.bead_prefix)
        repo = Repository.register(
            str(sources[spec.name]),
            workspace,
            name=spec.name,
            branch=spec.branch,
            check_command=spec.check_command,
            bead_prefix=prefix,
            review_mode=spec.review_mode,
        )
        made.append(repo.canonical_path)
        repos[spec.bead_prefix] = repo
        result.repositories.append(repo)
    records = jsonl.read(DEMO_DIR / "beads.jsonl")
    commits = {spec.bead_prefix: commits_by_subject(sources[spec.name]) for spec in specs}
    for record in records:
        shift_times(record, shift)
        record_commit(record, commits)
    # Each bead takes its repository's prefix: `api2-…` when a user's repository has `api`.
    result.beads = jsonl.import_records(records, repos, origin=Bead.Origin.DEMO).beads
    by_record = {record["id"]: bead for record, bead in zip(records, result.beads, strict=True)}
    result.changesets = create_changesets(workspace, by_record)
    result.dependencies = list(
        Dependency.objects.filter(issue__in=result.beads)
        .select_related("issue", "depends_on")
        .order_by("pk")
    )
    result.agents = create_agents()
    result.plan = seed_plan(workspace, repos)
    return result


def create_changesets(workspace: Workspace, beads: dict[str, Bead]) -> list[ChangeSet]:
    """The demo's change sets (demo.toml), over its beads as beads.jsonl names them."""
    return [
        changesets.create(
            spec["title"],
            [beads[bead_id] for bead_id in spec["beads"]],
            workspace,
            command=spec.get("integration_command", []),
        )
        for spec in manifest().get("changesets", [])
    ]


def seed_plan(workspace: Workspace, repos: dict[str, Repository]) -> Plan:
    """The draft plan of demo/plan.toml, its waves as the planner proposes them."""
    with open(DEMO_DIR / "plan.toml", "rb") as f:
        data = tomllib.load(f)
    ids = []
    for bead_id in data["beads"]:
        prefix, rest = jsonl.split_id(bead_id)
        ids.append(f"{repos[prefix].bead_prefix}-{rest}")  # the prefix may have moved (api2)
    beads = list(Bead.objects.filter(pk__in=ids))
    if len(beads) != len(ids):
        raise DemoError(f"demo/plan.toml names beads that are not in beads.jsonl: {ids}")
    return plans.start(workspace, data["name"], beads, data["max_agents_per_wave"])


def shift_times(record: dict[str, Any], shift: timedelta) -> None:
    moved = [record, *record.get("dependencies", [])]
    for entry in moved:
        for key in ("created_at", "updated_at", "closed_at"):
            if entry.get(key):
                entry[key] = jsonl.format_time(jsonl.parse_time(entry[key]) + shift)


def record_commit(
    record: dict[str, Any], commits: dict[str, dict[str, tuple[str, datetime]]]
) -> None:
    """A closed bead names, as `demo_commit`, the subject of the commit that did
    its work; it records that commit, closed when the commit was made."""
    subject = record.pop("demo_commit", None)
    if record.get("status") != Bead.Status.CLOSED or subject is None:
        return
    prefix, _ = jsonl.split_id(record["id"])
    if subject not in commits[prefix]:
        raise DemoError(f"{record['id']}: no commit {subject!r} in its repository's history")
    sha, when = commits[prefix][subject]
    record["commit_sha"] = sha
    record["closed_at"] = record["updated_at"] = jsonl.format_time(when)
    record["close_reason"] = "committed"


def create_agents() -> list[tuple[Agent, str | None]]:
    """The demo agents; one that already exists by name is kept as it is."""
    agents: list[tuple[Agent, str | None]] = []
    for name in AGENTS:
        agent = Agent.objects.filter(name=name).first()
        if agent is not None:
            agents.append((agent, None))
            continue
        agent = Agent(name=name, preset="demo", internal=True)
        agent.full_clean(exclude=["token_hash"])
        agent.save()
        agents.append((agent, agent.plain_token))
    return agents


# --- Git -----------------------------------------------------------------------

# Inherited variables that would point git at another repository or identity
# (a git hook, for one, sets GIT_INDEX_FILE).
GIT_OVERRIDES = {
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
}


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    argv = ["git", "-c", "commit.gpgsign=false", *args]
    full_env = {k: v for k, v in os.environ.items() if k not in GIT_OVERRIDES}
    full_env.update(env or {}, GIT_TERMINAL_PROMPT="0")
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=full_env, capture_output=True, text=True, check=True
        )
    except FileNotFoundError:
        raise DemoError("git is not installed (or not on PATH); the demo needs it") from None
    except subprocess.CalledProcessError as e:
        raise DemoError(f"git {args[0]} failed in {cwd}: {last_line(e.stderr)}") from None
    return done.stdout


def make_source(path: Path, spec: DemoRepo, shift: timedelta, made: list) -> Path:
    """The working repository for `spec` with its commits; an existing one is reused."""
    if path.exists():
        try:
            if git(path, "rev-parse", "--show-toplevel").strip() == str(path.resolve()):
                git(path, "rev-parse", "--verify", "HEAD^{commit}")
                return path
        except DemoError:
            pass
        raise DemoError(f"{path} exists but is not a demo repository; remove it and run again")
    path.mkdir(parents=True)
    made.append(path)
    git(path, "init", "-q", "-b", spec.branch)
    for commit in spec.commits:
        copy_files(commit.folder, path)
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", commit.message, env=identity(commit, shift))
    return path


def copy_files(source: Path, dest: Path) -> None:
    """Add or replace, byte for byte, every file under `source` in `dest`."""
    if not source.is_dir():
        raise DemoError(f"{source}: no such folder in the demo data")
    for src in sorted(source.rglob("*")):
        if src.is_dir() or "__pycache__" in src.parts:  # left by running the files in place
            continue
        target = dest / src.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())


def identity(commit: Commit, shift: timedelta) -> dict[str, str]:
    """The environment that makes the commit's author its author and committer, at its date."""
    name, email = parseaddr(commit.author)
    when = f"{int((commit.date + shift).timestamp())} +0000"
    env: dict[str, str] = {}
    for role in ("AUTHOR", "COMMITTER"):
        env |= {f"GIT_{role}_NAME": name, f"GIT_{role}_EMAIL": email, f"GIT_{role}_DATE": when}
    return env


def commits_by_subject(path: Path) -> dict[str, tuple[str, datetime]]:
    """{subject: (sha, commit time)} for the history of the working repository."""
    out = git(path, "log", "--format=%H%x1f%cI%x1f%s")
    found: dict[str, tuple[str, datetime]] = {}
    for line in out.splitlines():
        sha, when, subject = line.split("\x1f", 2)
        found.setdefault(subject, (sha, datetime.fromisoformat(when)))
    return found
