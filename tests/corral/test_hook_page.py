"""The hook page: ready beads in hook order per repository, live claims with their leases."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Agent, Session
from beads import hook
from beads.models import Bead, Dependency, Plan, Wave, WaveBead
from corral.pages.overview import READY_SHOWN
from workspace.models import Repository, Workspace

pytestmark = pytest.mark.django_db


def add_repo(name, **fields):
    return Repository.objects.create(
        workspace=Workspace.default(), name=name, slug=name, bead_prefix=name, **fields
    )


def bead(repo, title, **fields):
    return Bead.objects.create(repository=repo, title=title, **fields)


def claim(agent, item, lease_seconds, status=Session.Status.CLAIMED):
    item.start(agent.name)
    return Session.objects.create(
        agent=agent,
        bead=item,
        status=status,
        lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds),
    )


def hook_page(client, **headers):
    response = client.get("/hook/", headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def section(page, repo):
    """The part of the page about one repository."""
    start = page.index(f'data-repo="{repo.slug}"')
    end = page.find('<section class="hook-repo"', start)
    return page[start : end if end != -1 else None]


def shown_ids(html):
    return re.findall(r'<tr class="bead" data-bead="([^"]+)"', html)


def test_the_hook_needs_a_login(client):
    response = client.get("/hook/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_ready_beads_in_hook_order_per_repository_without_blocked_ones(logged_in):
    api, web = add_repo("api"), add_repo("web")
    later = bead(api, "Later chore", priority=3, scope=["docs/**"])
    urgent = bead(api, "Urgent fix", priority=0)
    usual = bead(api, "Usual work", priority=2)
    waiting = bead(api, "Waits for web", priority=0)
    upstream = bead(web, "Export the parser", priority=1)
    Dependency.objects.create(issue=waiting, depends_on=upstream, type=Dependency.Type.BLOCKS)
    bead(api, "Done already", status=Bead.Status.CLOSED)
    bead(api, "An epic", issue_type=Bead.Type.EPIC)

    page = hook_page(logged_in)
    api_part, web_part = section(page, api), section(page, web)
    assert shown_ids(api_part) == [urgent.id, usual.id, later.id]
    assert shown_ids(api_part) == [b.id for b in hook.ready(api)]
    assert waiting.id not in page and "Done already" not in page and "An epic" not in page
    assert shown_ids(web_part) == [upstream.id]
    assert 'data-ready="3">3 ready' in api_part
    assert f'<a href="/beads/{urgent.id}/"><code>{urgent.id}</code></a>' in api_part
    assert 'class="priority p0">P0' in api_part and 'class="priority p3">P3' in api_part
    assert "<code>docs/**</code>" in api_part

    upstream.close()
    page = hook_page(logged_in)
    assert shown_ids(section(page, api)) == [urgent.id, waiting.id, usual.id, later.id]
    assert "Nothing ready." in section(page, web)


def test_only_the_first_few_are_listed_with_the_count_of_all(logged_in):
    repo = add_repo("big")
    made = [bead(repo, f"task {i}", priority=i % 5) for i in range(14)]
    part = section(hook_page(logged_in), repo)
    expected = [b.id for b in hook.ready(repo)[:READY_SHOWN]]
    assert shown_ids(part) == expected
    assert set(expected) < {b.id for b in made}
    assert 'data-ready="14">14 ready' in part
    assert f"The first {READY_SHOWN} of 14 ready beads." in part


def test_planned_waves_come_first(logged_in, workspace):
    repo = add_repo("app")
    low, top, mid = (bead(repo, f"Unplanned P{p}", priority=p) for p in (3, 0, 1))
    first, second = bead(repo, "Wave one", priority=4), bead(repo, "Wave two", priority=0)
    plan = Plan.objects.create(workspace=workspace, name="p", status=Plan.Status.ACTIVE)
    for number, item in [(1, first), (2, second)]:
        WaveBead.objects.create(wave=Wave.objects.create(plan=plan, number=number), bead=item)
    shown = shown_ids(hook_page(logged_in))
    assert shown == [first.id, top.id, mid.id, low.id]
    assert shown == [b.id for b in hook.ready(repo)]


def test_a_claim_shows_its_agent_and_lease_countdown(logged_in, agent):
    repo = add_repo("app")
    held = bead(repo, "Held work")
    waiting = bead(repo, "Still ready")
    session = claim(agent, held, 90)
    part = section(hook_page(logged_in), repo)
    assert shown_ids(part) == [waiting.id]
    row = part[part.index(f'data-session="{session.pk}"') :]
    assert f'<td class="agent"><a href="/sessions/{session.pk}/">{agent.name}</a></td>' in row
    assert f"<code>{held.id}</code></a> Held work" in row
    assert f'href="/beads/{held.id}/"' in row
    assert re.search(r'data-seconds="8\d"[^>]*>1:2\d</span>', row)
    assert "Claimed" in row


def test_an_expired_lease_says_so_and_ended_sessions_are_not_shown(logged_in, agent):
    repo = add_repo("app")
    late = claim(agent, bead(repo, "Late"), -5, status=Session.Status.RUNNING)
    done = claim(Agent.objects.create(name="agent-2"), bead(repo, "Done"), 60)
    done.end(Session.Status.FAILED, "broke")
    part = section(hook_page(logged_in), repo)
    row = part[part.index(f'data-session="{late.pk}"') :]
    assert '<span class="lease expired" data-seconds="0"' in row and ">expired</span>" in row
    assert "Running" in row
    assert f'data-session="{done.pk}"' not in part and "agent-2" not in part


def test_a_repository_at_max_agents_says_so(logged_in, agent):
    full, other = add_repo("full", max_agents=1), add_repo("other")
    claim(agent, bead(full, "Busy"), 60)
    bead(full, "Would be ready")
    ready_elsewhere = bead(other, "Ready here")
    page = hook_page(logged_in)
    part = section(page, full)
    assert "At max_agents (1 in progress)" in part
    assert shown_ids(part) == [] and "Would be ready" not in part
    assert shown_ids(section(page, other)) == [ready_elsewhere.id]


def test_inactive_repositories_are_left_out(logged_in):
    bead(add_repo("asleep", active=False), "Not for now")
    page = hook_page(logged_in)
    assert 'data-repo="asleep"' not in page
    assert "No active repositories" in page


def test_the_page_polls_and_htmx_gets_only_the_partial(logged_in):
    item = bead(add_repo("app"), "Ready one")
    page = hook_page(logged_in)
    assert "<html" in page and 'href="/hook/"' in page  # the nav links to the hook
    poller = re.search(r'<div id="hook"[^>]*>', page).group(0)
    assert 'hx-get="/hook/"' in poller
    assert 'hx-trigger="every 3s"' in poller and 'hx-swap="outerHTML"' in poller

    partial = hook_page(logged_in, HX_Request="true")
    assert "<html" not in partial and "<nav" not in partial and "<h1" not in partial
    assert partial.lstrip().startswith('<div id="hook"')
    assert shown_ids(partial) == [item.id]


def fill(n, agent):
    """n repositories, each with ready, blocked and claimed beads."""
    for i in range(n):
        repo = add_repo(f"r{i}")
        blocker = bead(repo, "first")
        Dependency.objects.create(issue=bead(repo, "blocked"), depends_on=blocker)
        for j in range(3):
            bead(repo, f"ready {j}", priority=j)
        claim(agent, bead(repo, "held"), 60 * (i + 1))
        claim(agent, bead(repo, "late"), -10, status=Session.Status.RUNNING)


def test_query_count_does_not_grow_with_repositories_or_sessions(logged_in, agent):
    def queries():
        with CaptureQueriesContext(connection) as captured:
            page = hook_page(logged_in)
        return len(captured), page

    fill(3, agent)
    with_3, page = queries()
    assert page.count('class="claim"') == 6 and page.count('class="bead"') == 12
    Repository.objects.all().delete()
    fill(12, agent)
    with_12, page = queries()
    assert page.count('class="claim"') == 24 and page.count('class="bead"') == 48
    print(f"hook page queries: {with_3} with 3 repositories, {with_12} with 12")
    assert with_3 == with_12
