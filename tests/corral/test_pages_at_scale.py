"""Pages whose size and queries do not grow with the data: a repository's page
lists the first beads of each status and counts the rest in the database; the
overview counts beads by status and the hook page counts ready beads there."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent, Session, Submission
from beads.models import Bead, Dependency
from corral.pages.overview import GROUP_SHOWN, READY_SHOWN

pytestmark = pytest.mark.django_db


def fill(repo, n, status="open", start=0):
    return Bead.objects.bulk_create(
        Bead(
            id=f"{repo.bead_prefix}-{status[:2]}{i:05d}",
            repository=repo,
            title=f"B{i}",
            status=status,
        )
        for i in range(start, start + n)
    )


def queries_of(client, url):
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_a_repository_page_shows_the_first_beads_of_each_status_and_counts_all(
    logged_in, make_repo
):
    small, big = make_repo("small"), make_repo("big")
    fill(small, 3)
    fill(small, 2, "closed")
    fill(big, GROUP_SHOWN + 250)
    fill(big, GROUP_SHOWN - 5, "closed")
    html = logged_in.get(f"/repos/{big.slug}/").content.decode()
    assert html.count('class="bead"') == GROUP_SHOWN + GROUP_SHOWN - 5
    assert f'<span class="count">{GROUP_SHOWN + 250}</span>' in html
    assert f"The first {GROUP_SHOWN} of {GROUP_SHOWN + 250}." in html
    assert f'href="/beads/?repo={big.slug}&amp;status=open"' in html
    assert f"{2 * GROUP_SHOWN + 245} beads" in html
    counts = [queries_of(logged_in, f"/repos/{r.slug}/") for r in (small, big)]
    assert counts[0] == counts[1] > 0, counts


def row_of(html, repo):
    """The overview's cells of one repository: {status: count}."""
    row = html.split(f'data-repo="{repo.slug}"', 1)[1].split("</tr>", 1)[0]
    cells = row.split('data-status="')[1:]
    return {cell.split('"', 1)[0]: int(cell.split(">", 1)[1].split("<", 1)[0]) for cell in cells}


def test_the_overview_counts_each_repositorys_beads_by_status_in_the_same_queries(
    logged_in, make_repo
):
    small, big = make_repo("small"), make_repo("big")
    fill(small, 3)
    fill(small, 2, "closed")
    fill(big, 1)
    few = queries_of(logged_in, "/")
    fill(big, 600, start=1)
    fill(big, 40, "closed")
    fill(big, 7, "in_progress")
    html = logged_in.get("/").content.decode()
    assert row_of(html, small) == {
        "proposed": 0, "open": 3, "in_progress": 0, "review": 0, "blocked": 0, "deferred": 0,
        "closed": 2, "total": 5,
    }  # fmt: skip
    assert row_of(html, big) == {
        "proposed": 0, "open": 601, "in_progress": 7, "review": 0, "blocked": 0, "deferred": 0,
        "closed": 40, "total": 648,
    }  # fmt: skip
    assert queries_of(logged_in, "/") == few


def test_the_overview_still_finds_a_churning_bead_among_many_committed_submissions(
    logged_in, make_repo, settings
):
    repo = make_repo("churn")
    agent = Agent.objects.create(name="churner", preset="shell")
    beads = fill(repo, 30)
    for i, bead in enumerate(beads):
        refused = i == 0
        for _ in range(settings.CHURN_REFUSALS if refused else 4):
            session = Session.objects.create(agent=agent, bead=bead, status="failed")
            status = Submission.Status.CONFLICT if refused else Submission.Status.COMMITTED
            Submission.objects.create(session=session, bead=bead, repository=repo, status=status)
    html = logged_in.get("/").content.decode()
    assert "<strong>1 problem</strong>" in html
    Bead.objects.filter(pk=beads[0].pk).update(status="closed")
    assert "No problems" in logged_in.get("/").content.decode()


def test_the_hook_page_counts_every_ready_bead_and_lists_the_first_in_the_same_queries(
    logged_in, make_repo
):
    repo = make_repo("hooked", max_agents=10)
    fill(repo, 3)
    few = queries_of(logged_in, "/hook/")
    ready = fill(repo, 400, start=3)
    blocker = fill(repo, 1, "in_progress")[0]
    for bead in ready[:50]:  # blocked by work in progress: not ready
        Dependency.objects.create(issue=bead, depends_on=blocker)
    html = logged_in.get("/hook/").content.decode()
    assert f'data-ready="{353}">353 ready' in html
    assert html.count('class="bead"') == READY_SHOWN
    assert f"The first {READY_SHOWN} of 353 ready beads." in html
    assert queries_of(logged_in, "/hook/") == few
