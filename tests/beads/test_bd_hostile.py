"""A hostile bd file: an ID that is not bd's shape (a `/` in it broke every
page that links the bead) or a line nested 100,000 deep (json's RecursionError)
is refused, naming its line, by the JSONL reader, `manage.py beads import` and
the upload form; nothing is imported and the pages keep answering."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from beads import ids, jsonl
from beads.models import Bead
from tests.corral.test_bd_upload import upload

GOOD = b'{"id":"app-a3f8e9","title":"Fine"}\n'
DEEP = b'{"id":"app-d33p","title":"Deep","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"


def nested(depth):
    """A record whose JSON nests `depth` deep (the record itself is the first level)."""
    return json.dumps(
        {"id": "app-n1", "title": "Nested", "x": json.loads("[" * (depth - 1) + "]" * (depth - 1))}
    )


@pytest.mark.parametrize(
    "bead_id",
    [
        "app-a/b",
        "../app-x",
        "app-a b",
        "app-ä1",
        "app-a\\b",
        "app-a?x",
        "app-a#x",
        "app-%2F",
        "app-<b>",
        ".app-x",
        "app-x\u202e",
    ],
)
def test_an_id_not_of_bds_shape_is_refused_naming_its_line(bead_id):
    lines = [GOOD.decode(), json.dumps({"id": bead_id, "title": "Bad"}) + "\n"]
    with pytest.raises(ValueError, match=r"^line 2: .*not a bead ID") as caught:
        jsonl.read_lines(lines)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "bead_id", ["bd-a3f8e9", "bd-a3f8e9.1", "bd-au0.7.2", "gt-gastown_ui-witness", "My_Proj-X1"]
)
def test_bds_own_ids_pass(bead_id):
    assert ids.problem(bead_id) == ""
    assert jsonl.read_lines([json.dumps({"id": bead_id, "title": "Fine"})])[0][1]["id"] == bead_id


def test_the_upload_form_refuses_a_slash_id_and_the_bead_pages_keep_answering(logged_in, repo):
    response = upload(logged_in, repo, GOOD + b'{"id":"app-a/b","title":"Slash"}\n')

    assert response.status_code == 400
    assert b"Nothing imported: line 2: " in response.content
    assert Bead.objects.count() == 0
    assert logged_in.get("/beads/").status_code == 200
    assert logged_in.get(f"/repos/{repo.slug}/").status_code == 200


def test_manage_beads_import_refuses_a_slash_id_in_one_line(repo, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO('{"id":"app-a/b","title":"x"}\n'))
    with pytest.raises(CommandError, match=r"^nothing imported: line 1: .*not a bead ID") as caught:
        call_command("beads", "import", "-", "--repo", repo.slug)
    assert "\n" not in str(caught.value)
    assert Bead.objects.count() == 0


def test_a_line_nested_100000_deep_is_refused_on_the_form(logged_in, repo):
    response = upload(logged_in, repo, GOOD + DEEP)

    assert response.status_code == 400
    assert b"Nothing imported: line 2: nested deeper than 64" in response.content
    assert Bead.objects.count() == 0


def test_a_line_nested_100000_deep_is_refused_by_the_command(repo, tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_bytes(GOOD + DEEP)
    with pytest.raises(CommandError, match=r"^nothing imported: .*line 2: nested deeper than 64"):
        call_command("beads", "import", str(path), "--repo", repo.slug)
    assert Bead.objects.count() == 0


def test_nesting_is_counted_outside_strings_and_up_to_the_limit():
    assert jsonl.read_lines([nested(64)])[0][1]["title"] == "Nested"
    with pytest.raises(ValueError, match="^line 1: nested deeper than 64"):
        jsonl.read_lines([nested(65)])
    brackets_in_text = json.dumps({"id": "app-s1", "title": "[" * 1000 + '\\"{' * 500})
    assert jsonl.read_lines([brackets_in_text])[0][1]["id"] == "app-s1"
