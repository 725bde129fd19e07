"""The change set pages: made with a form, shown live, reviewed once in `human` mode."""

import pytest

from agents.models import ChangeSet
from beads.models import Bead, Dependency
from tests.agents.test_changesets import AGREE, bead, hand_in, work

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(make_repo):
    return make_repo("api", review_mode="human")


@pytest.fixture
def web(make_repo):
    return make_repo("web")


def test_an_operator_makes_a_change_set_with_the_form(api, web, logged_in):
    a, w = bead(api), bead(web)
    page = logged_in.post(
        "/changesets/",
        {"title": "v2", "beads": f"{a.id}, {w.id}", "integration_command": " ".join(AGREE[:2])},
    )
    changeset = ChangeSet.objects.get()
    assert page.status_code == 302 and page["Location"] == changeset.get_absolute_url()
    assert changeset.integration_command == ["sh", "-c"]
    shown = logged_in.get(changeset.get_absolute_url()).content.decode()
    assert a.id in shown and w.id in shown and "not held yet" in shown
    assert 'hx-trigger="every 2s"' in shown  # live while open


def test_the_form_keeps_what_was_typed_and_says_what_is_wrong(api, web, logged_in):
    a = bead(api)
    page = logged_in.post("/changesets/", {"title": "one repo", "beads": f"{a.id} nope-9"})
    text = page.content.decode()
    assert page.status_code == 200 and "No such bead: nope-9" in text
    assert f'value="{a.id} nope-9"' in text
    page = logged_in.post("/changesets/", {"title": "one repo", "beads": f"{a.id} {bead(api).id}"})
    assert "two or more repositories" in page.content.decode()
    assert not ChangeSet.objects.exists()


def test_a_viewer_cannot_make_one(api, web, client, viewer):
    client.force_login(viewer)
    page = client.post("/changesets/", {"title": "x", "beads": f"{bead(api).id} {bead(web).id}"})
    assert "operator role" in page.content.decode() and not ChangeSet.objects.exists()


def test_human_review_is_once_per_change_set_then_all_land(api, web, agent, logged_in, rq_redis):
    a, w = bead(api), bead(web)
    logged_in.post("/changesets/", {"title": "v2", "beads": f"{a.id} {w.id}"})
    changeset = ChangeSet.objects.get()
    sub_a = hand_in(a, agent, {"version": "2\n"})
    sub_w = hand_in(w, agent, {"expects": "2\n"})
    work(api, web)
    changeset.refresh_from_db()
    sub_a.refresh_from_db()
    assert changeset.status == "awaiting_review" and sub_a.status == "held"  # not per member
    assert "Reviewed once for its change set" in sub_a.gate_results.get(gate="review").detail
    page = logged_in.get(changeset.get_absolute_url()).content.decode()
    assert "Approve the change set" in page
    logged_in.post(f"/changesets/{changeset.pk}/approve")
    work(api, web)
    changeset.refresh_from_db()
    sub_w.refresh_from_db()
    assert changeset.status == "landed" and sub_w.status == "committed"
    page = logged_in.get(changeset.get_absolute_url()).content.decode()
    assert page.count('data-state="advanced"') == 2 and "Revert every member" in page
    assert "every 2s" not in page  # landed: it stops polling


def test_each_member_bead_links_its_change_set_on_its_repository_page(api, web, logged_in):
    a, w = bead(api), bead(web)
    logged_in.post("/changesets/", {"title": "v2", "beads": f"{a.id} {w.id}"})
    changeset = ChangeSet.objects.get()
    for repo in (api, web):
        page = logged_in.get(f"/repos/{repo.slug}/").content.decode()
        assert f'href="{changeset.get_absolute_url()}"' in page


@pytest.mark.slow
def test_rejecting_the_change_set_sends_every_member_back(api, web, agent, logged_in, rq_redis):
    a, w = bead(api), bead(web)
    logged_in.post("/changesets/", {"title": "v2", "beads": f"{a.id} {w.id}"})
    changeset = ChangeSet.objects.get()
    hand_in(a, agent, {"version": "2\n"})
    hand_in(w, agent, {"expects": "2\n"})
    work(api, web)
    logged_in.post(f"/changesets/{changeset.pk}/reject", {"reason": "wrong field name"})
    changeset.refresh_from_db()
    assert changeset.status == "open" and changeset.attempts == 1
    for member in (a, w):
        member.refresh_from_db()
        assert member.status == "open" and member.last_failure == "wrong field name"
    page = logged_in.post(f"/changesets/{changeset.pk}/approve", follow=True)
    assert "no longer waiting for review" in page.content.decode()


def test_the_form_makes_a_change_set_from_an_epic_whose_children_span_repositories(
    api, web, logged_in
):
    epic = Bead.objects.create(repository=api, title="Items v3", issue_type="epic")
    children = [bead(api), bead(web)]
    for child in children:
        Dependency.objects.create(issue=child, depends_on=epic, type="parent-child")
    page = logged_in.post("/changesets/", {"epic": epic.id})
    changeset = ChangeSet.objects.get()
    assert page.status_code == 302 and changeset.title == "Items v3"
    assert {m.bead_id for m in changeset.member_list()} == {c.id for c in children}
