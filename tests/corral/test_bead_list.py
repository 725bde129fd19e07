"""The bead list: filters, pages, and bulk actions by role."""

import pytest

from beads import plans
from beads.models import Bead


@pytest.fixture
def beads(make_repo):
    api, web = make_repo("api"), make_repo("web")
    return {
        "login": Bead.objects.create(
            repository=api, title="Fix login", priority=0, labels=["auth"], issue_type="bug"
        ),
        "cache": Bead.objects.create(repository=api, title="Add cache", assignee="agent-7"),
        "page": Bead.objects.create(repository=web, title="New page", labels=["ui", "auth-ish"]),
        "done": Bead.objects.create(repository=web, title="Old work", status="closed"),
    }


def listed(client, **params):
    response = client.get("/beads/", params)
    assert response.status_code == 200
    html = response.content.decode()
    return {part.split('"')[0] for part in html.split('data-bead="')[1:]}


@pytest.mark.parametrize(
    "params, expected",
    [
        ({}, {"login", "cache", "page", "done"}),
        ({"repo": "web"}, {"page", "done"}),
        ({"status": "closed"}, {"done"}),
        ({"priority": "0"}, {"login"}),
        ({"issue_type": "bug"}, {"login"}),
        ({"label": "auth"}, {"login"}),
        ({"assignee": "agent-7"}, {"cache"}),
        ({"q": "cache"}, {"cache"}),
        ({"q": "page", "repo": "api"}, set()),
    ],
)
def test_filters_narrow_the_list(logged_in, beads, params, expected):
    assert listed(logged_in, **params) == {beads[name].id for name in expected}


def test_a_bad_filter_value_shows_nothing_rather_than_failing(logged_in, beads):
    assert listed(logged_in, priority="9") == set()


def test_the_list_is_paged(logged_in, repo):
    Bead.objects.bulk_create(
        [Bead(id=f"app-{n:04d}", repository=repo, title=f"bead {n}") for n in range(120)]
    )
    first, third = listed(logged_in), listed(logged_in, page="3")
    assert len(first) == 50 and len(third) == 20 and not first & third
    assert "page 3 of 3" in logged_in.get("/beads/", {"page": "99"}).content.decode()


def test_an_operator_closes_beads_in_bulk_and_held_ones_are_left(logged_in, beads):
    beads["cache"].start("agent-7")
    ids = [beads[name].id for name in ("login", "cache", "page")]
    response = logged_in.post("/beads/bulk", {"action": "close", "bead": ids, "back": "repo=api"})
    assert response.status_code == 302 and response["Location"] == "/beads/?repo=api"
    statuses = dict(Bead.objects.values_list("title", "status"))
    assert statuses["Fix login"] == statuses["New page"] == "closed"
    assert statuses["Add cache"] == "in_progress"
    page = logged_in.get(response["Location"]).content.decode()
    assert "Close: 2 of 3 bead(s) changed." in page and "1 bead(s) whose status" in page


def test_priority_is_set_in_bulk(logged_in, beads):
    logged_in.post("/beads/bulk", {"action": "p4", "bead": [beads["login"].id]})
    assert Bead.objects.get(pk=beads["login"].id).priority == 4


def test_a_viewer_sees_no_bulk_actions_and_may_not_post_them(client, viewer, beads):
    client.force_login(viewer)
    assert 'name="action"' not in client.get("/beads/").content.decode()
    response = client.post("/beads/bulk", {"action": "close", "bead": [beads["login"].id]})
    assert response.status_code == 403 and Bead.objects.get(pk=beads["login"].id).status == "open"


def test_closing_the_last_open_bead_of_an_active_plan_finishes_it(logged_in, beads):
    plan = plans.start(beads["login"].repository.workspace, "p", [beads["login"]], 4)
    plan.activate()
    logged_in.post("/beads/bulk", {"action": "close", "bead": [beads["login"].id]})
    plan.refresh_from_db()
    assert plan.status == "done"
