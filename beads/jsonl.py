"""The beads (bd) JSONL format, both ways: one issue a line, as bd keeps
`.beads/issues.jsonl`.

A record has bd's field names: id, title, description, design,
acceptance_criteria, notes, status, priority, issue_type, assignee, labels,
created_at, updated_at, closed_at, close_reason, dependencies (each
{issue_id, depends_on_id, type, created_at, created_by}) and comments (each
{id, issue_id, author, text, created_at}: Comment rows, bd's author kept as a
name, its other keys in Comment.extra). Corral's own bead
fields that bd does not have travel as extra top-level keys of the same names:
scope, time_limit_s, attempts, last_failure, commit_sha.

Lossless: import_records() stores what Corral has a column for, and keeps the
rest in Bead.extra and Dependency.extra as it came (keys Corral does not model,
such as external_ref, ephemeral, created_by; and the original of a
value Corral stores differently: a status or issue type it does not have, a
time not in UTC). export_records() writes those back, an original only while
the bead still has the value it was mapped to.

bd's statuses stored as another: `in_progress` and `hooked` (held by an agent
outside Corral; and `review`) deferred, `pinned` open (and never ready), `tombstone` closed,
any other unknown status deferred; an unknown issue type is a task. Pinned
and ephemeral beads and bd's non-work types are never ready (Bead.pinned,
Bead.not_work; beads/hook.py).

IDs are kept as they came, several prefixes in one file included. Given a
mapping of prefixes to repositories (the demo), a record's ID `<prefix>-<hash>`
is stored as `<repository's prefix>-<hash>` instead (bd's rename on import).
A dependency on a bead neither among the records nor in Corral is kept on the
bead as an external reference (Bead.external_dependencies) and, as in bd,
does not block.

Import is an upsert by ID, all or nothing: every record is checked before
anything is written, an error names the record's line, a `blocks` cycle is
refused, and importing the same records again changes nothing.
"""

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.utils import timezone

from beads import ids, moves
from beads.models import Bead, Comment, Dependency, lock_dependency_graph
from workspace.models import Repository

# What read() checks each known key against; other keys pass as they are.
TEXT = (
    "title",
    "description",
    "design",
    "acceptance_criteria",
    "notes",
    "status",
    "issue_type",
    "assignee",
    "close_reason",
    "last_failure",
    "commit_sha",
)
TIMES = ("created_at", "updated_at", "closed_at")
LISTS_OF_TEXT = ("labels", "scope")
NUMBERS = ("priority", "time_limit_s", "attempts")
NULLABLE = ("closed_at", "time_limit_s")
MAX_ID = Bead._meta.get_field("id").max_length or 64
MAX_TYPE = Dependency._meta.get_field("type").max_length or 20
MAX_AUTHOR = Comment._meta.get_field("author_name").max_length or 200
MAX_NESTING = 64  # bd's records nest three deep; a JSON line deeper than this is refused
STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
BRACKETS = re.compile(r"[\[\]{}]")

# The record keys import_records() stores on the bead as they are.
BEAD_FIELDS = (
    "title",
    "description",
    "design",
    "acceptance_criteria",
    "notes",
    "status",
    "priority",
    "issue_type",
    "assignee",
    "labels",
    "close_reason",
    "scope",
    "time_limit_s",
    "attempts",
    "last_failure",
    "commit_sha",
)


# --- Reading and writing -------------------------------------------------------


def read(source: str | os.PathLike | Iterable[str]) -> list[dict[str, Any]]:
    """The records of a JSONL file (a path) or of lines of one (e.g. an open file).

    Blank lines are skipped, as bd does. A line that is not a valid record
    raises ValueError naming its line number.
    """
    return [record for _, record in read_numbered(source)]


