import copy
import io

import pytest

from beads import hook, jsonl
from beads.models import Bead, Dependency
from corral.demo import DEMO_DIR
from workspace.models import Repository, Workspace

DEMO_BEADS = DEMO_DIR / "beads.jsonl"

# Every field the format carries today, bd's and Corral's own.
FULL = {
    "id": "rt-a1b2",
    "title": "Every field",
    "description": "What and why.",
    "design": "How.",
    "acceptance_criteria": "- it works",
    "notes": "Seen on Tuesday.",
    "status": "closed",
    "priority": 0,
    "issue_type": "bug",
    "assignee": "ada",
    "created_at": "2025-05-01T08:00:00.5Z",
    "updated_at": "2025-05-03T09:30:00Z",
    "closed_at": "2025-05-03T09:30:00Z",
    "close_reason": "committed",
    "labels": ["api", "bug"],
    "dependencies": [
        {
            "issue_id": "rt-a1b2",
            "depends_on_id": "rt-c3d4",
            "type": "blocks",
            "created_at": "2025-05-01T08:00:01Z",
        },
    ],
    "scope": ["service/**", "README.md"],
    "time_limit_s": 900,
    "attempts": 2,
    "last_failure": "the check failed",
    "commit_sha": "0123456789abcdef0123456789abcdef01234567",
}
SMALL = {
    "id": "rt-c3d4",
    "title": "Only what bd always writes",
    "description": "",
    "status": "open",
    "priority": 2,
    "issue_type": "task",
    "created_at": "2025-04-30T00:00:00Z",
    "updated_at": "2025-04-30T00:00:00Z",
}


def make_repository(name, prefix):
    return Repository.objects.create(
        workspace=Workspace.default(), name=name, slug=name, bead_prefix=prefix
    )


def exported(beads):
    """The beads' records as stored: read back from the database, not the objects."""
    fresh = Bead.objects.filter(pk__in=[b.pk for b in beads]).prefetch_related("dependencies")
    by_id = {bead.pk: bead for bead in fresh}
    return list(jsonl.export_records(by_id[b.pk] for b in beads))


def without(records, *keys, dependency_keys=()):
    records = copy.deepcopy(records)
    for record in records:
        for key in keys:
            record.pop(key, None)
        for dependency in record.get("dependencies", []):
            for key in dependency_keys:
                dependency.pop(key, None)
    return records


# --- Round trips ---------------------------------------------------------------------


@pytest.mark.django_db
def test_every_field_round_trips():
    repo = make_repository("rt", "rt")
    beads = jsonl.import_records([FULL, SMALL], repo).beads
    assert exported(beads) == [FULL, SMALL]
    buf = io.StringIO()
    jsonl.write(exported(beads), buf)
    assert jsonl.read(io.StringIO(buf.getvalue())) == [FULL, SMALL]


@pytest.mark.django_db
def test_the_demo_beads_import_and_export_as_they_are_in_the_file():
    records = jsonl.read(DEMO_BEADS)
    repos = {
        prefix: make_repository(f"demo-{prefix}", prefix) for prefix in ("api", "web", "infra")
    }
    beads = jsonl.import_records(records, repos).beads
    assert len(beads) == len(records) == Bead.objects.count()
    assert Dependency.objects.count() == sum(len(r.get("dependencies", [])) for r in records)
    assert {b.repository.bead_prefix for b in beads} == set(repos)
    # demo_commit is the demo's own key (corral/demo.py turns it into commit_sha),
    # kept as it came like any key Corral does not model.
    assert exported(beads) == records


def test_read_then_write_gives_the_file_back():
    text = DEMO_BEADS.read_text(encoding="utf-8")
    buf = io.StringIO()
    jsonl.write(jsonl.read(DEMO_BEADS), buf)
    assert buf.getvalue() == text


