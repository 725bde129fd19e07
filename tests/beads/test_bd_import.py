"""bd's own exports import losslessly: a messy `.beads/issues.jsonl` in bd's
shape (tests/beads/data/bd_messy.jsonl: several prefixes, dotted child IDs,
bd's extra statuses, types and dependency types, external dependencies, keys
Corral does not model) round-trips, re-imports as a no-op, and is ready by
bd's rules."""

import io
import random
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from agents.models import Agent, Session
from agents.moves import lifecycle
from beads import hook, jsonl
from beads.models import Bead, Comment, Dependency
from tests.races import race
from workspace.models import Repository, Workspace

MESSY = Path(__file__).parent / "data" / "bd_messy.jsonl"
ACTIVE_BLOCKING = ("blocks", "conditional-blocks")
NON_WORK = {"merge-request", "gate", "molecule", "message", "agent", "role", "rig"}


@pytest.fixture
def bd_repo(db):
    return Repository.objects.create(
        workspace=Workspace.default(), name="bd", slug="bd", bead_prefix="bd", max_agents=100
    )


def export(repo):
    beads = Bead.objects.filter(repository=repo).prefetch_related(
        "dependencies", "comments__person"
    )
    return {r["id"]: r for r in jsonl.export_records(beads)}


def snapshot():
    beads = sorted(Bead.objects.values_list(), key=repr)
    dependencies = sorted(Dependency.objects.values_list(), key=repr)
    comments = sorted(Comment.objects.values_list(), key=repr)
    return beads, dependencies, comments


# --- Round trip ----------------------------------------------------------------------


def test_the_messy_export_round_trips_every_key(bd_repo):
    records = jsonl.read(MESSY)
    result = jsonl.import_records(jsonl.read_numbered(MESSY), bd_repo)
    assert len(result.created) == len(records) == 26
    assert export(bd_repo) == {r["id"]: r for r in records}


def test_statuses_and_types_corral_lacks_are_mapped_and_the_original_kept(bd_repo):
    jsonl.import_records(jsonl.read(MESSY), bd_repo)
    stored = {b.id: b for b in Bead.objects.all()}
    # Held by agents outside Corral: deferred, not Corral's in_progress.
    assert (stored["gt-mol-8o6"].status, stored["gt-mol-8o6"].extra["status"]) == (
        "deferred",
        "hooked",
    )
    assert (stored["bd-k9z"].status, stored["bd-k9z"].extra["status"]) == (
        "deferred",
        "in_progress",
    )
    assert (stored["hq-hk1"].status, stored["hq-hk1"].pinned) == ("open", True)
    assert stored["bd-old"].status == "closed" and stored["bd-r5"].status == "deferred"
    assert (stored["hq-m8"].issue_type, stored["hq-m8"].extra["issue_type"]) == ("task", "message")
    assert stored["hq-m8"].not_work and stored["bd-w6"].not_work and not stored["gt-cv1"].not_work
    kinds = set(Dependency.objects.values_list("type", flat=True))
    assert {"conditional-blocks", "waits-for", "tracks", "replies-to", "duplicates"} <= kinds
    assert stored["bd-f7"].external_dependencies[0]["depends_on_id"] == "nowhere-x1"


def test_an_original_is_written_back_only_while_it_still_holds(bd_repo):
    jsonl.import_records(jsonl.read(MESSY), bd_repo)
    Bead.objects.get(pk="bd-r5").reopen()  # needs-triage was stored as deferred
    record = export(bd_repo)["bd-r5"]
    assert record["status"] == "open" and record["updated_at"].endswith("Z")


def test_the_cli_imports_and_exports_through_files_and_standard_streams(
    bd_repo, tmp_path, monkeypatch
):
    err = io.StringIO()
    call_command("beads", "import", str(MESSY), "--repo", "bd", stderr=err)
    assert err.getvalue().strip() == "Imported into bd: 26 created, 0 updated, 0 unchanged."
    out = tmp_path / "out.jsonl"
    call_command("beads", "export", "--repo", "bd", "--output", str(out))
    assert {r["id"]: r for r in jsonl.read(out)} == {r["id"]: r for r in jsonl.read(MESSY)}
    monkeypatch.setattr("sys.stdin", io.StringIO(out.read_text()))
    call_command("beads", "import", "-", "--repo", "bd", stderr=err)
    assert "0 created, 0 updated, 26 unchanged" in err.getvalue()
    stdout = io.StringIO()
    call_command("beads", "export", "--repo", "bd", stdout=stdout)
    assert stdout.getvalue() == out.read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["import", "nowhere.jsonl", "--repo", "bd"], "cannot read nowhere.jsonl"),
        (["import", str(MESSY), "--repo", "nope"], "no repository 'nope'"),
        (["export", "--repo", "bd", "--output", "/nonexistent/x.jsonl"], "cannot write"),
    ],
)
def test_the_cli_refuses_with_one_line(bd_repo, args, message):
    with pytest.raises(CommandError, match=message) as caught:
        call_command("beads", *args)
    assert "\n" not in str(caught.value)