def read_numbered(source: str | os.PathLike | Iterable[str]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) of each record, for import_records to name lines."""
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8") as lines:
            return read_lines(lines, where=f"{source}, ")
    return read_lines(source)


def read_lines(lines: Iterable[str], where: str = "") -> list[tuple[int, dict[str, Any]]]:
    records: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, int] = {}  # id: line number
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if nesting(line) > MAX_NESTING:
            raise ValueError(f"{where}line {number}: nested deeper than {MAX_NESTING} levels")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}line {number}: not valid JSON: {e.msg}") from None
        except RecursionError:  # not past nesting(): a safety net, never a 500
            raise ValueError(f"{where}line {number}: nested too deep to read") from None
        try:
            check_record(record)
        except ValueError as e:
            raise ValueError(f"{where}line {number}: {e}") from None
        if record["id"] in seen:
            raise ValueError(
                f"{where}line {number}: {record['id']} is already on line {seen[record['id']]}"
            )
        seen[record["id"]] = number
        records.append((number, record))
    return records


def nesting(line: str) -> int:
    """How deep the JSON of `line` nests (an object or a list is one level),
    counted before parsing: json.loads recurses once a level, and a line nested
    100,000 deep would raise RecursionError. Brackets in strings do not count
    (in an unclosed one they do: json.loads would refuse the line anyway)."""
    depth = deepest = 0
    for bracket in BRACKETS.finditer(STRINGS.sub('""', line)):
        depth += 1 if bracket.group() in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            break
    return deepest


class Writer(Protocol):
    def write(self, text: str, /) -> object: ...


def write(records: Iterable[Mapping[str, Any]], stream: Writer) -> None:
    """One record a line, compact, with keys in the order given (bd's, from
    export_records)."""
    for record in records:
        stream.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")


def check_record(record: Any) -> None:
    """Raise ValueError unless `record` has the shape of a bd issue."""
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    if not isinstance(record.get("id"), str) or not record["id"]:
        raise ValueError("no id")
    if len(record["id"]) > MAX_ID:
        raise ValueError(f"{record['id'][:MAX_ID]}…: an ID has at most {MAX_ID} characters")
    if problem := ids.problem(record["id"]):
        raise ValueError(problem)
    if not isinstance(record.get("title"), str) or not record["title"]:
        raise ValueError(f"{record['id']} has no title")
    for key, value in record.items():
        if value is None and key in NULLABLE:
            continue
        if key in TEXT and not isinstance(value, str):
            raise ValueError(f"{record['id']}: {key} must be text")
        if key in NUMBERS and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError(f"{record['id']}: {key} must be a whole number")
        if key in LISTS_OF_TEXT and not is_list_of_text(value):
            raise ValueError(f"{record['id']}: {key} must be a list of text")
        if key in TIMES:
            check_time(record["id"], key, value)
    dependencies = record.get("dependencies", [])
    if not isinstance(dependencies, list):
        raise ValueError(f"{record['id']}: dependencies must be a list")
    for dependency in dependencies:
        check_dependency(record["id"], dependency)
    comments = record.get("comments", [])
    if not isinstance(comments, list):
        raise ValueError(f"{record['id']}: comments must be a list")
    for comment in comments:
        check_comment(record["id"], comment)


def check_comment(issue_id: str, comment: Any) -> None:
    if not isinstance(comment, dict):
        raise ValueError(f"{issue_id}: each comment must be a JSON object")
    if not isinstance(comment.get("text"), str):
        raise ValueError(f"{issue_id}: a comment has no text")
    if not isinstance(comment.get("author", ""), str):
        raise ValueError(f"{issue_id}: a comment's author must be text")
    if len(comment.get("author", "")) > MAX_AUTHOR:
        raise ValueError(f"{issue_id}: a comment's author has at most {MAX_AUTHOR} characters")
    if comment.get("created_at") is not None:
        check_time(issue_id, "a comment's created_at", comment["created_at"])


def check_dependency(issue_id: str, dependency: Any) -> None:
    if not isinstance(dependency, dict):
        raise ValueError(f"{issue_id}: each dependency must be a JSON object")
    if dependency.get("issue_id", issue_id) != issue_id:
        # bd lists a dependency on the issue that depends, never elsewhere.
        raise ValueError(f"{issue_id}: a dependency of {dependency['issue_id']} is listed here")
    if not isinstance(dependency.get("depends_on_id"), str) or not dependency["depends_on_id"]:
        raise ValueError(f"{issue_id}: a dependency has no depends_on_id")
    kind = dependency.get("type", "")
    if not isinstance(kind, str) or len(kind) > MAX_TYPE:
        raise ValueError(f"{issue_id}: a dependency's type must be text of {MAX_TYPE} characters")
    if "created_at" in dependency:
        check_time(issue_id, "a dependency's created_at", dependency["created_at"])


def check_time(issue_id: str, key: str, value: Any) -> None:
    try:
        parse_time(value)
    except (TypeError, ValueError):
        raise ValueError(f"{issue_id}: {key} must be an RFC 3339 time, not {value!r}") from None


def is_list_of_text(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as bd writes it (`Z` or an offset; nanoseconds are cut
    to microseconds). A time without an offset is refused: it names no instant."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment


def format_time(moment: datetime) -> str:
    """As Go writes a UTC time: `2025-06-01T12:00:00Z`, fractions without trailing zeros."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def split_id(bead_id: str) -> tuple[str, str]:
    """(prefix, hash) of a bd ID. bd prefixes may hold hyphens, hashes never do."""
    prefix, _, rest = bead_id.rpartition("-")
    if not prefix or not rest:
        raise ValueError(f"{bead_id!r} is not a bead ID (<prefix>-<hash>)")
    return prefix, rest


