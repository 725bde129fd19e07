import re

import pytest
from django import forms
from django.contrib import admin
from django.db.models.signals import pre_save
from django.urls import reverse

from agents.models import Agent, GateResult, LogChunk, Session, Submission
from beads.admin import with_label
from beads.models import Bead, Dependency, Plan, Wave, WaveBead
from knowledge.models import Injection, Learning
from workspace.models import Repository, Workspace

S = Bead.Status
TOKEN = re.compile(r"crl_[A-Za-z0-9_-]{20,}")


def url(model, view, *args):
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)


def texts(response):
    return [str(m) for m in response.context["messages"]]


def form_data(response):
    """The POST a browser would send for the admin form in `response`, unchanged."""
    data = {}

    def add(form):
        for field in form:
            value = field.value()
            if isinstance(field.field, forms.BooleanField):
                if value:
                    data[field.html_name] = "on"
            elif value is not None:
                data[field.html_name] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.forms:
            add(form)
    return data


def act(client, model, action, objs):
    return client.post(
        url(model, "changelist"),
        {"action": action, "_selected_action": [o.pk for o in objs]},
        follow=True,
    )


@pytest.fixture
def world(repo, workspace):
    """One row of every model the admin shows."""
    bead = Bead.objects.create(repository=repo, title="Fix the login", labels=["ui"])
    other = Bead.objects.create(repository=repo, title="Write docs")
    Dependency.objects.create(issue=bead, depends_on=other)
    agent = Agent.objects.create(name="claude", preset="claude-code")
    session = Session.objects.create(agent=agent, bead=bead, status=Session.Status.SUBMITTED)
    LogChunk.objects.create(session=session, seq=0, text="hello\n")
    submission = Submission.objects.create(session=session, repository=repo, bead=bead)
    GateResult.objects.create(submission=submission, gate="scope", passed=True, detail="ok")
    learning = Learning.objects.create(workspace=workspace, title="Use uv", body="**uv** run")
    Injection.objects.create(learning=learning, session=session, rank=1, chars=10)
    plan = Plan.objects.create(workspace=workspace, name="Q3")
    wave = Wave.objects.create(plan=plan, number=1)
    WaveBead.objects.create(wave=wave, bead=bead)
    return locals()


@pytest.mark.slow
def test_every_admin_page_renders(admin_client, world):
    registered = set(admin.site._registry)
    assert {Workspace, Repository, Bead, Plan, Wave, Agent, Session, Submission, Learning} <= (
        registered
    )
    assert LogChunk not in registered
    for model, model_admin in admin.site._registry.items():
        assert admin_client.get(url(model, "changelist")).status_code == 200, model
        response = admin_client.get(url(model, "add"))
        can_add = model_admin.has_add_permission(response.wsgi_request)
        assert response.status_code == (200 if can_add else 403), model
        obj = model.objects.first() if model._meta.managed else None  # django_rq's has no table
        if obj is not None:
            assert admin_client.get(url(model, "change", obj.pk)).status_code == 200, model


def test_repository_is_added_by_addrepo_and_keeps_its_identity(admin_client, repo):
    response = admin_client.get(url(Repository, "changelist"))
    assert b"manage.py addrepo" in response.content
    assert admin_client.get(url(Repository, "add")).status_code == 403

    response = admin_client.get(url(Repository, "change", repo.pk))
    form = response.context["adminform"].form
    assert {"slug", "bead_prefix", "upstream"}.isdisjoint(form.fields)
    assert str(repo.canonical_path) in response.content.decode()

    data = form_data(response) | {"slug": "other", "bead_prefix": "zz", "max_agents": 7}
    assert admin_client.post(url(Repository, "change", repo.pk), data).status_code == 302
    repo.refresh_from_db()
    assert (repo.slug, repo.bead_prefix, repo.max_agents) == ("app", "app", 7)


@pytest.fixture
def labelled(make_repo):
    api, web = make_repo("api"), make_repo("web")

    def bead(repo, title, labels, **fields):
        return Bead.objects.create(repository=repo, title=title, labels=labels, **fields)

    return {
        "both": bead(api, "Login button", ["ui", "bug"], priority=0, issue_type="bug"),
        "ui": bead(web, "Dark mode", ["ui"], status=S.BLOCKED),
        "uix": bead(web, "UI experiments", ["uix", 'say "ui"'], issue_type="feature"),
        "none": bead(api, "Refactor the ui layer", [], status=S.CLOSED, priority=4),
        "api": api,
        "web": web,
    }


def listed(client, **params):
    response = client.get(url(Bead, "changelist"), params)
    assert response.status_code == 200
    return {bead.title for bead in response.context["cl"].result_list}