def test_a_file_that_is_not_utf8_is_refused_with_one_line(bd_repo, tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"id":"bd-1","title":"caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(CommandError, match="^nothing imported: .*utf-8") as caught:
        call_command("beads", "import", str(bad), "--repo", "bd")
    assert "\n" not in str(caught.value) and Bead.objects.count() == 0


# --- Upsert ------------------------------------------------------------------------------


def test_importing_the_same_file_twice_changes_nothing(bd_repo):
    jsonl.import_records(jsonl.read(MESSY), bd_repo)
    before = snapshot()
    again = jsonl.import_records(jsonl.read(MESSY), bd_repo)
    assert (again.created, again.updated, len(again.unchanged)) == ([], [], 26)
    assert snapshot() == before


def test_a_changed_record_updates_its_bead_and_its_dependencies(bd_repo):
    jsonl.import_records(jsonl.read(MESSY), bd_repo)
    records = jsonl.read(MESSY)
    f7 = next(r for r in records if r["id"] == "bd-f7")
    f7["title"] = "Ready feature, renamed"
    f7["updated_at"] = "2026-02-02T02:02:02Z"
    f7["dependencies"] = f7["dependencies"][:1]  # bd-au0.1 blocks it, nothing else
    result = jsonl.import_records(records, bd_repo)
    assert result.updated == ["bd-f7"]
    bead = Bead.objects.get(pk="bd-f7")
    assert bead.title == "Ready feature, renamed" and bead.external_dependencies == []
    assert jsonl.format_time(bead.updated_at) == "2026-02-02T02:02:02Z"
    assert list(bead.dependencies.values_list("depends_on_id", flat=True)) == ["bd-au0.1"]
    assert export(bd_repo)["bd-f7"] == f7


def test_bds_comments_become_comments_and_are_exported_from_them(bd_repo):
    jsonl.import_records(jsonl.read(MESSY), bd_repo)
    (comment,) = Comment.objects.all()
    assert (comment.bead_id, comment.author, comment.text) == (
        "bd-au0.1",
        "ada",
        "Looks right.\nShip it.",
    )
    assert jsonl.format_time(comment.created_at) == "2026-01-08T18:31:02.5Z"  # 00:01:02.5+05:30
    assert comment.extra == {
        "id": 7,
        "issue_id": "bd-au0.1",
        "created_at": "2026-01-09T00:01:02.5+05:30",
    }
    assert "comments" not in Bead.objects.get(pk="bd-au0.1").extra  # rows, not kept text


def test_a_comment_made_in_corral_goes_to_bd_and_comes_back_the_same_row(bd_repo, user):
    jsonl.import_records(jsonl.read(MESSY), bd_repo)
    bead = Bead.objects.get(pk="bd-f7")
    mine = Comment.add(bead, "Needs a test.", person=user)
    Comment.add(bead, "On it.", agent="agent-1")
    exported = export(bd_repo)
    assert [(c["author"], c["text"]) for c in exported["bd-f7"]["comments"]] == [
        (user.get_username(), "Needs a test."),
        ("agent-1", "On it."),
    ]
    before = snapshot()
    again = jsonl.import_records(list(exported.values()), bd_repo)
    assert (again.created, again.updated) == ([], []) and snapshot() == before
    assert Comment.objects.get(pk=mine.pk).person == user  # kept, not re-made

    record = exported["bd-f7"]
    record["comments"] = [record["comments"][1], {"author": "bob", "text": "Done?"}]
    result = jsonl.import_records([record], bd_repo)
    assert result.updated == ["bd-f7"]
    assert [c.author for c in bead.comments.all()] == ["agent agent-1", "bob"]
    assert export(bd_repo)["bd-f7"]["comments"][1] == {"author": "bob", "text": "Done?"}
    assert not Comment.objects.filter(pk=mine.pk).exists()


def test_a_bad_comment_is_refused_naming_its_line(bd_repo):
    lines = MESSY.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"author":"ada"', '"author":7')
    with pytest.raises(ValueError, match=r"^line 2: bd-au0.1: a comment's author must be text"):
        jsonl.read(lines)
    assert not Comment.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_comments_an_older_import_kept_in_extra_become_rows(bd_repo):
    executor = MigrationExecutor(connection)
    graph = executor.loader.graph  # by name: the lead renumbers migrations at merge
    (node,) = [n for n in graph.nodes if n[0] == "beads" and n[1].endswith("_bd_comments")]
    (parent,) = graph.node_map[node].parents
    before = [parent.key]
    executor.migrate(before)  # also unapplies every later migration that depends on it
    OldBead = executor.loader.project_state(before).apps.get_model("beads", "Bead")
    ada = {"id": 7, "author": "ada", "text": "Ship it.", "created_at": "2026-01-09T00:01:02+05:30"}
    odd = [{"text": 5}]  # not bd's shape: left as it came
    for bead_id, comments in (("bd-a1", [ada]), ("bd-a2", odd)):
        extra = {"comments": comments, "owner": "x"}
        OldBead.objects.create(id=bead_id, repository_id=bd_repo.pk, title="t", extra=extra)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # all of them again, for the next tests

    (comment,) = Comment.objects.all()
    assert (comment.bead_id, comment.author, comment.text) == ("bd-a1", "ada", "Ship it.")
    assert Bead.objects.get(pk="bd-a1").extra == {"owner": "x"}
    records = export(bd_repo)
    assert records["bd-a1"]["comments"] == [ada] and records["bd-a2"]["comments"] == odd


def test_a_bead_a_session_holds_keeps_its_status_and_assignee(bd_repo):
    jsonl.import_records(jsonl.read(MESSY), bd_repo)
    bead = Bead.objects.get(pk="bd-f7")
    assert bead.start("agent-1")
    result = jsonl.import_records(jsonl.read(MESSY), bd_repo)
    bead.refresh_from_db()
    assert (bead.status, bead.assignee) == ("in_progress", "agent-1")
    assert "bd-f7" in result.unchanged


def test_a_bad_line_is_named_and_nothing_is_written(bd_repo, tmp_path):
    jsonl.import_records(jsonl.read(MESSY), bd_repo)
    before = snapshot()
    lines = MESSY.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace("Sync engine rewrite", "Renamed")  # valid, would update
    lines[16] = lines[16].replace('"priority":2', '"priority":9')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(lines))
    with pytest.raises(CommandError, match=r"^nothing imported: line 17: gt-mol-8pf: priority"):
        call_command("beads", "import", str(bad), "--repo", "bd")
    assert snapshot() == before


