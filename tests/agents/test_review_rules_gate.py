"""The lead's review gate under a repository's rules: what needs a person, read
from the branch (never the patch), the risk, two-person approval, and
reviewers deciding at once."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from agents.models import Submission
from agents.moves import outcomes
from beads.models import Bead
from tests.factories import land, run_lead
from tests.races import race
from workspace import roles
from workspace.models import Repository

pytestmark = pytest.mark.django_db(transaction=True)
DATA = Path(__file__).parents[1] / "workspace" / "data" / "review"


def rules(name):
    return (DATA / name).read_text()


@pytest.fixture
def ruled(workspace, make_source):
    """A repository reviewing by hand whose branch carries review.toml."""
    source = make_source(
        "ruled",
        commits=[
            {"README.md": "# ruled\n", "src/app.py": "x = 1\n"},
            {".corral/review.toml": rules("review.toml")},
        ],
    )
    return Repository.register(str(source), workspace, review_mode="human")


def person(name, *groups):
    someone = get_user_model().objects.create_user(name)
    roles.assign(someone, roles.OPERATOR)
    for group in groups:
        someone.groups.add(group)
    return someone


def gated(repo, agent, files, **bead_fields):
    bead, sub = land(repo, agent, files)
    if bead_fields:
        Bead.objects.filter(pk=bead.pk).update(**bead_fields)
    run_lead(repo)
    sub.refresh_from_db()
    return sub


def test_a_patch_that_rewrites_the_rules_to_auto_still_needs_a_person(ruled, agent, rq_redis):
    sub = gated(ruled, agent, {".corral/review.toml": rules("auto.toml"), "src/app.py": "x = 2\n"})
    assert sub.status == "awaiting_review" and sub.people_needed == 1
    assert "`.corral/review.toml` changes the review rules" in sub.review_why
    assert "`src/**` needs a person" in sub.review_why


def test_rules_on_the_branch_decide_not_those_in_the_patch(ruled, agent, rq_redis):
    # The patch's own rules would let docs and src land alone; the branch's do not for src.
    sub = gated(ruled, agent, {"src/app.py": "x = 3\n", "docs/a.md": "a\n"})
    assert sub.status == "awaiting_review"
    assert sub.review_why == ["`src/**` needs a person"]


def test_low_risk_auto_paths_land_without_a_person_in_a_human_repository(ruled, agent, rq_redis):
    sub = gated(ruled, agent, {"docs/guide.md": "Read me.\n"})
    assert sub.status == "committed" and sub.people_needed == 0 and sub.risk == "low"
    review = sub.gate_results.get(gate="review")
    assert review.passed and review.detail.startswith("Automatic review: no rule asks")


def test_size_makes_auto_paths_risky_enough_for_a_person(ruled, agent, rq_redis):
    medium = gated(ruled, agent, {"docs/long.md": "line\n" * 60})
    assert medium.status == "awaiting_review" and medium.risk == "medium" and medium.lines == 60
    assert medium.review_why == [
        "its risk is medium (a person looks from medium)",
        "risk: 60 lines changed (medium from 50)",
    ]
    high = gated(ruled, agent, {"docs/longer.md": "line\n" * 250})
    assert high.risk == "high" and high.people_needed == 1


def test_a_bead_that_failed_before_is_riskier(ruled, agent, rq_redis):
    once = gated(ruled, agent, {"docs/a.md": "a\n"}, attempts=1)
    assert (
        once.risk == "medium" and "risk: " + once.bead_id + " failed once before" in once.review_why
    )
    twice = gated(ruled, agent, {"docs/b.md": "b\n"}, attempts=2)
    assert twice.risk == "high"


def test_an_agent_often_refused_here_is_riskier(ruled, agent, rq_redis):
    for n in range(4):  # its history here: two refused of four judged
        sub = gated(ruled, agent, {f"docs/h{n}.md": "h\n"})
        if n % 2:
            Submission.objects.filter(pk=sub.pk).update(status="rejected")
    sub = gated(ruled, agent, {"docs/next.md": "n\n"})
    assert sub.risk == "high"
    assert f"risk: {agent.name} had 2 of its last 4 refused here" in sub.review_why


def test_a_path_rule_carries_its_risk_and_its_owners(ruled, agent, rq_redis):
    sub = gated(ruled, agent, {"src/billing/pay.py": "pay()\n"})
    assert sub.status == "awaiting_review" and sub.risk == "medium"
    assert sub.review_owners == ["alice", "payments"]
    assert sub.review_why[0] == "`src/billing/**` is owned by alice, payments"


def test_a_two_person_rule_needs_two_different_approvers(ruled, agent, rq_redis):
    sub = gated(ruled, agent, {"migrations/0002.sql": "alter table t;\n"})
    assert sub.people_needed == 2 and sub.review_owners == ["db-team"] and sub.risk == "high"
    assert sub.review_why[0] == "`migrations/**` is owned by db-team (two people)"
    alice, bob = person("alice"), person("bob")
    assert outcomes.review(sub, alice, approve=True)
    assert sub.status == "awaiting_review" and sub.approvals == 1 and sub.reviewed_by is None
    with pytest.raises(outcomes.ReviewRefused, match="approved this submission already"):
        outcomes.review(sub, alice, approve=True)
    assert sub.approvals == 1
    assert outcomes.review(sub, bob, approve=True)
    assert sub.status == "approved" and sub.approvals == 2 and sub.reviewed_by == bob
    assert [p.username for p in sub.approvers()] == ["alice", "bob"]
    run_lead(ruled)
    sub.refresh_from_db()
    assert sub.status == "committed"


def test_rules_that_do_not_parse_ask_a_person_for_everything(
    workspace, make_source, agent, rq_redis
):
    source = make_source(
        "broken", commits=[{"README.md": "b\n", ".corral/review.toml": rules("not_toml.toml")}]
    )
    repo = Repository.register(str(source), workspace)  # automatic review otherwise
    sub = gated(repo, agent, {"docs/a.md": "a\n"})
    assert sub.status == "awaiting_review"
    assert sub.review_why[0].startswith(
        "The review rules cannot be read (.corral/review.toml is not TOML"
    )


def test_without_rules_the_review_mode_decides_alone(repo, agent, rq_redis):
    sub = gated(repo, agent, {"big.txt": "line\n" * 500}, attempts=2)
    assert sub.status == "committed" and sub.risk == "high" and sub.people_needed == 0


def decide(pk, username, approve):
    sub = Submission.objects.select_related("bead", "repository", "session").get(pk=pk)
    who = get_user_model().objects.get(username=username)
    try:
        return outcomes.review(sub, who, approve=approve, reason="no")
    except outcomes.ReviewRefused:
        return "refused"


@pytest.mark.slow
def test_two_reviewers_approving_and_rejecting_at_once_exactly_one_wins(ruled, agent, rq_redis):
    for n in range(3):
        sub = gated(ruled, agent, {f"src/r{n}.py": "r\n"})
        names = [f"a{n}", f"b{n}"]
        for name in names:
            person(name)
        results = race(decide, [(sub.pk, names[0], True), (sub.pk, names[1], False)])
        assert sorted(results, key=str) == [False, True]
        sub.refresh_from_db()
        won = "approved" if results[0] else "rejected"
        assert sub.status == won
        assert sub.approvals == (1 if won == "approved" else 0)


@pytest.mark.slow
def test_two_approvers_at_once_on_a_two_person_rule_move_it_once(ruled, agent, rq_redis):
    sub = gated(ruled, agent, {"migrations/0003.sql": "x\n"})
    for name in ["c", "d", "e"]:
        person(name)
    results = race(decide, [(sub.pk, "c", True), (sub.pk, "d", True), (sub.pk, "e", True)])
    sub.refresh_from_db()
    assert sub.status == "approved" and sub.approvals == 2
    assert sorted(results) == [False, True, True]  # the third came too late
    assert sub.approval_set.count() == 2


def test_the_pages_show_the_rules_and_why_a_person_is_needed(logged_in, ruled, agent, rq_redis):
    sub = gated(ruled, agent, {"migrations/0004.sql": "y\n"})
    html = logged_in.get(f"/submissions/{sub.pk}/").content.decode()
    assert "`migrations/**` is owned by db-team (two people)" in html and "0 of 2 approvals" in html
    page = logged_in.get(f"/repos/{ruled.slug}/").content.decode()
    assert (
        "<code>.corral/review.toml</code>, 4 rules" in page and "<code>migrations/**</code>" in page
    )


def test_the_repository_page_shows_a_rules_error(logged_in, workspace, make_source):
    source = make_source("bad", commits=[{"CODEOWNERS": "* @not a/valid name!\n"}])
    repo = Repository.register(str(source), workspace)
    page = logged_in.get(f"/repos/{repo.slug}/").content.decode()
    assert "CODEOWNERS cannot be read: every change needs a person" in page
    assert "CODEOWNERS, line 1" in page
