"""The overview and repository pages: login required, right counts, flat query counts."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models.usage import Counts, TokenUsage
from agents.moves import lifecycle
from beads.models import Bead, Dependency
from workspace.models import Repository, Workspace


def add_repositories(workspace, n, beads_each=4):
    statuses = ["open", "in_progress", "closed", "blocked"]
    for i in range(n):
        repo = Repository.objects.create(
            workspace=workspace, name=f"r{i}", slug=f"r{i}", bead_prefix=f"r{i}"
        )
        for j in range(beads_each):
            Bead.objects.create(repository=repo, title=f"b{j}", status=statuses[j % 4])


def overview_queries(client):
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/").status_code == 200
    return len(queries)


def test_pages_need_a_login(client, repo):
    for url in ["/", f"/repos/{repo.slug}/"]:
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_overview_counts_beads_by_status(logged_in):
    add_repositories(Workspace.default(), 2, beads_each=6)
    page = logged_in.get("/").content.decode()
    row = page[page.index('data-repo="r1"') :]
    assert '<td class="n" data-status="open">2</td>' in row
    assert '<td class="n" data-status="in_progress">2</td>' in row
    assert '<td class="n" data-status="closed">1</td>' in row
    assert '<td class="n" data-status="total">6</td>' in row


@pytest.mark.django_db
def test_overview_query_count_does_not_grow_with_repositories(logged_in):
    workspace = Workspace.default()
    add_repositories(workspace, 3)
    with_3 = overview_queries(logged_in)
    Repository.objects.all().delete()
    add_repositories(workspace, 30)
    with_30 = overview_queries(logged_in)
    print(f"overview queries: {with_3} with 3 repositories, {with_30} with 30")
    assert with_3 == with_30


@pytest.mark.django_db
def test_repository_page_groups_beads_and_shows_scope_and_dependencies(logged_in, make_repo):
    api, web = make_repo("api"), make_repo("web")
    endpoint = Bead.objects.create(repository=api, title="Add endpoint", status="closed")
    call = Bead.objects.create(repository=web, title="Call it", priority=0, scope=["src/**"])
    Dependency.objects.create(issue=call, depends_on=endpoint)
    page = logged_in.get(f"/repos/{web.slug}/").content.decode()
    assert "<td>Call it</td>" in page and "<td>Add endpoint</td>" not in page
    assert 'class="priority p0">P0' in page
    assert "<code>src/**</code>" in page
    assert f"<code>{endpoint.id}</code>" in page
    assert 'data-status="open"' in page


@pytest.mark.django_db
def test_repository_page_query_count_does_not_grow_with_beads(logged_in, make_repo):
    repo, other = make_repo("api"), make_repo("web")
    target = Bead.objects.create(repository=other, title="t")

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert logged_in.get(f"/repos/{repo.slug}/").status_code == 200
        return len(captured)

    Dependency.objects.create(
        issue=Bead.objects.create(repository=repo, title="a"), depends_on=target
    )
    few = queries()
    for i in range(20):
        bead = Bead.objects.create(repository=repo, title=f"b{i}")
        Dependency.objects.create(issue=bead, depends_on=target)
    assert queries() == few


def test_repository_page_shows_its_own_running_sessions_and_usage_only(logged_in, make_repo, agent):
    api, web = make_repo("api"), make_repo("web")
    mine, theirs = (
        lifecycle.claim(agent, bead=Bead.objects.create(repository=r, title=f"{r.slug} work"))
        for r in (api, web)
    )
    TokenUsage.put(mine.pk, "stream", "m", Counts(input=7))
    TokenUsage.put(theirs.pk, "stream", "m", Counts(input=1000))
    page = logged_in.get(f"/repos/{api.slug}/")
    assert [s.pk for s in page.context["running"]] == [mine.pk]
    assert page.context["usage"].total == 7


def test_an_unknown_repository_is_a_404(logged_in, db):
    assert logged_in.get("/repos/nope/").status_code == 404


@pytest.mark.django_db
def test_overview_columns_line_up_with_their_headings(logged_in):
    add_repositories(Workspace.default(), 1, beads_each=4)
    page = logged_in.get("/").content.decode()
    table = page[page.index('id="repositories"') : page.index("</table>")]
    headings = re.findall(r'<th class="n">([^<]*)</th>', table)
    cells = re.findall(r'<td class="n" data-status="([a-z_]+)">', table)
    named = [Bead.Status(s).label if s != "total" else "total" for s in cells]
    assert headings == [label[:1].upper() + label[1:] for label in named]
