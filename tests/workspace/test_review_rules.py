"""Rules for what needs a person: .corral/review.toml and CODEOWNERS, parsed,
decided per path, and read from a commit's tree (workspace/reviewrules.py)."""

from pathlib import Path

import pytest

from tests.factories import git
from workspace import reviewrules
from workspace.reviewrules import RulesError, decide, parse_codeowners, parse_toml

DATA = Path(__file__).parent / "data" / "review"


def text(name):
    return (DATA / name).read_text()


def test_review_toml_reads_each_rule_with_its_people_owners_and_risk():
    rules = parse_toml(text("review.toml"))
    assert rules.source == ".corral/review.toml" and not rules.error
    assert [(r.patterns, r.review, r.owners, r.risk) for r in rules.rules] == [
        (("docs/**", "*.md"), "auto", (), "low"),
        (("src/**",), "one", (), "low"),
        (("migrations/**",), "two", ("db-team",), "high"),
        (("src/billing/**",), "one", ("alice", "payments"), "medium"),
    ]
    assert (rules.risk.person_at, rules.risk.medium_lines, rules.risk.high_lines) == (
        "medium",
        50,
        200,
    )


def test_the_last_matching_rule_decides_a_path():
    rules = parse_toml(text("review.toml"))
    assert rules.rule_for("src/billing/pay.py").owners == ("alice", "payments")
    assert rules.rule_for("src/app.py").review == "one"
    assert rules.rule_for("README.md").review == "auto"
    assert rules.rule_for("setup.cfg") is None


def test_a_two_person_path_says_who_owns_it():
    rules = parse_toml(text("review.toml"))
    need = decide(rules, ["migrations/0002.sql", "docs/a.md"], human_default=False)
    assert need.people == 2 and need.owners == ["db-team"]
    assert need.why == ["`migrations/**` is owned by db-team (two people)"]
    assert need.path_risk == "high" and need.path_risk_why == ["`migrations/**` is high risk"]


def test_auto_paths_need_nobody_and_unmatched_paths_follow_the_review_mode():
    rules = parse_toml(text("review.toml"))
    assert decide(rules, ["docs/guide.md"], human_default=True).people == 0
    assert decide(rules, ["setup.cfg"], human_default=False).people == 0
    human = decide(rules, ["setup.cfg", "tox.ini"], human_default=True)
    assert human.people == 1
    assert human.why == ["`setup.cfg` and 1 more: the repository reviews by hand"]


def test_a_change_to_the_rules_themselves_always_needs_a_person():
    rules = parse_toml(text("auto.toml"))
    assert decide(rules, ["src/a.py"], human_default=True).people == 0
    for path in [".corral/review.toml", "CODEOWNERS", ".github/CODEOWNERS", "lib/CODEOWNERS"]:
        need = decide(rules, [path], human_default=False)
        assert need.people == 1 and need.why == [f"`{path}` changes the review rules"]


def test_codeowners_lines_need_one_person_each_owner_asked_first():
    rules = parse_codeowners(text("CODEOWNERS"), "CODEOWNERS")
    assert [(r.patterns, r.people, r.owners) for r in rules.rules] == [
        (("*",), 1, ("alice",)),
        (("/migrations/",), 1, ("db-team", "bob")),
        (("docs/",), 0, ()),
        (("*.sql",), 1, ("bob@example.com",)),
    ]
    need = decide(rules, ["migrations/1.py"], human_default=False)
    assert need.people == 1 and need.owners == ["db-team", "bob"]
    assert need.why == ["`/migrations/` is owned by db-team, bob"]
    assert decide(rules, ["docs/x.txt"], human_default=True).people == 0


@pytest.mark.parametrize(
    "name, message",
    [
        ("bad_review.toml", "rule 1: review must be auto, one or two, not 'three'"),
        ("not_toml.toml", ".corral/review.toml is not TOML"),
    ],
)
def test_a_bad_rules_file_is_an_error_that_says_where(name, message):
    with pytest.raises(RulesError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_toml(text(name))


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[[rules]]\npaths = []\n", "paths must be a pattern or a list"),
        ('[[rules]]\npaths = ["a"]\nowners = ["no spaces allowed"]\n', "is not a user or group"),
        ('[[rules]]\npaths = ["a"]\nreviewers = 2\n', "unknown key 'reviewers'"),
        ('[risk]\nperson_at = "sometimes"\n', "person_at must be"),
        ("[risk]\nhigh_lines = -1\n", "whole numbers"),
        ("rules = 3\n", "write each rule as a [[rules]] table"),
    ],
)
def test_each_kind_of_mistake_is_named(toml, message):
    with pytest.raises(RulesError) as raised:
        parse_toml(toml)
    assert message in str(raised.value)


def test_unreadable_rules_need_a_person_for_every_path():
    broken = reviewrules.Rules(".corral/review.toml", error="rule 1: bad")
    need = decide(broken, ["docs/a.md"], human_default=False)
    assert need.people == 1
    assert need.why == ["The review rules cannot be read (rule 1: bad): a person decides."]


def commit_files(repo_path, files, message):
    for rel, body in files.items():
        path = Path(repo_path, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    git(repo_path, "add", "-A")
    git(repo_path, "commit", "-q", "-m", message)
    return git(repo_path, "rev-parse", "HEAD")


def test_rules_are_read_from_the_tree_of_the_commit_given(make_source):
    source = make_source("rules")
    without = git(source, "rev-parse", "HEAD")
    owners = commit_files(source, {"CODEOWNERS": text("CODEOWNERS")}, "owners")
    toml = commit_files(source, {".corral/review.toml": text("review.toml")}, "rules")
    assert reviewrules.read(source / ".git", without).source == ""
    assert reviewrules.read(source / ".git", owners).source == "CODEOWNERS"
    both = reviewrules.read(source / ".git", toml)
    assert both.source == ".corral/review.toml" and len(both.rules) == 4  # toml first
    broken = commit_files(source, {".corral/review.toml": text("bad_review.toml")}, "broken")
    assert "review must be auto, one or two" in reviewrules.read(source / ".git", broken).error


def test_a_symlink_or_a_huge_rules_file_is_not_read(make_source):
    source = make_source("links")
    (source / ".github").mkdir()
    (source / ".github" / "CODEOWNERS").symlink_to("/etc/passwd")
    git(source, "add", "-A")
    git(source, "commit", "-q", "-m", "link")
    link = git(source, "rev-parse", "HEAD")
    assert (
        reviewrules.read(source / ".git", link).error == ".github/CODEOWNERS is not a regular file"
    )
    huge = commit_files(source, {"CODEOWNERS": "# x\n" * 20_000}, "huge")
    assert "larger than" in reviewrules.read(source / ".git", huge).error
