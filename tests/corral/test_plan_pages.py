"""Plans in the browser: started from a selection, edited (moves, splits,
merges, agents per wave, the two fixes) with optimistic concurrency,
activated once, and shown live."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from agents.models import ChangeSet, Session
from agents.reports import plan_status
from beads import hook, plans
from beads.models import Bead, Dependency, Plan
from tests.factories import make_patch, run_lead, submit
from tests.races import race
from workspace.audit import AuditEntry
from workspace.models import Repository

HTMX = {"HX-Request": "true"}
FILES = [
    {"README.md": "# shop\n", "config/settings.py": "A = 1\n"},
    {"src/cart.py": "cart\n", "config/settings.py": "A = 2\n"},
    {"src/pay.py": "pay\n", "config/settings.py": "A = 3\n"},
]


@pytest.fixture
def shop(make_source, workspace):
    return Repository.register(str(make_source("shop", commits=FILES)), workspace)


@pytest.fixture
def epic(shop):
    """An epic of three beads: two share config/settings.py, one waits for another."""
    epic = Bead.objects.create(repository=shop, title="Checkout", issue_type="epic")
    cart = Bead.objects.create(
        repository=shop, title="cart", scope=["src/cart.py", "config/settings.py"]
    )
    pay = Bead.objects.create(
        repository=shop, title="pay", scope=["src/pay.py", "config/settings.py"]
    )
    docs = Bead.objects.create(repository=shop, title="docs", scope=["README.md"])
    for child in (cart, pay, docs):
        Dependency.objects.create(issue=child, depends_on=epic, type="parent-child")
    Dependency.objects.create(issue=docs, depends_on=cart)
    return {"epic": epic, "cart": cart, "pay": pay, "docs": docs}


def start(client, **fields):
    data = {
        "name": "Checkout",
        "max_agents_per_wave": "4",
        "epic": "",
        "label": "",
        "beads": "",
        "filter": "",
    }
    return client.post("/plans/new", data | fields)


def ids(plan):
    return plans.waves_of(plan)


def test_a_plan_started_from_an_epic_proposes_waves_and_reports_the_shared_file(logged_in, epic):
    response = start(logged_in, epic=epic["epic"].id)
    plan = Plan.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/plans/{plan.pk}/"
    cart, pay, docs = epic["cart"].id, epic["pay"].id, epic["docs"].id
    assert ids(plan) == [[cart], [pay, docs]]
    html = logged_in.get(f"/plans/{plan.pk}/").content.decode()
    shared = html.split('id="shared-files"')[1]
    assert "shop:config/settings.py" in shared and "hot (3 commits)" in shared
    assert "Change it first in an earlier wave" in shared
    assert "Serialize them" not in shared  # they are in different waves already
    assert 'class="arrow"' in html  # cart → docs


@pytest.mark.parametrize("how", ["label", "beads", "filter"])
def test_a_plan_starts_from_a_label_hand_picked_beads_or_a_filter(logged_in, shop, how):
    a = Bead.objects.create(repository=shop, title="a", scope=["src/cart.py"], labels=["q3"])
    b = Bead.objects.create(repository=shop, title="b", scope=["src/pay.py"], labels=["q3"])
    Bead.objects.create(repository=shop, title="c", scope=["README.md"])
    value = {"label": "q3", "beads": f"{a.id} {b.id}", "filter": "?label=q3&repo=shop"}[how]
    assert start(logged_in, **{how: value}).status_code == 302
    assert ids(Plan.objects.get()) == [[a.id, b.id]]


def test_an_empty_selection_is_refused_keeping_what_was_typed(logged_in, shop):
    response = start(logged_in, name="Typed name", label="nothing-has-it", beads="shop-nope")
    html = response.content.decode()
    assert response.status_code == 400 and "No such bead: shop-nope." in html
    assert 'value="Typed name"' in html and not Plan.objects.exists()


def edit(client, plan, op, version=None, **data):
    version = plan.version if version is None else version
    return client.post(f"/plans/{plan.pk}/edit/{op}", {"version": version, **data}, headers=HTMX)


def test_moving_a_bead_shows_the_overlap_at_once(logged_in, epic):
    start(logged_in, epic=epic["epic"].id)
    plan = Plan.objects.get()
    response = edit(logged_in, plan, "move", bead=epic["pay"].id, wave="1")
    html = response.content.decode()
    assert response.status_code == 200 and 'id="plan-board"' in html
    assert "<html" not in html  # the partial only
    assert ids(plan) == [[epic["cart"].id, epic["pay"].id], [epic["docs"].id]]
    assert 'class="clash"' in html and "config/settings.py" in html.split('id="plan-problems"')[1]
    assert "in the same wave" in html and "Serialize them" in html


def test_split_merge_agents_per_wave_and_serialize(logged_in, shop):
    beads = [
        Bead.objects.create(repository=shop, title=f"b{n}", scope=[f"docs/{n}.md"])
        for n in range(4)
    ]
    start(logged_in, beads=" ".join(b.id for b in beads))
    plan = Plan.objects.get()
    assert len(ids(plan)) == 1
    edit(logged_in, plan, "split", wave="1")
    plan.refresh_from_db()
    assert [len(w) for w in ids(plan)] == [2, 2]
    edit(logged_in, plan, "merge", wave="1")
    plan.refresh_from_db()
    assert [len(w) for w in ids(plan)] == [4]
    edit(logged_in, plan, "agents", max_agents_per_wave="2")
    plan.refresh_from_db()
    assert plan.max_agents_per_wave == 2
    html = logged_in.get(f"/plans/{plan.pk}/").content.decode()
    assert "Wave 1 has more beads than agents per wave" in html
    edit(logged_in, plan, "serialize", bead=[beads[0].id, beads[1].id])
    plan.refresh_from_db()
    assert ids(plan) == [[beads[0].id, beads[2].id, beads[3].id], [beads[1].id]]
    edit(logged_in, plan, "repropose")
    plan.refresh_from_db()
    assert [len(w) for w in ids(plan)] == [2, 2]


def test_the_second_of_two_editors_is_told_the_plan_changed(logged_in, epic):
    start(logged_in, epic=epic["epic"].id)
    plan = Plan.objects.get()
    seen = plan.version
    assert (
        edit(logged_in, plan, "move", version=seen, bead=epic["docs"].id, wave="3").status_code
        == 200
    )
    response = edit(logged_in, plan, "move", version=seen, bead=epic["pay"].id, wave="1")
    assert response.status_code == 409 and "The plan changed" in response.content.decode()
    assert epic["pay"].id not in ids(plan)[0]  # the first edit stands, the second is not applied
    assert epic["docs"].id in ids(plan)[2]


def test_the_earlier_bead_fix_files_a_bead_in_a_new_first_wave(logged_in, epic):
    start(logged_in, epic=epic["epic"].id)
    plan = Plan.objects.get()
    cart, pay = epic["cart"], epic["pay"]
    response = logged_in.post(
        f"/plans/{plan.pk}/prepare",
        {"version": plan.version, "path": "config/settings.py", "bead": [cart.id, pay.id]},
    )
    assert response.status_code == 302
    first = Bead.objects.get(scope=["config/settings.py"])
    assert first.status == "open" and ids(plan)[0] == [first.id]
    assert list(cart.blockers()) == [first] and list(pay.blockers()) == [first]


def test_a_viewer_sees_the_plan_but_may_not_edit_or_activate(client, viewer, epic):
    plan = plans.start(epic["epic"].repository.workspace, "p", [epic["cart"], epic["pay"]], 4)
    client.force_login(viewer)
    html = client.get(f"/plans/{plan.pk}/").content.decode()
    assert 'id="plan-board"' in html and 'id="activate"' not in html and "move</button>" not in html
    assert edit(client, plan, "split", wave="1").status_code == 403
    assert client.post(f"/plans/{plan.pk}/activate").status_code == 403
    assert client.post("/plans/new", {"name": "x"}).status_code == 403
    plan.refresh_from_db()
    assert plan.status == "draft"


def test_activation_refuses_a_plan_whose_beads_are_in_another_active_plan(logged_in, epic):
    workspace = epic["epic"].repository.workspace
    first = plans.start(workspace, "first", [epic["cart"]], 4)
    second = plans.start(workspace, "second", [epic["cart"], epic["pay"]], 4)
    logged_in.post(f"/plans/{first.pk}/activate")
    response = logged_in.post(f"/plans/{second.pk}/activate", follow=True)
    assert f"Already in another active plan: {epic['cart'].id}." in response.content.decode()
    second.refresh_from_db()
    assert second.status == "draft"


def activate(plan_id):
    try:
        return Plan.objects.get(pk=plan_id).activate()
    except ValidationError:
        return False


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_of_two_overlapping_plans_activated_at_once_exactly_one_wins(epic):
    workspace = epic["epic"].repository.workspace
    for _ in range(3):
        Plan.objects.update(status="done")
        a = plans.start(workspace, "a", [epic["cart"], epic["docs"]], 4)
        b = plans.start(workspace, "b", [epic["cart"], epic["pay"]], 4)
        results = race(activate, [(a.pk,), (b.pk,)])
        assert sorted(results) == [False, True]
        assert Plan.objects.filter(status="active").count() == 1


def test_a_draft_plan_cannot_be_edited_once_active(logged_in, epic):
    plan = plans.start(epic["epic"].repository.workspace, "p", [epic["cart"], epic["pay"]], 4)
    plan.activate()
    assert edit(logged_in, plan, "split", wave="1").status_code == 409


def test_the_live_page_shows_the_current_wave_what_holds_it_and_an_eta(logged_in, epic, agent):
    workspace = epic["epic"].repository.workspace
    cart, pay, docs = epic["cart"], epic["pay"], epic["docs"]
    plan = plans.start(workspace, "p", [cart, pay, docs], 4)
    plan.activate()
    earlier = Bead.objects.create(repository=cart.repository, title="old work")
    now = timezone.now()
    Session.objects.create(
        agent=agent,
        bead=earlier,
        status="succeeded",
        started_at=now - timedelta(seconds=120),
        ended_at=now,
    )
    cart.start(agent.name)
    Session.objects.create(
        agent=agent, bead=cart, status="running", started_at=now - timedelta(seconds=65)
    )
    html = logged_in.get(f"/plans/{plan.pk}/", headers=HTMX).content.decode()
    assert 'hx-trigger="every 2s"' in html and 'id="current-wave">1<' in html
    assert 'class="wave current" data-wave="1"' in html
    card = html.split(f'data-bead="{cart.id}"')[1].split('class="card')[0]
    assert agent.name in card and "1:0" in card
    assert "0:04:00" in html.split('id="eta"')[1][:40]  # two waves, one round each, 120 s median
    Bead.objects.filter(pk=cart.pk).update(status="blocked", last_failure="needs a key")
    html = logged_in.get(f"/plans/{plan.pk}/").content.decode()
    assert "blocked: needs a key" in html.split('id="holds"')[1]


@pytest.mark.django_db(transaction=True)
def test_the_plan_is_done_when_its_last_bead_lands(shop, agent, rq_redis):
    bead = Bead.objects.create(repository=shop, title="only", scope=["src/cart.py"])
    plan = plans.start(shop.workspace, "p", [bead], 4)
    plan.activate()
    base, patch = make_patch(shop, {"src/cart.py": "new cart\n"})
    submit(bead, agent, patch, base)
    run_lead(shop)
    plan.refresh_from_db()
    assert plan.status == "done"


@pytest.mark.parametrize(
    "op, data",
    [
        ("move", {"bead": "shop-nope", "wave": "1"}),
        ("move", {"wave": "0"}),
        ("move", {"wave": "9"}),
        ("split", {"wave": "x"}),
        ("merge", {"wave": "-1"}),
        ("explode", {"wave": "1"}),
    ],
)
def test_a_bad_edit_is_a_400_with_a_reason_and_changes_nothing(logged_in, epic, op, data):
    start(logged_in, epic=epic["epic"].id)
    plan = Plan.objects.get()
    before, version = ids(plan), plan.version
    if op == "move" and "bead" not in data:
        data = data | {"bead": epic["docs"].id}
    response = edit(logged_in, plan, op, **data)
    assert response.status_code == 400 and "Cannot do that" in response.content.decode()
    plan.refresh_from_db()
    assert ids(plan) == before and plan.version == version


def test_a_bead_outside_the_plan_cannot_be_moved_into_it_nor_prepared_for(logged_in, epic, shop):
    start(logged_in, epic=epic["epic"].id)
    plan = Plan.objects.get()
    stranger = Bead.objects.create(repository=shop, title="not planned", scope=["x"])
    assert edit(logged_in, plan, "move", bead=stranger.id, wave="1").status_code == 400
    logged_in.post(
        f"/plans/{plan.pk}/prepare",
        {"version": plan.version, "path": "x", "bead": [stranger.id, epic["cart"].id]},
    )
    assert stranger.id not in {b for wave in ids(plan) for b in wave}
    assert not Bead.objects.filter(scope=["x"]).exclude(pk=stranger.pk).exists()


def edit_at(plan_id, version, waves):
    try:
        plans.save_waves(Plan.objects.get(pk=plan_id), waves, version)
        return True
    except plans.PlanChanged:
        return False


@pytest.mark.django_db(transaction=True)
def test_of_two_edits_made_at_once_on_one_version_exactly_one_is_written(epic):
    cart, pay = epic["cart"].id, epic["pay"].id
    plan = plans.start(epic["epic"].repository.workspace, "p", [epic["cart"], epic["pay"]], 4)
    mine, theirs = [[cart, pay]], [[pay], [cart]]
    results = race(edit_at, [(plan.pk, plan.version, mine), (plan.pk, plan.version, theirs)])
    assert sorted(results) == [False, True]
    plan.refresh_from_db()
    assert plans.waves_of(plan) == (mine if results[0] else theirs)
    assert plan.version == 2  # made at 0, proposed at 1, one edit


def test_an_operator_makes_a_change_set_of_a_wave_that_spans_repositories(
    logged_in, client, viewer, make_repo
):
    api, web = make_repo("api"), make_repo("web")
    a, w, later = (Bead.objects.create(repository=r, title="v2") for r in (api, web, api))
    plan = plans.start(api.workspace, "v2", [a, w, later], 4)
    plans.save_waves(plan, [[a.id, w.id], [later.id]], plan.version)
    html = logged_in.get(f"/plans/{plan.pk}/").content.decode()
    assert f"/plans/{plan.pk}/waves/1/changeset" in html  # two repositories
    assert f"/plans/{plan.pk}/waves/2/changeset" not in html  # one

    response = logged_in.post(f"/plans/{plan.pk}/waves/1/changeset")
    changeset = ChangeSet.objects.get()
    assert response.status_code == 302 and response["Location"] == changeset.get_absolute_url()
    assert changeset.title == "v2, wave 1"
    assert sorted(changeset.members.values_list("bead_id", flat=True)) == sorted([a.id, w.id])
    assert AuditEntry.objects.get(action="changeset").detail == f"v2, wave 1: {a.id}, {w.id}"
    again = logged_in.post(f"/plans/{plan.pk}/waves/1/changeset", follow=True)
    assert "already in an open change set" in again.content.decode()
    one_repo = logged_in.post(f"/plans/{plan.pk}/waves/2/changeset", follow=True)
    assert "two or more repositories" in one_repo.content.decode()
    assert logged_in.post(f"/plans/{plan.pk}/waves/9/changeset").status_code == 404
    assert ChangeSet.objects.count() == 1

    client.force_login(viewer)
    assert "/waves/1/changeset" not in client.get(f"/plans/{plan.pk}/").content.decode()
    assert client.post(f"/plans/{plan.pk}/waves/1/changeset").status_code == 403


def test_what_holds_the_current_wave_is_what_the_hook_says_of_each_bead(epic, shop):
    """The wave's readiness is asked once per repository, not per bead: each
    bead's hold (or none) must still be the hook's own answer for that bead."""
    cart, pay, docs = epic["cart"], epic["pay"], epic["docs"]
    stuck = Bead.objects.create(repository=shop, title="stuck", scope=["src/stuck.py"])
    blocker = Bead.objects.create(repository=shop, title="not in the plan", scope=["a.py"])
    Dependency.objects.create(issue=stuck, depends_on=blocker)
    plan = plans.start(shop.workspace, "p", [cart, pay, docs, stuck], 4)
    plans.save_waves(plan, [[cart.id, pay.id, docs.id, stuck.id]], plan.version)
    plan.refresh_from_db()
    plan.activate()
    waves = [[Bead.objects.get(pk=b) for b in wave] for wave in plans.waves_of(plan)]
    expected = {}
    for bead in waves[0]:
        ready, why = hook.readiness(Bead.objects.get(pk=bead.pk))
        if not ready:
            expected[bead.id] = why
    assert expected and set(expected) != {b.id for b in waves[0]}  # some held, some not
    holds = plan_status.status_of(plan, waves).holds
    assert {h.bead.id: h.why for h in holds} == expected