def test_bead_list_filters(admin_client, labelled):
    api = labelled["api"]
    assert listed(admin_client, repository__id__exact=api.pk) == {
        "Login button",
        "Refactor the ui layer",
    }
    assert listed(admin_client, status__exact="blocked") == {"Dark mode"}
    assert listed(admin_client, priority__exact=4) == {"Refactor the ui layer"}
    assert listed(admin_client, issue_type__exact="feature") == {"UI experiments"}
    assert listed(admin_client, label="ui") == {"Login button", "Dark mode"}
    assert listed(admin_client, label="bug") == {"Login button"}
    assert listed(admin_client, label='say "ui"') == {"UI experiments"}
    assert listed(admin_client, label="u") == set()
    assert listed(admin_client, label="ui", status__exact="open") == {"Login button"}

    response = admin_client.get(url(Bead, "changelist"))
    (spec,) = [s for s in response.context["cl"].filter_specs if s.title == "label"]
    assert [value for value, _ in spec.lookup_choices] == ["bug", 'say "ui"', "ui", "uix"]


def test_with_label_is_done_in_the_database(labelled):
    query = str(with_label(Bead.objects.all(), "ui").query)
    assert "IN (SELECT" in query or "@>" in query


def test_bead_search_by_id_and_title(admin_client, labelled):
    both = labelled["both"]
    assert listed(admin_client, q=both.id) == {"Login button"}
    assert listed(admin_client, q="dark") == {"Dark mode"}
    assert listed(admin_client, q="ui") == {"UI experiments", "Refactor the ui layer"}


@pytest.fixture
def one_of_each(repo):
    return {
        status: Bead.objects.create(repository=repo, title=f"{status} bead", status=status)
        for status in S.values
    }


@pytest.mark.parametrize(
    "action, done, moved, to",
    [
        ("close", "Closed", [S.PROPOSED, S.OPEN, S.BLOCKED, S.DEFERRED], S.CLOSED),
        ("reopen", "Reopened", [S.CLOSED, S.BLOCKED, S.DEFERRED], S.OPEN),
        ("defer", "Deferred", [S.OPEN, S.BLOCKED], S.DEFERRED),
        ("block", "Blocked", [S.OPEN, S.DEFERRED], S.BLOCKED),
    ],
)
def test_bead_status_actions(admin_client, one_of_each, action, done, moved, to):
    response = act(admin_client, Bead, action, one_of_each.values())
    assert response.status_code == 200
    for status, bead in one_of_each.items():
        bead.refresh_from_db()
        assert bead.status == (to if status in moved else status), status
    skipped = len(one_of_each) - len(moved)
    assert texts(response) == [
        f"{done} {len(moved)} beads.",
        f"Skipped {skipped} beads whose status does not allow this.",
    ]


def test_close_action_records_who_closed(admin_client, one_of_each):
    act(admin_client, Bead, "close", [one_of_each[S.OPEN]])
    bead = Bead.objects.get(pk=one_of_each[S.OPEN].pk)
    assert bead.close_reason == "closed by admin in the admin"
    assert bead.closed_at is not None


@pytest.mark.parametrize("priority", range(5))
def test_bead_priority_actions(admin_client, one_of_each, priority):
    chosen = [one_of_each[S.OPEN], one_of_each[S.REVIEW]]
    response = act(admin_client, Bead, f"set_priority_{priority}", chosen)
    assert texts(response) == [f"Set priority P{priority} on 2 beads."]
    priorities = dict(Bead.objects.values_list("status", "priority"))
    assert priorities == {s: priority if s in (S.OPEN, S.REVIEW) else 2 for s in S.values}


def test_inline_dependency_cycle_is_a_form_error(admin_client, repo):
    a = Bead.objects.create(repository=repo, title="A")
    b = Bead.objects.create(repository=repo, title="B")
    Dependency.objects.create(issue=b, depends_on=a)

    data = form_data(admin_client.get(url(Bead, "change", a.pk)))
    data |= {"title": "A renamed", "dependencies-0-depends_on": b.pk}
    response = admin_client.post(url(Bead, "change", a.pk), data)

    assert response.status_code == 200
    (formset,) = [i.formset for i in response.context["inline_admin_formsets"]]
    assert "cycle of blocking dependencies" in str(formset.errors)
    assert Dependency.objects.count() == 1
    assert Bead.objects.get(pk=a.pk).title == "A"


def test_inline_dependency_is_saved(admin_client, repo):
    a = Bead.objects.create(repository=repo, title="A")
    b = Bead.objects.create(repository=repo, title="B")
    data = form_data(admin_client.get(url(Bead, "change", a.pk)))
    data["dependencies-0-depends_on"] = b.pk
    assert admin_client.post(url(Bead, "change", a.pk), data).status_code == 302
    assert list(a.blockers()) == [b]


