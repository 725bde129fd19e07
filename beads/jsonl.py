"""The beads (bd) JSONL format, both ways: one issue a line, as bd keeps
`.beads/issues.jsonl`.

A record has bd's field names: id, title, description, design,
acceptance_criteria, notes, status, priority, issue_type, assignee, labels,
created_at, updated_at, closed_at, close_reason and dependencies (each
{issue_id, depends_on_id, type, created_at, created_by}). Corral's own bead
fields that bd does not have travel as extra top-level keys of the same names:
scope, time_limit_s, attempts, last_failure, commit_sha.

read() and write() keep every key they are given. import_records() stores what
Corral has a column for; other keys, and a dependency's created_by, are not
stored (the models have no place for them yet), so export_records() cannot
give them back.

IDs: a record's ID `<prefix>-<hash>` is stored as `<repository's prefix>-<hash>`,
so every bead's ID starts with its repository's prefix (bd's rename on import).
A dependency on a bead outside the records must name a bead already in Corral;
any other target is refused with a ValueError, not kept.
"""

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from beads.models import Bead, Dependency
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
    if isinstance(source, str | os.PathLike):
        with open(source, encoding="utf-8") as lines:
            return read_lines(lines, where=f"{source}, ")
    return read_lines(source)


def read_lines(lines: Iterable[str], where: str = "") -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}  # id: line number
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}line {number}: not valid JSON: {e.msg}") from None
        try:
            check_record(record)
        except ValueError as e:
            raise ValueError(f"{where}line {number}: {e}") from None
        if record["id"] in seen:
            raise ValueError(
                f"{where}line {number}: {record['id']} is already on line {seen[record['id']]}"
            )
        seen[record["id"]] = number
        records.append(record)
    return records


def write(records: Iterable[Mapping[str, Any]], stream: IO[str]) -> None:
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
    split_id(record["id"])
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


def check_dependency(issue_id: str, dependency: Any) -> None:
    if not isinstance(dependency, dict):
        raise ValueError(f"{issue_id}: each dependency must be a JSON object")
    if dependency.get("issue_id", issue_id) != issue_id:
        # bd lists a dependency on the issue that depends, never elsewhere.
        raise ValueError(f"{issue_id}: a dependency of {dependency['issue_id']} is listed here")
    if not isinstance(dependency.get("depends_on_id"), str) or not dependency["depends_on_id"]:
        raise ValueError(f"{issue_id}: a dependency has no depends_on_id")
    if not isinstance(dependency.get("type", ""), str):
        raise ValueError(f"{issue_id}: a dependency's type must be text")
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


# --- Into the database -----------------------------------------------------------


def import_records(
    records: Iterable[Mapping[str, Any]],
    repository: Repository | Mapping[str, Repository],
) -> list[Bead]:
    """Create a bead per record, then their dependencies, all in one transaction.

    `repository` is the repository every record goes to, or, for records of
    several repositories, a mapping from each ID prefix in the records to its
    repository. Raises ValueError, naming the record, when one cannot be
    stored; then nothing is.
    """
    records = list(records)
    for record in records:
        check_record(record)
    new_ids = {record["id"]: new_id(record["id"], repository) for record in records}
    with transaction.atomic():
        refuse_taken(new_ids)
        beads = [create_bead(record, new_ids[record["id"]], repository) for record in records]
        for record in records:
            create_dependencies(record, new_ids)
    return beads


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


def refuse_taken(new_ids: Mapping[str, str]) -> None:
    taken = set(Bead.objects.filter(pk__in=new_ids.values()).values_list("pk", flat=True))
    if taken:
        raise ValueError(f"these beads are already in Corral: {', '.join(sorted(taken))}")
    if len(set(new_ids.values())) < len(new_ids):
        raise ValueError("two records would get the same ID in one repository")


def create_bead(
    record: Mapping[str, Any], bead_id: str, repository: Repository | Mapping[str, Repository]
) -> Bead:
    bead = Bead(id=bead_id, repository=destination(record["id"], repository))
    for key in BEAD_FIELDS:
        if key in record:
            setattr(bead, key, record[key])
    if record.get("created_at"):
        bead.created_at = parse_time(record["created_at"])
    if record.get("closed_at"):
        bead.closed_at = parse_time(record["closed_at"])
    try:
        # The IDs were checked as a batch; validate_unique would query per bead.
        bead.full_clean(validate_unique=False)
        bead.save(force_insert=True)  # with an ID set, a plain save could update another bead
    except ValidationError as e:
        raise ValueError(f"{record['id']}: {one_line(e)}") from None
    if record.get("updated_at"):
        # updated_at is auto_now: save() sets it to now, an update() keeps the record's.
        bead.updated_at = parse_time(record["updated_at"])
        Bead.objects.filter(pk=bead.pk).update(updated_at=bead.updated_at)
    return bead


def create_dependencies(record: Mapping[str, Any], new_ids: Mapping[str, str]) -> None:
    issue_id = new_ids[record["id"]]
    for entry in record.get("dependencies", []):
        # A target among the records is renamed with them; any other must be in Corral.
        target = new_ids.get(entry["depends_on_id"], entry["depends_on_id"])
        if target_id_unknown(entry["depends_on_id"], new_ids):
            raise ValueError(
                f"{record['id']} depends on {entry['depends_on_id']}, which is neither "
                "among the records nor in Corral"
            )
        if target == issue_id:
            raise ValueError(f"{record['id']} depends on itself")
        # bd's other dependency types are kept as they came (DESIGN: Dependency).
        dependency = Dependency(
            issue_id=issue_id, depends_on_id=target, type=entry.get("type") or "blocks"
        )
        try:
            dependency.save()  # refuses a blocks cycle
        except ValidationError as e:
            raise ValueError(f"{record['id']}: {one_line(e)}") from None
        except IntegrityError:
            raise ValueError(
                f"{record['id']} depends on {entry['depends_on_id']} more than once"
            ) from None
        if entry.get("created_at"):
            # created_at is auto_now_add: only an update() can give it the record's time.
            Dependency.objects.filter(pk=dependency.pk).update(
                created_at=parse_time(entry["created_at"])
            )


def target_id_unknown(target_id: str, new_ids: Mapping[str, str]) -> bool:
    return target_id not in new_ids and not Bead.objects.filter(pk=target_id).exists()


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
    """A record per bead, keys in bd's order, then Corral's own. Empty optional
    fields are left out, as bd leaves them out (`omitempty`)."""
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
    put(record, "dependencies", [export_dependency(d) for d in dependencies])
    put(record, "scope", list(bead.scope))
    if bead.time_limit_s is not None:
        record["time_limit_s"] = bead.time_limit_s
    put(record, "attempts", bead.attempts)
    put(record, "last_failure", bead.last_failure)
    put(record, "commit_sha", bead.commit_sha)
    return record


def export_dependency(dependency: Dependency) -> dict[str, Any]:
    # No created_by: Corral does not record who added a dependency.
    return {
        "issue_id": dependency.issue_id,
        "depends_on_id": dependency.depends_on_id,
        "type": dependency.type,
        "created_at": format_time(dependency.created_at),
    }


def put(record: dict[str, Any], key: str, value: Any) -> None:
    if value:
        record[key] = value