# --- What a record means to Corral -------------------------------------------------

# bd's statuses stored as another, and which. Work held by an agent outside
# Corral (in_progress, hooked; review, from another Corral's export) is
# deferred: those statuses are a session's here, and a bead held by none would
# count against max_agents and be stuck there.
STATUSES = {
    "in_progress": Bead.Status.DEFERRED,
    "review": Bead.Status.DEFERRED,
    "hooked": Bead.Status.DEFERRED,
    "pinned": Bead.Status.OPEN,
    "tombstone": Bead.Status.CLOSED,
}
UNKNOWN_STATUS = Bead.Status.DEFERRED  # bd's custom statuses: not ready there either
UNKNOWN_TYPE = Bead.Type.TASK
# bd's types that are not work for an agent: never ready.
NON_WORK_TYPES = {"merge-request", "gate", "molecule", "message", "agent", "role", "rig"}
# The keys Corral models; an import keeps any other key in `extra`.
MODELED = {"id", *BEAD_FIELDS, *TIMES, "dependencies", "comments"}
DEPENDENCY_MODELED = {"issue_id", "depends_on_id", "type", "created_at"}
COMMENT_MODELED = {"author", "text", "created_at"}


def stored_status(status: str) -> str:
    if status in STATUSES:
        return STATUSES[status]
    return status if status in Bead.Status.values else UNKNOWN_STATUS


def stored_type(issue_type: str) -> str:
    return issue_type if issue_type in Bead.Type.values else UNKNOWN_TYPE


def bead_values(record: Mapping[str, Any]) -> dict[str, Any]:
    """The bead's column values for a record: a key the record leaves out takes
    the column's default, so the record is the whole truth about the bead."""
    values = {key: record.get(key, default(key)) for key in BEAD_FIELDS}
    extra = {key: value for key, value in record.items() if key not in MODELED}
    status, issue_type = values["status"], values["issue_type"]
    values["status"], values["issue_type"] = stored_status(status), stored_type(issue_type)
    for key, original in (("status", status), ("issue_type", issue_type)):
        if values[key] != original:
            extra[key] = original
    values |= times(record, TIMES, extra)
    values["pinned"] = status == "pinned" or record.get("pinned") is True
    values["not_work"] = record.get("ephemeral") is True or issue_type in NON_WORK_TYPES
    values["extra"] = extra
    return values


def default(key: str) -> Any:
    column = Bead._meta.get_field(key)
    assert isinstance(column, models.Field)
    return column.get_default()


def times(record: Mapping[str, Any], keys: Iterable[str], extra: dict[str, Any]) -> dict:
    """The record's times; one Corral would write differently (an offset,
    nanoseconds) is also kept as written, in `extra`."""
    values: dict[str, datetime | None] = {}
    for key in keys:
        if record.get(key) is None:
            values[key] = None
            continue
        values[key] = moment = parse_time(record[key])
        if format_time(moment) != record[key]:
            extra[key] = record[key]
    return values


