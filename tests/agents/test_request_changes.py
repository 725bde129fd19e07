"""Comments on a submission's lines and "request changes": who may comment
(reviewers, never an agent, not the bead's filer under review_by_other), the
move (the bead back on the hook, raced against an approval), and the
comments reaching the next attempt: its context pack, the API's bead answer,
`corral show` and the MCP `show` tool. The next submission says which
commented lines it changed."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from agents.models import Agent, ReviewComment, Session, Submission
from agents.moves import lifecycle, outcomes
from agents.reports import diffs
from beads.models import Bead
from knowledge import inject
from tests.factories import land, make_patch, run_lead, submit
from tests.races import race
from workspace import roles

pytestmark = pytest.mark.django_db(transaction=True)
APP = "def total(items):\n    x = 0\n    for item in items:\n        x += item\n    return x\n"
RENAMED = APP.replace("x", "subtotal")


@pytest.fixture
def human_repo(make_repo):
    return make_repo("shop", review_mode="human")


def person(name, role=roles.OPERATOR):
    user = get_user_model().objects.create_user(name, password="correct horse battery")
    roles.assign(user, role)
    return user


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


def awaiting(repo, agent, files=None):
    bead, sub = land(repo, agent, files or {"src/total.py": APP}, scope=["src/**"])
    run_lead(repo)
    sub.refresh_from_db()
    assert sub.status == "awaiting_review", sub.reason
    return bead, sub


def comment_on(client, sub, line, text, side="new", file=0):
    return client.post(
        f"/submissions/{sub.pk}/comment",
        {"file": file, "side": side, "line": line, "text": text},
        HTTP_HX_REQUEST="true",
    )


def test_a_reviewer_comments_on_a_line_and_it_is_listed_under_it(
    human_repo, agent, logged_in, user, rq_redis
):
    _, sub = awaiting(human_repo, agent)
    form = logged_in.get(f"/submissions/{sub.pk}/comment?file=0&side=new&line=2")
    assert form.status_code == 200 and 'name="text"' in form.content.decode()
    response = comment_on(logged_in, sub, 2, "rename x to subtotal")
    assert response.status_code == 200
    assert "rename x to subtotal" in response.content.decode()
    made = ReviewComment.objects.get(submission=sub)
    assert (made.path, made.line, made.side, made.author) == ("src/total.py", 2, "new", user)
    assert made.line_text == "    x = 0"
    page = logged_in.get(sub.get_absolute_url()).content.decode()
    row = page.split('<td class="ln"></td><td class="ln">2</td>', 1)[1]
    assert row.index("rename x to subtotal") < row.index('<td class="ln">3</td>')
    assert 'id="request-changes"' in page


@pytest.mark.parametrize(
    "data, says",
    [
        ({"file": 0, "side": "new", "line": 99}, "shows no new line 99"),
        ({"file": 3, "side": "new", "line": 2}, "no file 3"),
        ({"file": 0, "side": "left", "line": 2}, "side: old or new"),
        ({"file": 0, "side": "new", "line": "two"}, "whole number"),
    ],
)
def test_a_comment_on_a_line_the_diff_does_not_show_is_a_400(
    human_repo, agent, logged_in, rq_redis, data, says
):
    _, sub = awaiting(human_repo, agent)
    response = logged_in.post(f"/submissions/{sub.pk}/comment", {**data, "text": "hm"})
    assert response.status_code == 400 and says in response.content.decode()
    assert not ReviewComment.objects.exists()


def test_an_empty_comment_is_refused_with_a_message(human_repo, agent, logged_in, rq_redis):
    _, sub = awaiting(human_repo, agent)
    response = comment_on(logged_in, sub, 2, "   ")
    assert response.status_code == 400 and "Write a comment" in response.content.decode()
    assert not ReviewComment.objects.exists()


def test_a_viewer_may_not_comment_nor_request_changes(human_repo, agent, viewer, rq_redis):
    _, sub = awaiting(human_repo, agent)
    client = client_for(viewer)
    assert 'class="add-comment"' not in client.get(sub.get_absolute_url()).content.decode()
    assert client.get(f"/submissions/{sub.pk}/comment?file=0&side=new&line=2").status_code == 403
    assert comment_on(client, sub, 2, "no").status_code == 403
    assert client.post(f"/submissions/{sub.pk}/request-changes", {"note": "x"}).status_code == 403
    sub.refresh_from_db()
    assert sub.status == "awaiting_review" and not ReviewComment.objects.exists()


def test_an_agent_token_cannot_reach_the_comment_pages(human_repo, agent, rq_redis):
    _, sub = awaiting(human_repo, agent)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {agent.plain_token}"}
    response = Client().post(
        f"/submissions/{sub.pk}/comment",
        {"file": 0, "side": "new", "line": 2, "text": "me"},
        **bearer,
    )
    assert response.status_code in (302, 403)
    assert not ReviewComment.objects.exists()


def test_the_beads_filer_may_not_comment_or_request_changes_under_review_by_other(
    human_repo, agent, rq_redis
):
    human_repo.review_by_other = True
    human_repo.save()
    filer = person("fran")
    bead, sub = awaiting(human_repo, agent)
    Bead.objects.filter(pk=bead.pk).update(filed_by=filer)
    client = client_for(filer)
    assert 'class="add-comment"' not in client.get(sub.get_absolute_url()).content.decode()
    response = comment_on(client, sub, 2, "mine")
    assert response.status_code == 403 and "another person" in response.content.decode()
    sub.refresh_from_db()
    with pytest.raises(outcomes.ReviewRefused):
        outcomes.request_changes(sub, filer, "redo it")
    other = person("otto")
    assert comment_on(client_for(other), sub, 2, "fine by me").status_code == 200


def test_request_changes_sends_the_bead_back_with_the_comments(
    human_repo, agent, logged_in, user, rq_redis
):
    bead, sub = awaiting(human_repo, agent)
    comment_on(logged_in, sub, 2, "rename x to subtotal")
    response = logged_in.post(
        f"/submissions/{sub.pk}/request-changes", {"note": "Names matter."}, follow=True
    )
    assert "back on the hook with 1 comment(s)" in response.content.decode()
    sub.refresh_from_db()
    bead.refresh_from_db()
    assert sub.status == "changes_requested" and sub.reviewed_by == user
    assert "Changes requested by alice: Names matter." in sub.reason
    assert "src/total.py line 2: rename x to subtotal" in sub.reason
    assert bead.status == "open" and bead.attempts == 1 and bead.last_failure == sub.reason
    assert Session.objects.get(pk=sub.session_id).status == "failed"
    assert [c.text for c in ReviewComment.pending_for(bead.pk)] == ["rename x to subtotal"]
    again = logged_in.post(f"/submissions/{sub.pk}/request-changes", {"note": "x"}, follow=True)
    assert "no longer waiting" in again.content.decode()
    assert comment_on(logged_in, sub, 3, "late").status_code == 409


def test_request_changes_with_nothing_to_say_is_refused(human_repo, agent, logged_in, rq_redis):
    _, sub = awaiting(human_repo, agent)
    response = logged_in.post(f"/submissions/{sub.pk}/request-changes", {"note": ""}, follow=True)
    assert "Say what to change" in response.content.decode()
    sub.refresh_from_db()
    assert sub.status == "awaiting_review"


def test_an_approval_after_the_request_settles_the_comments(human_repo, agent, user, rq_redis):
    bead, sub = awaiting(human_repo, agent)
    outcomes.comment(sub, user, "src/total.py", 2, "new", "    x = 0", "rename x to y")
    assert outcomes.request_changes(sub, user)
    assert ReviewComment.pending_for(bead.pk)
    bead.refresh_from_db()
    base, patch = make_patch(human_repo, {"src/total.py": RENAMED})
    second = submit(bead, agent, patch, base)
    run_lead(human_repo)
    second.refresh_from_db()
    assert outcomes.review(second, person("bob"), approve=True)
    assert ReviewComment.pending_for(bead.pk) == []


def decide(submission_id, username, approve):
    sub = Submission.objects.select_related("session", "bead", "repository").get(pk=submission_id)
    reviewer = get_user_model().objects.get(username=username)
    if approve:
        return outcomes.review(sub, reviewer, approve=True)
    return outcomes.request_changes(sub, reviewer, "not like this")


def test_two_reviewers_approving_and_requesting_changes_at_once_one_wins(
    human_repo, agent, user, rq_redis
):
    bead, sub = awaiting(human_repo, agent)
    person("bob")
    results = race(decide, [(sub.pk, ("alice", "bob")[i % 2], i % 2 == 0) for i in range(6)])
    assert results.count(True) == 1
    sub.refresh_from_db()
    bead.refresh_from_db()
    if results.index(True) % 2 == 0:
        assert sub.status == "approved" and bead.status == "review" and bead.attempts == 0
    else:
        assert sub.status == "changes_requested" and bead.status == "open" and bead.attempts == 1


def requested(repo, agent, user, line=2, text="rename x to subtotal"):
    bead, sub = awaiting(repo, agent)
    line_text = diffs.parse(sub.session.patch).files[0].line_text("new", line)
    outcomes.comment(sub, user, "src/total.py", line, "new", line_text, text)
    assert outcomes.request_changes(sub, user, "see the comment")
    bead.refresh_from_db()
    return bead, sub


def test_the_comments_reach_the_next_sessions_context_pack_through_a_claim(
    human_repo, agent, user, client, rq_redis
):
    bead, _ = requested(human_repo, agent, user)
    outsider = Agent.objects.create(name="outside", preset="shell", internal=False)
    answer = client.post(
        "/api/v1/claim",
        {"bead": bead.pk},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {outsider.plain_token}",
    )
    assert answer.status_code == 200, answer.content
    context = answer.json()["context"]
    section = context.split(inject.REVIEW_HEADING, 1)[1]
    assert section.startswith("- `src/total.py` line 2, alice: rename x to subtotal")
    assert "the line: `x = 0`" in section


def test_the_bead_answer_lists_the_review_comments_for_its_own_sessions_and_people(
    human_repo, agent, user, client, rq_redis
):
    bead, sub = requested(human_repo, agent, user)
    mine = Agent.objects.create(name="mine", preset="shell", internal=False)
    other = Agent.objects.create(name="other", preset="shell", internal=False)
    assert lifecycle.claim(mine, bead=bead)

    def show(token=None, user=None):
        c = Client()
        if user:
            c.force_login(user)
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        response = c.get(f"/api/v1/beads/{bead.pk}", **headers)
        assert response.status_code == 200
        return response.json()["review_comments"]

    [given] = show(mine.plain_token)
    assert given["path"] == "src/total.py" and given["line"] == 2 and given["side"] == "new"
    assert given["text"] == "rename x to subtotal" and given["author"] == "alice"
    assert given["submission"] == sub.pk and given["line_text"] == "    x = 0"
    assert show(other.plain_token) == []  # not its work
    assert show(user=user) == [given]


def test_the_next_submission_says_which_commented_lines_it_changed(
    human_repo, agent, user, logged_in, rq_redis
):
    bead, first = requested(human_repo, agent, user)
    ReviewComment.objects.create(
        submission=first,
        path="src/total.py",
        line=5,
        side="new",
        line_text="    return x",
        text="keep this",
        author=user,
    )
    changed = APP.replace("    x = 0", "    subtotal = 0")
    base, patch = make_patch(human_repo, {"src/total.py": changed})
    second = submit(bead, agent, patch, base)
    outcomes_of = {f.comment.line: f.outcome for f in diffs.followed_for(second)}
    assert outcomes_of == {2: "changed", 5: "untouched"}
    page = logged_in.get(second.get_absolute_url()).content.decode()
    changed_item = '<li data-outcome="changed"><span class="chip changed">changed</span>'
    assert f"{changed_item} <code>src/total.py</code> line 2" in page
    assert '<li data-outcome="untouched">' in page


def test_a_comment_follows_its_line_when_lines_move_above_it(human_repo, agent, user, rq_redis):
    bead, first = requested(human_repo, agent, user, line=5, text="rename x to total")
    moved = "# a header\n" + APP
    base, patch = make_patch(human_repo, {"src/total.py": moved})
    second = submit(bead, agent, patch, base)
    assert [f.outcome for f in diffs.followed_for(second)] == ["untouched"]


@pytest.mark.slow
def test_corral_show_and_the_mcp_show_tool_give_the_comments(
    human_repo, agent, user, live_server, tmp_path, rq_redis
):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import anyio
    from mcp import Client as McpClient
    from mcp.client.stdio import StdioServerParameters, stdio_client

    bead, _ = requested(human_repo, agent, user)
    mine = Agent.objects.create(name="mine", preset="shell", internal=False)
    assert lifecycle.claim(mine, bead=bead)
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env |= {
        "PYTHONPATH": str(root),
        "CORRAL_URL": live_server.url,
        "CORRAL_TOKEN": mine.plain_token,
    }
    shown = subprocess.run(
        [sys.executable, "-m", "corral_client.cli", "show", bead.pk],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert shown.returncode == 0, shown.stderr
    assert "Review comments (changes requested):" in shown.stdout
    assert "src/total.py:2  alice: rename x to subtotal" in shown.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "corral_client.cli", "--json", "show", bead.pk],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert json.loads(as_json.stdout)["review_comments"][0]["line"] == 2

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "corral_client.cli", "mcp"],
        env=env | {"HOME": str(tmp_path)},
        cwd=tmp_path,
    )

    async def main():
        async with McpClient(stdio_client(params)) as mcp:
            return await mcp.call_tool("show", {"bead": bead.pk})

    answer = anyio.run(main)
    assert not answer.is_error, answer.content
    [comment] = answer.structured_content["review_comments"]
    assert (comment["path"], comment["line"], comment["author"]) == ("src/total.py", 2, "alice")