def test_read_and_write_keep_keys_they_do_not_know():
    record = dict(SMALL, external_ref="gh-9", compaction_level=1)
    buf = io.StringIO()
    jsonl.write([record], buf)
    assert jsonl.read(io.StringIO(buf.getvalue())) == [record]


# --- IDs and dependencies ------------------------------------------------------------


@pytest.mark.django_db
def test_ids_take_the_prefix_of_the_repository_they_go_to():
    make_repository("mine", "rt")  # a user's repository has the file's prefix already
    other = make_repository("imported", "rt2")
    beads = jsonl.import_records([FULL, SMALL], {"rt": other}).beads
    assert [b.id for b in beads] == ["rt2-a1b2", "rt2-c3d4"]
    dependency = Dependency.objects.get()
    assert (dependency.issue_id, dependency.depends_on_id) == ("rt2-a1b2", "rt2-c3d4")
    assert exported(beads)[0]["dependencies"][0]["issue_id"] == "rt2-a1b2"


@pytest.mark.django_db
def test_a_dependency_may_name_a_bead_already_in_corral():
    repo = make_repository("rt", "rt")
    existing = Bead.objects.create(repository=repo, title="already here")
    record = dict(SMALL, dependencies=[{"depends_on_id": existing.id, "type": "related"}])
    (bead,) = jsonl.import_records([record], repo).beads
    assert bead.dependencies.get().depends_on == existing


@pytest.mark.django_db
def test_a_dependency_on_a_bead_corral_does_not_have_is_kept_and_does_not_block():
    repo = make_repository("rt", "rt")
    outside = {"issue_id": "rt-c3d4", "depends_on_id": "external:other:cap", "type": "blocks"}
    record = dict(SMALL, dependencies=[outside])
    (bead,) = jsonl.import_records([record], repo).beads
    assert Dependency.objects.count() == 0
    assert bead.external_dependencies == [outside]
    assert [b.id for b in hook.ready()] == ["rt-c3d4"]
    assert exported([bead]) == [record]


@pytest.mark.django_db
def test_a_blocks_cycle_is_refused_with_its_line():
    repo = make_repository("rt", "rt")
    back = {"depends_on_id": "rt-a1b2", "type": "blocks"}
    lines = [(3, FULL), (7, dict(SMALL, dependencies=[back]))]
    with pytest.raises(ValueError, match=r"^line (3|7): a cycle of blocks dependencies: rt-"):
        jsonl.import_records(lines, repo)
    assert Bead.objects.count() == 0


@pytest.mark.django_db
def test_a_cycle_through_a_bead_already_stored_is_refused():
    repo = make_repository("rt", "rt")
    jsonl.import_records([FULL, SMALL], repo)  # rt-a1b2 blocks on rt-c3d4
    back = {"depends_on_id": "rt-a1b2", "type": "blocks"}
    with pytest.raises(ValueError, match="rt-c3d4 → rt-a1b2 → rt-c3d4"):
        jsonl.import_records([dict(SMALL, dependencies=[back])], repo)
    assert Dependency.objects.get().issue_id == "rt-a1b2"


@pytest.mark.django_db
def test_a_value_corral_refuses_names_the_line_the_record_and_the_field():
    repo = make_repository("rt", "rt")
    with pytest.raises(ValueError, match=r"^line 2: rt-c3d4: priority: "):
        jsonl.import_records([(1, FULL), (2, dict(SMALL, priority=7))], repo)
    assert Bead.objects.count() == 0


@pytest.mark.django_db
def test_statuses_a_session_holds_here_come_in_deferred_and_go_out_as_they_came():
    repo = make_repository("rt", "rt")
    held = [dict(SMALL, id=f"rt-{s}", status=s) for s in ("in_progress", "review", "hooked")]
    beads = jsonl.import_records(held, repo).beads
    assert {b.status for b in Bead.objects.all()} == {"deferred"}
    assert exported(beads) == held