# --- Into the database -----------------------------------------------------------


@dataclass
class Imported:
    """What an import did: the beads in record order, and the IDs by outcome."""

    beads: list[Bead] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.created)} created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged"
        )


def import_records(
    records: Iterable[Mapping[str, Any] | tuple[int, Mapping[str, Any]]],
    repository: Repository | Mapping[str, Repository],
    origin: str = Bead.Origin.IMPORT,
) -> Imported:
    """Create or update a bead per record, and make its dependencies the record's.

    `records` are records, or (line number, record) pairs from read_numbered()
    so errors name lines. `repository` is the repository every record goes to
    (IDs kept), or a mapping from each ID prefix to its repository (IDs take
    the repository's prefix). `origin`: what the beads it creates say filed
    them (the demo seeds through here too). Raises ValueError, naming the
    record, when one cannot be stored; then nothing is.
    """
    batch = Batch(records, repository, origin)
    with transaction.atomic():
        # Imports, and people adding dependencies, take their turn: the cycle
        # check below sees a graph nobody changes under it.
        lock_dependency_graph()
        return batch.store()


def numbered(
    records: Iterable[Mapping[str, Any] | tuple[int, Mapping[str, Any]]],
) -> list[tuple[int | None, Mapping[str, Any]]]:
    return [entry if isinstance(entry, tuple) else (None, entry) for entry in records]


