"""A reviewer's line comments reach the agent: a real session of the demo
agent is sent back with "rename x to subtotal" on a line, the next session's
context pack carries the comment, the agent changes that line, and the next
submission marks the comment changed."""

import pytest
from django.contrib.auth import get_user_model

from agents.jobs.runner import run_session
from agents.models import Agent
from agents.moves import lifecycle, outcomes
from agents.reports import diffs
from knowledge import inject
from tests.factories import git, run_bead, run_lead
from workspace import roles

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
APP = "def total(items):\n    x = 0\n    for item in items:\n        x += item\n    return x\n"


def test_the_demo_agent_changes_the_commented_line_in_its_next_session(make_repo, rq_redis):
    repo = make_repo("shop", review_mode="human")
    reviewer = get_user_model().objects.create_user("rita", password="correct horse battery")
    roles.assign(reviewer, roles.OPERATOR)
    agent = Agent.objects.create(name="demo", preset="demo")
    description = f"Add a total.\n\n```corral write src/total.py\n{APP}```\n"
    first, bead = run_bead(repo, agent, description=description)
    assert first.status == "submitted", first.error
    run_lead(repo)
    sub = first.submission
    sub.refresh_from_db()
    assert sub.status == "awaiting_review", sub.reason
    line_text = diffs.parse(first.patch).files[0].line_text("new", 2)
    assert line_text == "    x = 0"
    outcomes.comment(sub, reviewer, "src/total.py", 2, "new", line_text, "rename x to subtotal")
    assert outcomes.request_changes(sub, reviewer)

    bead.refresh_from_db()
    second = lifecycle.claim(agent, bead=bead)
    second.queue()
    run_session(second.pk)
    second.refresh_from_db()
    assert second.status == "submitted", second.error
    pack = second.context.split(inject.REVIEW_HEADING, 1)[1]
    assert pack.startswith("- `src/total.py` line 2, rita: rename x to subtotal")
    assert "review: renamed x to subtotal on src/total.py line 2" in second.summary
    assert "+    subtotal = 0" in second.patch and "+        x += item" in second.patch

    run_lead(repo)
    again = second.submission
    again.refresh_from_db()
    assert again.status == "awaiting_review", again.reason
    [followed] = diffs.followed_for(again)
    assert (followed.comment.line, followed.outcome) == (2, "changed")
    assert outcomes.review(again, reviewer, approve=True)
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed"
    landed = git(repo.canonical_path, "show", f"{bead.commit_sha}:src/total.py")
    assert landed.splitlines()[1] == "    subtotal = 0"
