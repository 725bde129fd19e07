"""The knowledge page: search and filter, provenance and outcomes, curation by
operators with forms, and what a bead would be given and why."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Session
from beads.models import Bead
from knowledge.models import Injection, Learning

pytestmark = pytest.mark.django_db


def a_learning(repo, title, **fields):
    fields.setdefault("status", "approved")
    fields.setdefault("body", title)
    return Learning.objects.create(workspace=repo.workspace, repository=repo, title=title, **fields)


def rows(page):
    return [int(part.split('"')[0]) for part in page.split('data-learning="')[1:]]


def test_the_pages_need_a_login(client, repo):
    item = a_learning(repo, "x")
    for url in ["/knowledge/", f"/knowledge/{item.pk}/", "/knowledge/why/"]:
        assert client.get(url)["Location"].startswith("/login/")


def test_search_and_filters(client, viewer, make_repo):
    client.force_login(viewer)
    api, web = make_repo("api"), make_repo("web")
    migrations = a_learning(api, "Run makemigrations", tags=["django"])
    css = a_learning(web, "Compile the SCSS", tags=["css"], maturity="proven")
    old = a_learning(
        web, "Old css advice", status="candidate", confirmed_at=timezone.now() - timedelta(weeks=20)
    )
    newest_first = [css.pk, migrations.pk, old.pk]
    assert rows(client.get("/knowledge/").content.decode()) == newest_first
    get = lambda **q: rows(client.get("/knowledge/", q).content.decode())  # noqa: E731
    assert get(q="makemigrations") == [migrations.pk]
    assert get(repo="web") == [css.pk, old.pk]
    assert get(tag="css") == [css.pk]
    assert get(status="candidate") == [old.pk]
    assert get(maturity="proven") == [css.pk]
    assert get(freshness="stale") == [old.pk] and old.pk not in get(freshness="fresh")
    assert set(get(q="css", repo="web")) == {old.pk, css.pk}
    bad = client.get("/knowledge/", {"status": "bogus", "q": "kept text"})
    assert bad.status_code == 200 and "bogus" in bad.content.decode()
    assert 'value="kept text"' in bad.content.decode()
    partial = client.get("/knowledge/", {"tag": "css"}, headers={"HX-Request": "true"})
    assert partial.content.decode().lstrip().startswith('<section id="results">')


def test_a_learning_shows_where_it_came_from_and_went(client, viewer, repo, agent):
    client.force_login(viewer)
    bead = Bead.objects.create(repository=repo, title="The bead that taught it")
    item = a_learning(
        repo, "Header rule", source_bead=bead, sources=[{"kind": "refusal", "gate": "check"}]
    )
    for outcome in ["landed", "refused", ""]:
        other = Bead.objects.create(repository=repo, title="later")
        session = Session.objects.create(agent=agent, bead=other, status="running")
        Injection.objects.create(
            learning=item, session=session, rank=1, chars=5, score=0.5, outcome=outcome
        )
    page = client.get(f"/knowledge/{item.pk}/").content.decode()
    assert "refusal (check gate)" in page and bead.pk in page
    assert "1 landed, 1 refused, 1 pending" in page
    assert page.count("data-session=") == 3
    assert 'id="curate"' not in page  # a viewer does not curate


def test_a_viewer_may_not_curate(client, viewer, repo):
    client.force_login(viewer)
    item = a_learning(repo, "x", status="candidate")
    assert client.post(f"/knowledge/{item.pk}/approve").status_code == 403
    item.refresh_from_db()
    assert item.status == "candidate"


def test_an_operator_approves_edits_and_retires(logged_in, repo):
    item = a_learning(repo, "Tip", status="candidate")
    logged_in.post(f"/knowledge/{item.pk}/approve")
    item.refresh_from_db()
    assert item.status == "approved"
    bad = logged_in.post(
        f"/knowledge/{item.pk}/edit", {"title": "", "body": "typed body stays", "tags": "a, b"}
    )
    assert bad.status_code == 200 and "typed body stays" in bad.content.decode()
    assert "This field is required" in bad.content.decode()
    logged_in.post(
        f"/knowledge/{item.pk}/edit",
        {"title": "Better tip", "body": "B", "tags": "a, b", "files": "src/x.py\nsrc/y.py"},
    )
    item.refresh_from_db()
    assert (item.title, item.tags, item.files) == (
        "Better tip",
        ["a", "b"],
        ["src/x.py", "src/y.py"],
    )
    logged_in.post(f"/knowledge/{item.pk}/retire", {"reason": "Outdated since v2."})
    item.refresh_from_db()
    assert item.status == "retired" and item.retired_reason == "Outdated since v2."


def test_an_operator_merges_two_into_one(logged_in, repo, agent):
    keep = a_learning(repo, "Keep", body="First.", tags=["a"], helpful=2)
    other = a_learning(repo, "Other", body="Second.", tags=["b"], helpful=1, harmful=1)
    session = Session.objects.create(
        agent=agent, bead=Bead.objects.create(repository=repo, title="x"), status="running"
    )
    Injection.objects.create(learning=other, session=session, rank=1, chars=1)
    logged_in.post(f"/knowledge/{keep.pk}/merge", {"other": other.pk})
    keep.refresh_from_db()
    other.refresh_from_db()
    assert other.status == "retired" and f"Merged into #{keep.pk}" in other.retired_reason
    assert "First." in keep.body and "Second." in keep.body and keep.tags == ["a", "b"]
    assert (keep.helpful, keep.harmful, keep.occurrences) == (3, 1, 2)
    assert Injection.objects.get().learning == keep
    page = logged_in.post(f"/knowledge/{keep.pk}/merge", {"other": keep.pk}, follow=True)
    assert "cannot be merged into itself" in page.content.decode()
    page = logged_in.post(f"/knowledge/{keep.pk}/merge", {"other": 99999}, follow=True)
    assert "There is no learning #99999" in page.content.decode()


def test_a_harmful_mark_from_the_page_retires_it(logged_in, repo):
    item = a_learning(repo, "Misleading")
    page = logged_in.post(f"/knowledge/{item.pk}/harmful", {"reason": "wrong path"}, follow=True)
    item.refresh_from_db()
    assert item.status == "retired" and "wrong path" in item.retired_reason
    assert "It kept hurting: retired." in page.content.decode()


def test_what_a_bead_would_be_given_and_why(logged_in, make_repo):
    api, web = make_repo("api"), make_repo("web")
    a_learning(api, "Migrations for every model change")
    a_learning(web, "Squashed migrations", body="x" * 50_000)
    bead = Bead.objects.create(repository=api, title="Add a model field and its migrations")
    page = logged_in.get("/knowledge/why/", {"bead": bead.pk}).content.decode()
    table = page[page.index('id="why"') :]
    assert table.index("Migrations for every model change") < table.index("Squashed migrations")
    assert "injected" in table and "cut by the budget" in table
    assert '<td class="n">1.00</td>' in table  # the same repository's affinity
    missing = logged_in.get("/knowledge/why/", {"bead": "nope-1"}).content.decode()
    assert "There is no such bead." in missing