class Batch:
    """One import: records checked and turned into beads before the transaction,
    stored in a few bulk statements inside it."""

    def __init__(
        self,
        records: Iterable[Mapping[str, Any] | tuple[int, Mapping[str, Any]]],
        repository: Repository | Mapping[str, Repository],
        origin: str = Bead.Origin.IMPORT,
    ) -> None:
        self.origin = origin
        self.records = numbered(records)
        self.lines = {record["id"]: line for line, record in self.records if "id" in record}
        for _, record in self.records:
            self.guard(record, check_record, record)
        rename = not isinstance(repository, Repository)
        self.ids = {
            r["id"]: new_id(r["id"], repository) if rename else r["id"] for _, r in self.records
        }
        if len(set(self.ids.values())) < len(self.ids):
            raise ValueError("two records would get the same ID in one repository")
        self.beads = [self.guard(r, self.bead, r, repository) for _, r in self.records]
        self.differing: set[str] = set()  # the columns some stored bead gets new values of

    def where(self, record: Mapping[str, Any]) -> str:
        line = self.lines.get(record.get("id", ""))
        return f"line {line}: " if line else ""

    def guard(self, record: Mapping[str, Any], check: Any, *args: Any) -> Any:
        try:
            return check(*args)
        except ValueError as e:
            raise ValueError(f"{self.where(record)}{e}") from None

    def bead(self, record: Mapping[str, Any], repository: Any) -> Bead:
        bead = Bead(
            id=self.ids[record["id"]],
            repository=destination(record["id"], repository),
            origin=self.origin,
        )
        for key, value in bead_values(record).items():
            setattr(bead, key, value)
        bead.created_at = bead.created_at or timezone.now()
        bead.updated_at = bead.updated_at or bead.created_at
        try:
            # The IDs are checked as a batch; validate_unique would query per bead.
            # Nor the constraints, nor the repository (the caller's), each a query
            # per bead: priority's constraint has its field's validator.
            bead.full_clean(["repository"], validate_unique=False, validate_constraints=False)
        except ValidationError as e:
            raise ValueError(f"{record['id']}: {one_line(e)}") from None
        return bead

    def store(self) -> Imported:
        existing = in_bulk(Bead.objects.select_for_update(), self.ids.values())
        targets = self.known_targets()
        result = Imported()
        created: list[Bead] = []
        changed: list[Bead] = []
        was_open: list[Bead] = []  # to see which this import closes
        for (_, record), bead in zip(self.records, self.beads, strict=True):
            bead.external_dependencies = self.external(record, targets)
            old = existing.get(bead.id)
            if old is None or old.status != Bead.Status.CLOSED:
                was_open.append(old or bead)
            if old is None:
                created.append(bead)
                result.created.append(bead.id)
            elif self.merge(record, old, bead):
                changed.append(old)
                result.updated.append(bead.id)
            else:
                result.unchanged.append(bead.id)
            result.beads.append(old or bead)
        bulk_create_keeping(created, "updated_at")
        for column in sorted(self.differing) + ["updated_at"] if changed else []:
            set_column(changed, column)
        touched = DependencySync(self, targets).store() | CommentSync(self).store()
        # A bead whose dependencies alone changed was updated too.
        moved = [bead_id for bead_id in result.unchanged if bead_id in touched]
        result.unchanged = [bead_id for bead_id in result.unchanged if bead_id not in touched]
        result.updated += moved
        # The file says what its own beads are; parents it does not name close
        # once their last child has, as they would on a landing.
        closed = [bead for bead in was_open if bead.status == Bead.Status.CLOSED]
        moves.closed_after(closed, leave=self.ids.values())
        return result

    def known_targets(self) -> set[str]:
        """The IDs a dependency may point to: the records' and those already in Corral."""
        named = {
            d["depends_on_id"] for _, r in self.records for d in r.get("dependencies", [])
        } - set(self.ids)
        return set(self.ids.values()) | set(in_bulk(Bead.objects.only("pk"), named))

    def external(self, record: Mapping[str, Any], targets: set[str]) -> list[dict]:
        entries = record.get("dependencies", [])
        return [dict(d) for d in entries if self.target(d["depends_on_id"]) not in targets]

    def target(self, depends_on_id: str) -> str:
        return self.ids.get(depends_on_id, depends_on_id)

    def merge(self, record: Mapping[str, Any], old: Bead, new: Bead) -> bool:
        """Give `old` (the stored bead) the record's values; True if any changed."""
        if old.repository_id != new.repository_id:
            raise ValueError(
                f"{self.where(record)}{old.id} is a bead of another repository, "
                f"{old.repository.slug}"
            )
        columns = list(COLUMNS)
        if not record.get("created_at"):
            columns.remove("created_at")  # the record does not say: the stored one stands
        if old.status in Bead.HELD:
            # A session holds it: where it is in its life is Corral's, not the file's.
            columns = [c for c in columns if c not in HELD_COLUMNS]
        differs = [c for c in columns if getattr(old, c) != getattr(new, c)]
        self.differing.update(differs)
        for column in differs:
            setattr(old, column, getattr(new, column))
        if differs:
            given = record.get("updated_at")
            old.updated_at = parse_time(given) if given else timezone.now()
        return bool(differs)


HELD_COLUMNS = ("status", "assignee", "closed_at", "close_reason")
# What an upsert compares and writes (updated_at follows from them).
COLUMNS = (
    *BEAD_FIELDS,
    "created_at",
    "closed_at",
    "extra",
    "external_dependencies",
    "pinned",
    "not_work",
)