def test_a_bead_of_another_repository_is_not_taken_over(bd_repo):
    other = Repository.objects.create(
        workspace=Workspace.default(), name="o", slug="o", bead_prefix="o"
    )
    jsonl.import_records(jsonl.read(MESSY), other)
    with pytest.raises(ValueError, match="bd-au0 is a bead of another repository, o"):
        jsonl.import_records(jsonl.read(MESSY), bd_repo)


@pytest.mark.django_db(transaction=True)
def test_two_imports_of_one_file_at_once_store_it_once():
    repo = Repository.objects.create(
        workspace=Workspace.default(), name="bd", slug="bd", bead_prefix="bd", max_agents=100
    )

    def run():
        return jsonl.import_records(jsonl.read(MESSY), Repository.objects.get(pk=repo.pk))

    results = race(run, [(), ()])
    assert sorted(len(r.created) for r in results) == [0, 26]
    assert Bead.objects.count() == 26
    ids = {r["id"] for r in jsonl.read(MESSY)}
    internal = [d for r in jsonl.read(MESSY) for d in r.get("dependencies", [])]
    assert Dependency.objects.count() == sum(d["depends_on_id"] in ids for d in internal)


# --- Readiness, as bd decides it -------------------------------------------------------


def bd_ready(records):
    """bd's rule, computed from the records alone (plus Corral's epics rule)."""
    by_id = {r["id"]: r for r in records}

    def active(bead_id):
        r = by_id.get(bead_id)
        pinned = r is not None and (r["status"] == "pinned" or r.get("pinned") is True)
        return r is not None and r["status"] not in ("closed", "tombstone") and not pinned

    blocked = {
        r["id"]
        for r in records
        for d in r.get("dependencies", [])
        if d["type"] in ACTIVE_BLOCKING and active(r["id"]) and active(d["depends_on_id"])
    }
    while True:
        children = {
            r["id"]
            for r in records
            for d in r.get("dependencies", [])
            if d["type"] == "parent-child" and d["depends_on_id"] in blocked
        }
        if children <= blocked:
            break
        blocked |= children
    return {
        r["id"]
        for r in records
        if r["status"] == "open"
        and r["id"] not in blocked
        and not r.get("pinned")
        and not r.get("ephemeral")
        and r["issue_type"] not in NON_WORK
        and r["issue_type"] != "epic"  # Corral's difference: an epic's children carry the work
    }


