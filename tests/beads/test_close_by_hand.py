"""Closing, reopening, deferring and blocking by hand are one move each, with
the same effects from every entry point as a landing has: a parent epic whose
last child closes closes too (up the chain), plans finish, the webhooks hear
of it and the audit keeps who did it."""

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from agents.models import Delivery, Webhook
from beads import moves, plans
from beads.models import Bead, Dependency
from workspace import roles
from workspace.audit import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def family(repo):
    """An epic, a sub-epic under it, and one child under that."""
    epic = Bead.objects.create(repository=repo, title="Epic", issue_type="epic")
    sub = Bead.objects.create(repository=repo, title="Sub-epic", issue_type="epic")
    child = Bead.objects.create(repository=repo, title="Child")
    Dependency.objects.create(issue=sub, depends_on=epic, type=Dependency.Type.PARENT_CHILD)
    Dependency.objects.create(issue=child, depends_on=sub, type=Dependency.Type.PARENT_CHILD)
    return epic, sub, child


def statuses(*beads):
    return [Bead.objects.get(pk=b.pk).status for b in beads]


@pytest.fixture
def admin_user(db):
    ada = get_user_model().objects.create_user("ada", password="correct horse battery")
    roles.assign(ada, roles.ADMIN)
    return ada


def test_closing_the_last_child_from_the_bead_list_closes_the_epics_above_it(logged_in, family):
    epic, sub, child = family
    logged_in.post("/beads/bulk", {"action": "close", "bead": [child.pk]})
    assert statuses(child, sub, epic) == ["closed", "closed", "closed"]
    entry = AuditEntry.objects.get(action="bead_edit")
    assert (entry.actor.username, entry.detail) == ("alice", "Closed through the bead list")


def test_closing_from_the_bead_page_closes_the_epic(logged_in, family):
    epic, sub, child = family
    page = reverse("bead", args=[child.pk])
    response = logged_in.post("/beads/bulk", {"action": "close", "bead": [child.pk], "next": page})
    assert response.url == page
    assert statuses(child, sub, epic) == ["closed", "closed", "closed"]


def test_closing_from_the_admin_site_closes_the_epic_finishes_the_plan_and_tells_webhooks(
    client, admin_user, family, workspace
):
    epic, sub, child = family
    plan = plans.start(workspace, "p", [child], 4)
    plan.activate()
    Webhook.objects.create(name="ci", url="http://127.0.0.1:9/", events=["plan_done"])
    client.force_login(admin_user)
    client.post(
        reverse("admin:beads_bead_changelist"),
        {"action": "close", "_selected_action": [child.pk]},
    )
    assert statuses(child, sub, epic) == ["closed", "closed", "closed"]
    plan.refresh_from_db()
    assert plan.status == "done"
    (delivery,) = Delivery.objects.all()
    assert delivery.event == "plan_done" and delivery.data["plan"] == "p"
    entry = AuditEntry.objects.get(action="bead_edit")
    assert entry.detail == "Closed through the admin site"  # once, not again as an admin edit


def bd_import(repo, tmp_path, records):
    path = tmp_path / "issues.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    call_command("beads", "import", str(path), "--repo", repo.slug, stdout=io.StringIO())


def test_importing_a_bd_file_that_closes_the_last_child_closes_the_epic(repo, family, tmp_path):
    epic, sub, child = family
    parent = {"issue_id": child.pk, "depends_on_id": sub.pk, "type": "parent-child"}
    record = {"id": child.pk, "title": "Child", "status": "closed", "dependencies": [parent]}
    bd_import(repo, tmp_path, [record])
    assert statuses(child, sub, epic) == ["closed", "closed", "closed"]


def test_an_import_leaves_an_epic_the_file_itself_says_is_open(repo, tmp_path):
    records = [
        {"id": f"{repo.bead_prefix}-e1", "title": "E", "status": "open", "issue_type": "epic"},
        {
            "id": f"{repo.bead_prefix}-c1",
            "title": "C",
            "status": "closed",
            "issue_type": "task",
            "dependencies": [
                {
                    "issue_id": f"{repo.bead_prefix}-c1",
                    "depends_on_id": f"{repo.bead_prefix}-e1",
                    "type": "parent-child",
                }
            ],
        },
    ]
    bd_import(repo, tmp_path, records)
    assert Bead.objects.get(pk=f"{repo.bead_prefix}-e1").status == "open"


def test_an_epic_with_an_open_child_stays_open(repo, family):
    epic, sub, child = family
    other = Bead.objects.create(repository=repo, title="Other")
    Dependency.objects.create(issue=other, depends_on=sub, type=Dependency.Type.PARENT_CHILD)
    assert moves.close(child, "done", via="a test")
    assert statuses(child, sub, epic) == ["closed", "open", "open"]


def test_reopen_defer_and_block_are_moves_that_the_audit_keeps(repo, user):
    bead = Bead.objects.create(repository=repo, title="B")
    assert moves.defer(bead, user, "a test")
    assert not moves.defer(bead, user, "a test")  # deferred already: the move loses
    assert moves.block(bead, "waits on ops", user, "a test")
    assert moves.reopen(bead, user, "a test")
    edits = AuditEntry.objects.filter(action="bead_edit").order_by("pk")
    details = list(edits.values_list("detail", flat=True))
    assert details == [
        "Deferred through a test",
        "Blocked through a test",
        "Reopened through a test",
    ]