@pytest.mark.django_db
def test_records_without_times_import_twice_as_a_no_op():
    repo = make_repository("rt", "rt")
    bare = [{"id": "rt-1", "title": "a"}, {"id": "rt-2", "title": "b"}]
    bare[1]["dependencies"] = [{"depends_on_id": "rt-1", "type": "blocks"}]
    jsonl.import_records(bare, repo)
    before = list(Bead.objects.values_list("pk", "created_at", "updated_at").order_by("pk"))
    again = jsonl.import_records(bare, repo)
    assert (again.created, again.updated, again.unchanged) == ([], [], ["rt-1", "rt-2"])
    assert list(Bead.objects.values_list("pk", "created_at", "updated_at").order_by("pk")) == before
    bare[1]["dependencies"][0]["type"] = "related"  # only a dependency changes
    changed = jsonl.import_records(bare, repo)
    assert (changed.updated, changed.unchanged) == (["rt-2"], ["rt-1"])
    assert Dependency.objects.get().type == "related"


@pytest.mark.django_db
def test_a_prefix_without_a_repository_is_refused():
    repos = {"rt": make_repository("rt", "rt")}
    with pytest.raises(ValueError, match="no repository is given for the prefix 'zz'"):
        jsonl.import_records([dict(SMALL, id="zz-c3d4")], repos)


# --- Bad input -------------------------------------------------------------------------


def test_bad_json_names_its_line():
    lines = ['{"id": "rt-1", "title": "fine"}\n', "\n", '{"id": "rt-2", "title": \n']
    with pytest.raises(ValueError, match=r"^line 3: not valid JSON"):
        jsonl.read(lines)


def test_a_file_names_itself_and_the_line(tmp_path):
    path = tmp_path / "issues.jsonl"
    path.write_text('{"id": "rt-1", "title": "fine"}\nnot json\n')
    with pytest.raises(ValueError, match=rf"^{path}, line 2: not valid JSON"):
        jsonl.read(path)


@pytest.mark.parametrize(
    "line, message",
    [
        ("[1, 2]", "expected a JSON object"),
        ('{"title": "no id"}', "no id"),
        ('{"id": "nohyphen", "title": "t"}', "is not a bead ID"),
        ('{"id": "rt-1"}', "rt-1 has no title"),
        ('{"id": "rt-1", "title": "t", "priority": "high"}', "priority must be a whole number"),
        ('{"id": "rt-1", "title": "t", "labels": "api"}', "labels must be a list of text"),
        ('{"id": "rt-1", "title": "t", "created_at": "2025-05-01T08:00:00"}', "RFC 3339"),
        ('{"id": "rt-1", "title": "t", "dependencies": {}}', "dependencies must be a list"),
        (
            '{"id": "rt-1", "title": "t", "dependencies": [{"issue_id": "rt-9", '
            '"depends_on_id": "rt-2"}]}',
            "a dependency of rt-9 is listed here",
        ),
        ('{"id": "rt-1", "title": "t", "dependencies": [{"type": "blocks"}]}', "no depends_on_id"),
    ],
)
def test_a_record_of_the_wrong_shape_names_its_line(line, message):
    with pytest.raises(ValueError, match=r"^line 2: .*" + message):
        jsonl.read(['{"id": "rt-0", "title": "fine"}\n', line + "\n"])


def test_a_repeated_id_names_both_lines():
    lines = ['{"id": "rt-1", "title": "a"}\n', '{"id": "rt-1", "title": "b"}\n']
    with pytest.raises(ValueError, match="^line 2: rt-1 is already on line 1"):
        jsonl.read(lines)


def test_times_as_go_writes_them():
    moment = jsonl.parse_time("2025-10-14T12:34:56.123456789-07:00")
    assert jsonl.format_time(moment) == "2025-10-14T19:34:56.123456Z"
    assert jsonl.format_time(jsonl.parse_time("2025-10-14T19:34:56+00:00")) == (
        "2025-10-14T19:34:56Z"
    )
