"""Pages whose size and queries do not grow with the data: a repository's page
lists the first beads of each status and counts the rest in the database."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from beads.models import Bead
from corral.views import GROUP_SHOWN

pytestmark = pytest.mark.django_db


def fill(repo, n, status="open"):
    Bead.objects.bulk_create(
        Bead(
            id=f"{repo.bead_prefix}-{status[:2]}{i:05d}",
            repository=repo,
            title=f"B{i}",
            status=status,
        )
        for i in range(n)
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
    fill(big, 40, "closed")
    html = logged_in.get(f"/repos/{big.slug}/").content.decode()
    assert html.count('class="bead"') == GROUP_SHOWN + 40
    assert f'<span class="count">{GROUP_SHOWN + 250}</span>' in html
    assert f"The first {GROUP_SHOWN} of {GROUP_SHOWN + 250}." in html
    assert f"{GROUP_SHOWN + 290} beads" in html
    counts = [queries_of(logged_in, f"/repos/{r.slug}/") for r in (small, big)]
    assert counts[0] == counts[1] > 0, counts