def corral_ready():
    ready = {b.id for b in hook.ready()}
    assert ready == {row["id"] for row in hook.ready_rows(10_000)}  # the SQL agrees
    return ready


def test_the_messy_file_is_ready_as_bd_has_it(bd_repo):
    records = jsonl.read(MESSY)
    jsonl.import_records(records, bd_repo)
    assert bd_ready(records) == {"bd-q1", "bd-p3", "bd-f7", "gt-mol-8pf", "gt-cv1"}
    assert corral_ready() == bd_ready(records)


@pytest.mark.parametrize(
    "bead_id, why",
    [
        ("bd-au0.7.2", "is blocked, or a child of a blocked bead"),
        ("bd-w6", "is not work for an agent"),
        ("hq-m8", "is not work for an agent"),
        ("bd-c2", "is blocked, or a child of a blocked bead"),
    ],
)
def test_claiming_a_bead_bd_would_not_offer_says_why(bd_repo, agent, bead_id, why):
    jsonl.import_records(jsonl.read(MESSY), bd_repo)
    bead = Bead.objects.get(pk=bead_id)
    with pytest.raises(hook.NotClaimable, match=why):
        lifecycle.claim(agent, bead=bead)
    assert Bead.objects.get(pk=bead_id).status == "open"


STATUSES = ["open"] * 6 + ["in_progress", "closed", "closed", "blocked", "deferred"]
STATUSES += ["hooked", "pinned", "tombstone", "needs-triage"]
TYPES = ["task"] * 6 + ["bug", "epic", "feature", "agent", "gate", "molecule", "convoy", "event"]
DEP_TYPES = ["blocks"] * 4 + ["parent-child"] * 3 + ["conditional-blocks", "related"]
DEP_TYPES += ["waits-for", "tracks", "discovered-from"]


def random_records(rng):
    records = []
    for n in range(rng.randint(20, 60)):
        record = {
            "id": f"{rng.choice(['bd', 'gt'])}-{n}{'.1' * rng.randint(0, 2)}",
            "title": f"bead {n}",
            "status": rng.choice(STATUSES),
            "priority": rng.randint(0, 4),
            "issue_type": rng.choice(TYPES),
        }
        if rng.random() < 0.1:
            record[rng.choice(["pinned", "ephemeral"])] = True
        earlier = rng.sample(records, k=min(n, rng.choice([0, 1, 1, 2, 3])))
        record["dependencies"] = [
            {"issue_id": record["id"], "depends_on_id": d["id"], "type": rng.choice(DEP_TYPES)}
            for d in earlier
        ]
        if rng.random() < 0.1:
            external = {"issue_id": record["id"], "depends_on_id": "ext-9", "type": "blocks"}
            record["dependencies"].append(external)
        records.append(record)
    return records


@pytest.mark.parametrize("seed", range(8))
def test_readiness_matches_bds_rule_on_random_graphs(bd_repo, seed):
    records = random_records(random.Random(seed))
    jsonl.import_records(records, bd_repo)
    assert corral_ready() == bd_ready(records), seed


# --- An import racing a claim --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("n", range(4))
def test_an_import_closing_a_bead_races_a_claim_and_one_wins_whole(repo, agent, n):
    record = {"id": f"app-race{n}", "title": "Raced", "status": "open", "scope": ["**"]}
    jsonl.import_records([record], repo)
    closing = dict(record, status="closed", closed_at="2026-01-01T00:00:00Z")

    def run(which):
        # Each goes first in turn (the other waits a second); both must end whole.
        time.sleep(1 if (which == "import") == bool(n % 2) else 0)
        if which == "import":
            return jsonl.import_records([closing], Repository.objects.get(pk=repo.pk)).summary()
        try:
            bead = Bead.objects.get(pk=record["id"])
            return str(lifecycle.claim(Agent.objects.get(pk=agent.pk), bead=bead).pk)
        except (hook.NothingReady, hook.NotClaimable) as e:
            return f"refused: {e}"

    imported, claimed = race(run, [("import",), ("claim",)])
    bead = Bead.objects.get(pk=record["id"])
    if Session.objects.filter(bead=bead).exists():
        # The claim came first: the bead is the session's, the file's status waits.
        assert bead.status == "in_progress" and not claimed.startswith("refused")
        assert imported == "0 created, 0 updated, 1 unchanged"
    else:
        assert bead.status == "closed" and claimed.startswith("refused"), claimed
        assert imported == "0 created, 1 updated, 0 unchanged"
