"""The repository page imports bd's JSONL for operators and exports it for all."""

from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile

from beads import jsonl
from beads.models import Bead

MESSY = Path(__file__).parent.parent / "beads" / "data" / "bd_messy.jsonl"


def upload(client, repo, content: bytes):
    issues = SimpleUploadedFile("issues.jsonl", content, content_type="application/x-ndjson")
    return client.post(f"/repos/{repo.slug}/beads/import", {"issues": issues}, follow=True)


def test_an_operator_imports_a_bd_file_and_sees_what_happened(logged_in, repo):
    page = logged_in.get(f"/repos/{repo.slug}/")
    assert b'action="/repos/app/beads/import"' in page.content
    response = upload(logged_in, repo, MESSY.read_bytes())
    assert response.status_code == 200
    assert b"Imported into app: 26 created, 0 updated, 0 unchanged." in response.content
    assert Bead.objects.filter(repository=repo).count() == 26
    again = upload(logged_in, repo, MESSY.read_bytes())
    assert b"0 created, 0 updated, 26 unchanged" in again.content


def test_a_bad_line_is_shown_on_the_form_and_nothing_is_imported(logged_in, repo):
    lines = MESSY.read_bytes().splitlines(keepends=True)
    lines[4] = b'{"id": "bd-x", "title": \n'
    response = upload(logged_in, repo, b"".join(lines))
    assert response.status_code == 400
    assert b"Nothing imported: line 5: not valid JSON" in response.content
    assert Bead.objects.count() == 0


def test_a_cycle_is_shown_on_the_form(logged_in, repo):
    cycle = (
        b'{"id":"x-1","title":"a","dependencies":[{"depends_on_id":"x-2","type":"blocks"}]}\n'
        b'{"id":"x-2","title":"b","dependencies":[{"depends_on_id":"x-1","type":"blocks"}]}\n'
    )
    response = upload(logged_in, repo, cycle)
    assert response.status_code == 400
    assert "a cycle of blocks dependencies: x-1 → x-2 → x-1".encode() in response.content
    assert Bead.objects.count() == 0


def test_a_file_that_is_not_text_is_refused(logged_in, repo):
    response = upload(logged_in, repo, b"\xff\xfe\x00garbage")
    assert response.status_code == 400 and b"not UTF-8 text" in response.content


def test_a_viewer_sees_no_form_and_may_not_import(client, viewer, repo):
    client.force_login(viewer)
    page = client.get(f"/repos/{repo.slug}/")
    assert b"beads/import" not in page.content and b"beads.jsonl" in page.content
    response = upload(client, repo, MESSY.read_bytes())
    assert response.status_code == 403
    assert Bead.objects.count() == 0


def test_anyone_logged_in_downloads_the_repository_as_bd_jsonl(client, viewer, repo):
    jsonl.import_records(jsonl.read(MESSY), repo)
    client.force_login(viewer)
    response = client.get(f"/repos/{repo.slug}/beads.jsonl")
    assert response["Content-Disposition"] == 'attachment; filename="app-issues.jsonl"'
    records = jsonl.read(response.content.decode().splitlines(keepends=True))
    assert {r["id"]: r for r in records} == {r["id"]: r for r in jsonl.read(MESSY)}


def test_someone_not_logged_in_is_sent_to_log_in(client, repo):
    assert client.get(f"/repos/{repo.slug}/beads.jsonl").status_code == 302
    response = client.post(f"/repos/{repo.slug}/beads/import")
    assert response.status_code == 302 and "/login/" in response["Location"]