def test_add_bead_generates_id_with_prefix(admin_client, repo):
    blocker = Bead.objects.create(repository=repo, title="First")
    data = form_data(admin_client.get(url(Bead, "add")))
    data |= {
        "repository": repo.pk,
        "title": "Second",
        "labels": '["ui"]',
        "dependencies-0-depends_on": blocker.pk,
    }
    response = admin_client.post(url(Bead, "add"), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    bead = Bead.objects.get(title="Second")
    assert bead.id.startswith(f"{repo.bead_prefix}-")
    assert (bead.status, bead.labels) == (S.OPEN, ["ui"])
    assert list(bead.blockers()) == [blocker]


def test_add_bead_refuses_labels_that_are_not_strings(admin_client, repo):
    data = form_data(admin_client.get(url(Bead, "add")))
    data |= {"repository": repo.pk, "title": "Bad", "labels": "[1, 2]"}
    response = admin_client.post(url(Bead, "add"), data)
    assert response.status_code == 200
    assert "labels" in response.context["adminform"].form.errors
    assert not Bead.objects.exists()


def test_bead_edit_keeps_a_concurrent_claim(admin_client, repo):
    bead = Bead.objects.create(repository=repo, title="Old")
    data = form_data(admin_client.get(url(Bead, "change", bead.pk))) | {"title": "New"}

    def worker_claims(sender, instance, **kwargs):
        Bead.objects.get(pk=instance.pk).start("agent-1")

    pre_save.connect(worker_claims, sender=Bead)
    try:
        assert admin_client.post(url(Bead, "change", bead.pk), data).status_code == 302
    finally:
        pre_save.disconnect(worker_claims, sender=Bead)
    bead.refresh_from_db()
    assert (bead.title, bead.status, bead.assignee) == ("New", S.IN_PROGRESS, "agent-1")


def test_create_agent_shows_the_token_once(admin_client):
    data = form_data(admin_client.get(url(Agent, "add")))
    assert not any("token" in name for name in data)
    data |= {"name": "codex-1", "preset": "codex", "command": "[]", "env": '{"A": "1"}'}
    response = admin_client.post(url(Agent, "add"), data, follow=True)

    tokens = TOKEN.findall(response.content.decode())
    assert len(tokens) == 1
    agent = Agent.objects.get(name="codex-1")
    assert Agent.objects.authenticate(tokens[0]) == agent
    assert agent.token_hint == tokens[0][:8]
    assert agent.command[0] == "codex"

    for page in (url(Agent, "changelist"), url(Agent, "change", agent.pk)):
        assert tokens[0] not in admin_client.get(page).content.decode()


def test_rotate_token_action(admin_client):
    agents = [Agent.objects.create(name=name) for name in ("one", "two")]
    old = {agent.name: agent.plain_token for agent in agents}

    response = act(admin_client, Agent, "rotate_token", agents)

    new = {}
    for text in texts(response):
        name = re.match(r"New token for (\S+):", text).group(1)
        (new[name],) = TOKEN.findall(text)
    assert set(new) == {"one", "two"}
    for agent in agents:
        assert Agent.objects.authenticate(old[agent.name]) is None
        assert Agent.objects.authenticate(new[agent.name]) == agent


def test_sessions_and_submissions_are_read_only(admin_client, world):
    session, submission = world["session"], world["submission"]
    response = admin_client.get(url(Session, "change", session.pk))
    assert response.status_code == 200
    assert response.context["adminform"].form.fields == {}
    response = admin_client.post(url(Session, "change", session.pk), {"status": "failed"})
    assert response.status_code == 403
    assert Session.objects.get(pk=session.pk).status == Session.Status.SUBMITTED

    response = admin_client.get(url(Submission, "change", submission.pk))
    assert response.status_code == 200
    assert b"scope" in response.content and b"ok" in response.content


def test_learning_actions(admin_client, workspace):
    learnings = {
        status: Learning.objects.create(workspace=workspace, title=status, body="x", status=status)
        for status in Learning.Status.values
    }
    response = act(admin_client, Learning, "approve", learnings.values())
    assert texts(response) == [
        "Approved 1 learning.",
        "Skipped 2 learnings whose status does not allow this.",
    ]
    assert Learning.objects.get(title="candidate").status == "approved"

    response = act(admin_client, Learning, "retire", learnings.values())
    assert texts(response) == [
        "Retired 2 learnings.",
        "Skipped 1 learning whose status does not allow this.",
    ]
    assert set(Learning.objects.values_list("status", flat=True)) == {"retired"}


def test_learning_filters_and_search(admin_client, workspace, repo):
    Learning.objects.create(workspace=workspace, repository=repo, title="Git", body="rebase")
    Learning.objects.create(workspace=workspace, title="Tests", body="pytest -q", status="approved")

    def titles(**params):
        response = admin_client.get(url(Learning, "changelist"), params)
        return {learning.title for learning in response.context["cl"].result_list}

    assert titles(status__exact="approved") == {"Tests"}
    assert titles(repository__id__exact=repo.pk) == {"Git"}
    assert titles(q="pytest") == {"Tests"}


def plan_with(workspace, name, beads, status=Plan.Status.DRAFT):
    plan = Plan.objects.create(workspace=workspace, name=name, status=status)
    wave = Wave.objects.create(plan=plan, number=1)
    for bead in beads:
        WaveBead.objects.create(wave=wave, bead=bead)
    return plan


def test_plan_activate_refused_when_a_bead_is_in_another_active_plan(admin_client, repo):
    workspace = repo.workspace
    x = Bead.objects.create(repository=repo, title="X")
    y = Bead.objects.create(repository=repo, title="Y")
    z = Bead.objects.create(repository=repo, title="Z")
    plan_with(workspace, "running", [x], status=Plan.Status.ACTIVE)
    clash = plan_with(workspace, "clash", [x, y])
    free = plan_with(workspace, "free", [z])

    response = act(admin_client, Plan, "activate", [clash, free])

    assert response.status_code == 200
    assert texts(response) == [
        f"clash: Already in another active plan: {x.id}.",
        "Activated 1 plan.",
        "Skipped 1 plan whose status does not allow this.",
    ]
    clash.refresh_from_db()
    free.refresh_from_db()
    assert (clash.status, free.status) == (Plan.Status.DRAFT, Plan.Status.ACTIVE)

    response = act(admin_client, Plan, "finish", Plan.objects.all())
    assert texts(response) == [
        "Finished 2 plans.",
        "Skipped 1 plan whose status does not allow this.",
    ]
    assert Plan.objects.get(pk=clash.pk).status == Plan.Status.DRAFT


def test_wave_inline_adds_beads_and_refuses_one_twice_in_a_plan(admin_client, repo):
    x = Bead.objects.create(repository=repo, title="X")
    y = Bead.objects.create(repository=repo, title="Y")
    plan = plan_with(repo.workspace, "plan", [x])
    second = Wave.objects.create(plan=plan, number=2)
    change = url(Wave, "change", second.pk)

    data = form_data(admin_client.get(change)) | {"wavebead_set-0-bead": x.pk}
    response = admin_client.post(change, data)
    assert response.status_code == 200
    assert "already in another wave of this plan" in str(
        response.context["inline_admin_formsets"][0].formset.errors
    )
    assert not second.beads.exists()

    twice = data | {
        "wavebead_set-TOTAL_FORMS": 2,
        "wavebead_set-0-bead": y.pk,
        "wavebead_set-1-bead": y.pk,
        "wavebead_set-1-wave": second.pk,
    }
    response = admin_client.post(change, twice)
    assert response.status_code == 200
    assert "listed twice" in str(response.context["inline_admin_formsets"][0].formset.errors)
    assert not second.beads.exists()

    data["wavebead_set-0-bead"] = y.pk
    assert admin_client.post(change, data).status_code == 302
    assert list(second.beads.all()) == [y]
    assert WaveBead.objects.get(bead=y).plan == plan


def test_wave_inline_refuses_a_bead_of_another_active_plan(admin_client, repo):
    x = Bead.objects.create(repository=repo, title="X")
    plan_with(repo.workspace, "one", [x], status=Plan.Status.ACTIVE)
    two = plan_with(repo.workspace, "two", [], status=Plan.Status.ACTIVE)
    wave = two.waves.get()
    data = form_data(admin_client.get(url(Wave, "change", wave.pk)))
    data["wavebead_set-0-bead"] = x.pk
    response = admin_client.post(url(Wave, "change", wave.pk), data)
    assert response.status_code == 200
    assert "another active plan" in str(response.context["inline_admin_formsets"][0].formset.errors)
    assert not wave.beads.exists()


def test_add_wave_with_beads(admin_client, repo):
    x = Bead.objects.create(repository=repo, title="X")
    plan = plan_with(repo.workspace, "plan", [])
    data = form_data(admin_client.get(url(Wave, "add")))
    data |= {"plan": plan.pk, "number": 2, "wavebead_set-0-bead": x.pk}
    assert admin_client.post(url(Wave, "add"), data).status_code == 302
    wave = plan.waves.get(number=2)
    assert [(wb.bead, wb.plan) for wb in WaveBead.objects.filter(wave=wave)] == [(x, plan)]
