"""Markdown on the pages that show it (a bead's description, design,
acceptance criteria and notes, its comments, a learning, a handoff), with
nothing hostile surviving; failures as their headline, the output folded."""

import json
import re
from html import unescape
from pathlib import Path

import pytest

from agents.models import Agent
from beads.models import Bead, Comment
from knowledge.models import Learning
from tests.factories import make_patch, run_lead, submit, unsafe_markup
from workspace.models import Workspace

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = (ROOT / "tests" / "workspace" / "data" / "hostile.md").read_text()
MARKER = "corral-xss"
# The payload's script as Markdown shows it: text to read (twice in each place it renders).
ESCAPED = "&lt;script&gt;alert('corral-xss')&lt;/script&gt;"
FAILING_TEST = (
    "import unittest\n\n\nclass SumTests(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(1 + 2, 4)\n"
)


def html_of(client, url):
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def test_hostile_markdown_is_neutralised_everywhere_markdown_renders(logged_in, repo):
    bead = Bead.objects.create(
        repository=repo,
        title="Hostile",
        description=HOSTILE,
        design=HOSTILE,
        acceptance_criteria=HOSTILE,
        notes=HOSTILE,
    )
    Comment.objects.create(bead=bead, agent="mallory", text=HOSTILE)
    learning = Learning.objects.create(workspace=Workspace.default(), title="Hostile", body=HOSTILE)
    agent = Agent.objects.create(name="mallory")
    base, patch = make_patch(repo, {"a.txt": "a\n"})
    submission = submit(bead, agent, patch, base, summary=HOSTILE)
    pages = {
        "bead": (f"/beads/{bead.id}/", 5),  # four fields and a comment
        "learning": (learning.get_absolute_url(), 1),
        "submission": (f"/submissions/{submission.pk}/", 1),  # the handoff
    }
    for name, (url, places) in pages.items():
        html = html_of(logged_in, url)
        assert unsafe_markup(html, MARKER) == [], name
        assert html.count(ESCAPED) == 2 * places, name


def test_a_demo_beads_code_keeps_its_indentation_on_its_page(logged_in, repo):
    demo = [json.loads(line) for line in (ROOT / "demo" / "beads.jsonl").open()]
    description = next(b["description"] for b in demo if b["id"] == "api-ohlv")
    bead = Bead.objects.create(repository=repo, title="JSON errors", description=description)
    html = html_of(logged_in, f"/beads/{bead.id}/")
    blocks = re.findall(r'<pre class="highlight"><code>(.*?)</code></pre>', html, re.DOTALL)
    code = "".join(unescape(re.sub(r"<[^>]+>", "", block)) for block in blocks)
    assert "    def setUp(self):\n        items_app.store = ItemStore()\n" in code


def refused_by_unittest(repo, agent):
    """A submission the check gate refused with unittest's real output."""
    repo.check_command = "python3 -m unittest"
    repo.save()
    bead = Bead.objects.create(repository=repo, title="Add it up", scope=["**"])
    base, patch = make_patch(repo, {"test_sum.py": FAILING_TEST})
    submission = submit(bead, agent, patch, base)
    run_lead(repo)
    submission.refresh_from_db()
    bead.refresh_from_db()
    assert submission.status == "rejected" and "FAILED (failures=1)" in bead.last_failure
    return bead, submission


@pytest.mark.django_db(transaction=True)  # the lead's job is enqueued on commit
def test_a_failure_shows_its_headline_with_the_whole_output_folded_beneath(
    logged_in, repo, agent, rq_redis
):
    bead, submission = refused_by_unittest(repo, agent)
    folded = '<details class="output failure"><summary>AssertionError: 3 != 4</summary>'
    page = html_of(logged_in, f"/beads/{bead.id}/")
    last = page.split('id="last-failure">')[1].split("</dd>")[0]
    assert last.startswith(folded) and "FAILED (failures=1)" in last
    page = html_of(logged_in, f"/submissions/{submission.pk}/")
    check = page.split('<tr data-gate="check">')[1].split("</tr>")[0]
    assert folded in check and "Ran 1 test" in check
    reason = page.split('<dd class="reason">')[1].split("</dd>")[0]
    assert reason.startswith(folded)
    page = html_of(logged_in, f"/repos/{repo.slug}/lead/")
    cell = page.split('<td class="reason">')[1].split("</td>")[0]
    assert cell == "AssertionError: 3 != 4"  # a table shows the headline; its row links on


@pytest.mark.django_db(transaction=True)
def test_a_blocked_beads_decision_on_the_overview_is_its_headline(logged_in, repo, agent, rq_redis):
    bead, _ = refused_by_unittest(repo, agent)
    assert bead.block(bead.last_failure)
    page = html_of(logged_in, "/")
    decision = page.split('data-kind="blocked">')[1].split("</p>")[0]
    # The gate that refused it and the line of its output that says most (decisions.py).
    assert f"Unblock {bead.id}: check gate: Exit code 1. AssertionError: 3 != 4</a>" in decision
    assert "Traceback" not in decision
