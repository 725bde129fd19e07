"""Filing and editing beads in the dashboard: the scope checked against the
tree at head, cycles refused with the chain spelled out, a concurrent edit
detected, and what was typed kept on every error."""

import pytest

from beads.models import Bead, Dependency
from workspace.audit import Action, AuditEntry


def form_data(repo=None, **fields):
    data = {
        "title": "Add refunds",
        "description": "Money back.",
        "design": "",
        "acceptance_criteria": "A refund shows up.",
        "priority": "1",
        "issue_type": "feature",
        "labels_text": "payments, backend",
        "scope_text": "src/app.py\nREADME.md",
        "time_limit_s": "",
        "waits_for": "",
        "parent": "",
    }
    if repo is not None:
        data["repository"] = str(repo.pk)
    return data | fields


def test_a_person_files_a_bead_with_a_scope_and_a_dependency(logged_in, repo, user):
    first = Bead.objects.create(repository=repo, title="first")
    data = form_data(repo, waits_for=first.id, description="Money\r\nback.")  # as browsers send
    response = logged_in.post("/beads/new", data)
    bead = Bead.objects.exclude(pk=first.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/beads/{bead.id}/"
    assert (bead.status, bead.filed_by, bead.priority) == ("open", user, 1)
    assert bead.labels == ["payments", "backend"] and bead.scope == ["src/app.py", "README.md"]
    assert bead.description == "Money\nback."
    assert list(bead.blockers()) == [first]
    (filed,) = AuditEntry.objects.filter(action=Action.BEAD_EDIT)
    assert (filed.actor, filed.detail) == (user, "filed through the dashboard")


def test_the_form_shows_what_each_pattern_matches_at_head(logged_in, repo):
    response = logged_in.post(
        "/beads/scope-check", {"repository": repo.pk, "scope_text": "src/**\nsrc/new.py"}
    )
    html = response.content.decode()
    assert 'data-pattern="src/**" data-count="1"' in html and "<code>src/app.py</code>" in html
    assert 'data-pattern="src/new.py" data-count="0"' in html and "matches no file" in html


def test_a_pattern_matching_nothing_asks_for_confirmation_keeping_the_input(logged_in, repo):
    data = form_data(repo, scope_text="src/refund.py", description="Keep me.")
    response = logged_in.post("/beads/new", data)
    html = response.content.decode()
    assert response.status_code == 400 and 'id="confirm-unmatched"' in html
    assert "Keep me." in html and "src/refund.py" in html and not Bead.objects.exists()
    response = logged_in.post("/beads/new", data | {"confirm": "1"})
    assert response.status_code == 302 and Bead.objects.get().scope == ["src/refund.py"]


def test_a_missing_title_and_an_unknown_dependency_keep_what_was_typed(logged_in, repo):
    response = logged_in.post(
        "/beads/new", form_data(repo, title="", waits_for="app-nope", description="Typed.")
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "This field is required." in html and "No such bead: app-nope." in html
    assert "Typed." in html and "app-nope" in html and not Bead.objects.exists()


def test_a_dependency_closing_a_cycle_is_refused_with_the_cycle_spelled_out(logged_in, repo):
    a = Bead.objects.create(repository=repo, title="a", scope=["src/app.py"])
    b = Bead.objects.create(repository=repo, title="b", scope=["src/app.py"])
    c = Bead.objects.create(repository=repo, title="c", scope=["src/app.py"])
    Dependency.objects.create(issue=b, depends_on=a)
    Dependency.objects.create(issue=c, depends_on=b)
    form = logged_in.get(f"/beads/{a.id}/edit").content.decode()
    seen = form.split('name="seen" value="')[1].split('"')[0]
    data = form_data(title="a, renamed", waits_for=c.id, scope_text="src/app.py", seen=seen)
    response = logged_in.post(f"/beads/{a.id}/edit", data)
    html = response.content.decode()
    assert response.status_code == 400
    assert f"{a.id} → {c.id} → {b.id} → {a.id}" in html and "a, renamed" in html
    a.refresh_from_db()
    assert a.title == "a" and not a.dependencies.exists()


def test_an_edit_on_an_older_version_shows_the_new_one_and_keeps_the_input(logged_in, repo):
    bead = Bead.objects.create(repository=repo, title="old", scope=["src/app.py"])
    form = logged_in.get(f"/beads/{bead.id}/edit").content.decode()
    seen = form.split('name="seen" value="')[1].split('"')[0]
    other = Bead.objects.get(pk=bead.pk)
    other.title = "changed by Bob"
    other.save()
    mine = form_data(title="mine", scope_text="src/app.py", seen=seen)
    response = logged_in.post(f"/beads/{bead.id}/edit", mine)
    html = response.content.decode()
    assert response.status_code == 409 and 'id="bead-changed"' in html
    assert "changed by Bob" in html and 'value="mine"' in html
    bead.refresh_from_db()
    assert bead.title == "changed by Bob"
    newer = html.split('name="seen" value="')[1].split('"')[0]
    response = logged_in.post(f"/beads/{bead.id}/edit", mine | {"seen": newer})
    assert response.status_code == 302
    bead.refresh_from_db()
    assert bead.title == "mine" and bead.priority == 1


def test_an_edit_replaces_the_blocking_dependencies(logged_in, repo):
    a, b = (Bead.objects.create(repository=repo, title=t) for t in "ab")
    bead = Bead.objects.create(repository=repo, title="x", scope=["src/app.py"])
    Dependency.objects.create(issue=bead, depends_on=a)
    form = logged_in.get(f"/beads/{bead.id}/edit").content.decode()
    assert f'name="waits_for" value="{a.id}"' in form
    seen = form.split('name="seen" value="')[1].split('"')[0]
    data = form_data(title="x", scope_text="src/app.py", waits_for=b.id, seen=seen)
    assert logged_in.post(f"/beads/{bead.id}/edit", data).status_code == 302
    assert list(bead.blockers()) == [b]


@pytest.mark.parametrize("path", ["/beads/new", "edit"])
def test_a_viewer_may_neither_file_nor_edit(client, viewer, repo, path):
    bead = Bead.objects.create(repository=repo, title="x")
    client.force_login(viewer)
    url = f"/beads/{bead.id}/edit" if path == "edit" else path
    assert client.get(url).status_code == 403
    assert client.post(url, form_data(repo)).status_code == 403
    assert Bead.objects.count() == 1 and Bead.objects.get().title == "x"


def test_a_bead_filed_under_an_epic_is_its_child(logged_in, repo):
    epic = Bead.objects.create(repository=repo, title="epic", issue_type="epic")
    logged_in.post("/beads/new", form_data(repo, parent=epic.id))
    child = Bead.objects.exclude(pk=epic.pk).get()
    assert list(epic.children()) == [child]
    response = logged_in.post("/beads/new", form_data(repo, parent=epic.id, waits_for=epic.id))
    assert response.status_code == 400 and "cannot also be waited for" in response.content.decode()


def test_a_person_closes_and_reopens_a_bead_from_its_page(logged_in, repo):
    bead = Bead.objects.create(repository=repo, title="x")
    page = logged_in.get(f"/beads/{bead.id}/").content.decode()
    assert 'value="close">Close' in page and 'value="reopen"' not in page
    response = logged_in.post(
        "/beads/bulk", {"action": "close", "bead": bead.id, "next": f"/beads/{bead.id}/"}
    )
    assert response["Location"] == f"/beads/{bead.id}/"
    bead.refresh_from_db()
    assert bead.status == "closed"
    assert 'value="reopen">Reopen' in logged_in.get(f"/beads/{bead.id}/").content.decode()
    elsewhere = logged_in.post(
        "/beads/bulk", {"action": "reopen", "bead": bead.id, "next": "https://evil.example/"}
    )
    assert elsewhere["Location"] == "/beads/"