class DependencySync:
    """Make each imported bead's dependencies those of its record."""

    def __init__(self, batch: Batch, targets: set[str]) -> None:
        self.batch = batch
        self.wanted: dict[tuple[str, str], Dependency] = {}
        self.untimed: set[tuple[str, str]] = set()
        for _, record in batch.records:
            for entry in record.get("dependencies", []):
                if batch.target(entry["depends_on_id"]) in targets:
                    self.want(record, entry)

    def want(self, record: Mapping[str, Any], entry: Mapping[str, Any]) -> None:
        issue, target = self.batch.ids[record["id"]], self.batch.target(entry["depends_on_id"])
        where = self.batch.where(record)
        if target == issue:
            raise ValueError(f"{where}{record['id']} depends on itself")
        if (issue, target) in self.wanted:
            raise ValueError(f"{where}{record['id']} depends on {target} more than once")
        extra = {k: v for k, v in entry.items() if k not in DEPENDENCY_MODELED}
        created = times(entry, ["created_at"], extra)["created_at"]
        if created is None:
            self.untimed.add((issue, target))  # the record does not say: the stored one stands
        self.wanted[issue, target] = Dependency(
            issue_id=issue,
            depends_on_id=target,
            type=entry.get("type") or Dependency.Type.BLOCKS,
            created_at=created or timezone.now(),
            extra=extra,
        )

    def store(self) -> set[str]:
        """Delete, add and change dependencies; the IDs of the beads whose changed."""
        have = {
            (d.issue_id, d.depends_on_id): d
            for d in in_bulk_by(Dependency.objects.all(), "issue_id", self.batch.ids.values())
        }
        gone = [d.pk for key, d in have.items() if key not in self.wanted]
        new = [d for key, d in self.wanted.items() if key not in have]
        changed = []
        for key, dependency in self.wanted.items():
            old = have.get(key)
            if old and key in self.untimed:
                dependency.created_at = old.created_at
            if old and (old.type, old.created_at, old.extra) != (
                dependency.type,
                dependency.created_at,
                dependency.extra,
            ):
                old.type, old.created_at = dependency.type, dependency.created_at
                old.extra = dependency.extra
                changed.append(old)
        self.refuse_cycle()
        for chunk in chunks(gone):
            Dependency.objects.filter(pk__in=chunk).delete()
        bulk_create_keeping(new, "created_at")
        for column in ["type", "created_at", "extra"] if changed else []:
            set_column(changed, column)
        gone_from = {issue for (issue, target) in have if (issue, target) not in self.wanted}
        return gone_from | {d.issue_id for d in [*new, *changed]}

    def refuse_cycle(self) -> None:
        """Raise ValueError if the blocks edges, once stored, would make a cycle."""
        mine = set(self.batch.ids.values())  # their stored edges give way to the records'
        stored = Dependency.objects.filter(type=Dependency.Type.BLOCKS)
        pairs = [p for p in stored.values_list("issue_id", "depends_on_id") if p[0] not in mine]
        pairs += [key for key, d in self.wanted.items() if d.type == Dependency.Type.BLOCKS]
        edges: dict[str, list[str]] = {}
        for issue, target in pairs:
            edges.setdefault(issue, []).append(target)
        if cycle := find_cycle(edges):
            # The stored graph has no cycle: this one passes through a record.
            at = next(n for n, bead_id in enumerate(cycle) if bead_id in mine)
            cycle = cycle[at:] + cycle[:at]
            original = next(k for k, v in self.batch.ids.items() if v == cycle[0])
            raise ValueError(
                f"{self.batch.where({'id': original})}a cycle of blocks dependencies: "
                + " → ".join([*cycle, cycle[0]])
            )


class CommentSync:
    """Make each imported bead's comments those of its record. A stored comment
    that says the same (author, text, time, bd's other keys) is kept as it is,
    so a comment made in Corral, exported and imported back keeps its person
    or agent; the others are deleted and the record's new ones added."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.wanted = {
            batch.ids[record["id"]]: [self.comment(batch.ids[record["id"]], c) for c in entries]
            for _, record in batch.records
            for entries in [record.get("comments", [])]
        }

    def comment(self, bead_id: str, entry: Mapping[str, Any]) -> Comment:
        extra = {k: v for k, v in entry.items() if k not in COMMENT_MODELED}
        if "issue_id" in extra:  # bd's rename on import renames it here too
            extra["issue_id"] = self.batch.target(extra["issue_id"])
        if entry.get("created_at") is None:
            extra["created_at"] = None  # no time: none is exported
        created = times(entry, ["created_at"], extra)["created_at"]
        return Comment(
            bead_id=bead_id,
            author_name=entry.get("author", ""),
            text=entry["text"],
            created_at=created or timezone.now(),
            extra=extra,
        )

    def store(self) -> set[str]:
        """Delete and add comments; the IDs of the beads whose changed."""
        have: dict[str, list[Comment]] = {}
        stored = Comment.objects.select_related("person").order_by("created_at", "pk")
        for comment in in_bulk_by(stored, "bead_id", self.wanted):
            have.setdefault(comment.bead_id, []).append(comment)
        gone: list[int] = []
        new: list[Comment] = []
        for bead_id, comments in self.wanted.items():
            kept: dict[tuple[Any, ...], list[Comment]] = {}
            for old in have.get(bead_id, []):
                kept.setdefault(comment_key(old), []).append(old)
            for comment in comments:
                if kept.get(comment_key(comment)):
                    kept[comment_key(comment)].pop()
                else:
                    new.append(comment)
            gone += [old.pk for olds in kept.values() for old in olds]
        for chunk in chunks(gone):
            Comment.objects.filter(pk__in=chunk).delete()
        Comment.objects.bulk_create(new, batch_size=500)
        deleted = set(gone)
        lost = {b for b, olds in have.items() if any(old.pk in deleted for old in olds)}
        return lost | {comment.bead_id for comment in new}


def comment_key(comment: Comment) -> tuple[Any, ...]:
    """What a comment says, as bd would see it."""
    untimed = comment.extra.get("created_at", "") is None
    extra = json.dumps(comment.extra, sort_keys=True)
    return (comment.bd_author(), comment.text, None if untimed else comment.created_at, extra)


def bulk_create_keeping(objects: list[Any], stamp: str) -> None:
    """Insert `objects` keeping their `stamp` time: bulk_create sets an auto_now
    field to now (on the objects too); one UPDATE per chunk puts theirs back."""
    if not objects:
        return
    times = [getattr(o, stamp) for o in objects]
    type(objects[0]).objects.bulk_create(objects, batch_size=500)
    for o, moment in zip(objects, times, strict=True):
        setattr(o, stamp, moment)
    set_column(objects, stamp)


def set_column(objects: list[Any], name: str) -> None:
    """UPDATE … FROM (VALUES …): each row's `name` to its object's value. What
    bulk_update does, without building a CASE expression per row in Python."""
    model = type(objects[0])
    column, pk = model._meta.get_field(name), model._meta.pk
    assert isinstance(column, models.Field) and pk is not None
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    row = "(%s, %s)"
    if connection.vendor == "postgresql":  # VALUES' parameters need their types there
        row = f"(CAST(%s AS {pk.db_type(connection)}), CAST(%s AS {column.db_type(connection)}))"
    for chunk in chunks(objects, 400):
        params: list[Any] = []
        for o in chunk:
            params += [o.pk, column.get_db_prep_save(getattr(o, column.attname), connection)]
        sql = (
            f"UPDATE {table} SET {quote(column.column)} = v.column2 "
            f"FROM (VALUES {', '.join([row] * len(chunk))}) AS v "
            f"WHERE {table}.{quote(pk.column)} = v.column1"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str]:
    """The beads of one cycle in the graph, in edge order, or []. Iterative, so
    a long chain of 10,000 beads does not hit Python's recursion limit."""
    done: set[str] = set()
    for start in edges:
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        pending = [iter(edges.get(start, ()))]
        while pending:
            following = next(pending[-1], None)
            if following is None:
                finished = path.pop()
                done.add(finished)
                on_path.discard(finished)
                pending.pop()
                continue
            if following in on_path:
                return path[path.index(following) :]
            if following not in done:
                path.append(following)
                on_path.add(following)
                pending.append(iter(edges.get(following, ())))
    return []


def chunks(values: Iterable[Any], size: int = 900) -> Iterator[list[Any]]:
    """Lists of at most `size`: SQLite caps the parameters of one statement."""
    values = list(values)
    for start in range(0, len(values), size):
        yield values[start : start + size]


def in_bulk(beads: Any, ids: Iterable[str]) -> dict[str, Bead]:
    return {b.pk: b for chunk in chunks(ids) for b in beads.filter(pk__in=chunk)}


def in_bulk_by(queryset: Any, column: str, values: Iterable[Any]) -> list[Any]:
    return [row for chunk in chunks(values) for row in queryset.filter(**{f"{column}__in": chunk})]


def destination(bead_id: str, repository: Repository | Mapping[str, Repository]) -> Repository:
    if isinstance(repository, Repository):
        return repository
    prefix, _ = split_id(bead_id)
    if prefix not in repository:
        raise ValueError(f"{bead_id}: no repository is given for the prefix {prefix!r}")
    return repository[prefix]


def new_id(bead_id: str, repository: Repository | Mapping[str, Repository]) -> str:
    _, rest = split_id(bead_id)
    return f"{destination(bead_id, repository).bead_prefix}-{rest}"


def one_line(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(
            f"{field}: {message}"
            for field, messages in error.message_dict.items()
            for message in messages
        )
    return "; ".join(error.messages)


# --- Out of the database ---------------------------------------------------------


def export_records(beads: Iterable[Bead]) -> Iterator[dict[str, Any]]:
    """A record per bead, keys in bd's order, then Corral's own, then what the
    import kept. Empty optional fields are left out, as bd leaves them out
    (`omitempty`)."""
    for bead in beads:
        yield export_record(bead)


def export_record(bead: Bead) -> dict[str, Any]:
    record: dict[str, Any] = {"id": bead.id, "title": bead.title, "description": bead.description}
    put(record, "design", bead.design)
    put(record, "acceptance_criteria", bead.acceptance_criteria)
    put(record, "notes", bead.notes)
    record["status"] = bead.status
    record["priority"] = bead.priority
    record["issue_type"] = bead.issue_type
    put(record, "assignee", bead.assignee)
    record["created_at"] = format_time(bead.created_at)
    record["updated_at"] = format_time(bead.updated_at)
    if bead.closed_at is not None:
        record["closed_at"] = format_time(bead.closed_at)
    put(record, "close_reason", bead.close_reason)
    put(record, "labels", list(bead.labels))
    # sorted() rather than order_by(), so a prefetch_related("dependencies") is used.
    dependencies = sorted(bead.dependencies.all(), key=lambda d: d.pk)
    entries = [export_dependency(d) for d in dependencies] + list(bead.external_dependencies)
    put(record, "dependencies", entries)
    put(record, "comments", [export_comment(c) for c in bead.comments.all()])
    if "comments" not in record and "comments" in bead.extra:
        record["comments"] = bead.extra["comments"]  # kept by an older import, not bd's shape
    put(record, "scope", list(bead.scope))
    if bead.time_limit_s is not None:
        record["time_limit_s"] = bead.time_limit_s
    put(record, "attempts", bead.attempts)
    put(record, "last_failure", bead.last_failure)
    put(record, "commit_sha", bead.commit_sha)
    give_back(record, bead.extra)
    return record


def export_dependency(dependency: Dependency) -> dict[str, Any]:
    record = {
        "issue_id": dependency.issue_id,
        "depends_on_id": dependency.depends_on_id,
        "type": dependency.type,
        "created_at": format_time(dependency.created_at),
    }
    give_back(record, dependency.extra)
    return record


def export_comment(comment: Comment) -> dict[str, Any]:
    """In bd's key order: id, issue_id (kept from the import), author, text, created_at."""
    untimed = comment.extra.get("created_at", "") is None  # the record had no time
    extra = {k: v for k, v in comment.extra.items() if not (untimed and k == "created_at")}
    record = {k: extra[k] for k in ("id", "issue_id") if k in extra}
    put(record, "author", comment.bd_author())
    record["text"] = comment.text
    if not untimed:
        record["created_at"] = format_time(comment.created_at)
    give_back(record, extra)
    return record


def give_back(record: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Put back what an import kept: unmodeled keys always, the original of a
    modeled value only while the stored value is still what it was mapped to."""
    for key, original in extra.items():
        if key not in record and key in MODELED | DEPENDENCY_MODELED:
            continue  # e.g. an original closed_at of a bead reopened since
        if key in record and not still_means(key, original, record[key]):
            continue
        record[key] = original


def still_means(key: str, original: Any, current: Any) -> bool:
    if key == "status":
        return stored_status(original) == current
    if key == "issue_type":
        return stored_type(original) == current
    if key in TIMES:
        return parse_time(original) == parse_time(current)
    return True  # a key Corral does not model: Corral never changes it


def put(record: dict[str, Any], key: str, value: Any) -> None:
    if value:
        record[key] = value
