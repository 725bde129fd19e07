"""Ranking in the database: full text (PostgreSQL tsvector, SQLite FTS5) leads,
affinity, freshness (from the last time a learning helped), utility and
maturity re-rank within a bounded band; a refuted lesson counts half."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from beads.models import Bead
from knowledge import feedback, fts
from knowledge.models import Learning
from knowledge.rank import BAND, Work, rank

DATA = Path(__file__).parent / "data" / "ranking.json"


@pytest.fixture
def fixed_set(make_repo, workspace):
    data = json.loads(DATA.read_text())
    repos = {name: make_repo(name) for name in data["repositories"]}
    keys = {}
    for item in data["learnings"]:
        learning = Learning.objects.create(
            workspace=workspace,
            repository=repos.get(item["repo"]),
            title=item["title"],
            body=item["body"],
            tags=item["tags"],
            files=item["files"],
            status=item.get("status", "approved"),
            confirmed_at=timezone.now() - timedelta(weeks=item.get("weeks_old", 0)),
        )
        keys[learning.pk] = item["key"]
    return data, repos, keys


def learning(title, workspace, repo=None, **fields):
    fields.setdefault("status", "approved")
    return Learning.objects.create(
        workspace=workspace, repository=repo, title=title, body=fields.pop("body", title), **fields
    )


def test_each_bead_gets_its_expected_learnings_first(fixed_set, workspace):
    data, repos, keys = fixed_set
    for case in data["beads"]:
        bead = Bead.objects.create(
            repository=repos[case["repo"]],
            title=case["title"],
            description=case["description"],
            labels=case["labels"],
            scope=case["scope"],
        )
        found = [keys[r.learning.pk] for r in rank(workspace, Work.of(bead))]
        top, top_set = case.get("top", []), case.get("top_set", [])
        assert found[: len(top)] == top, (case["title"], found)
        assert set(found[: len(top_set)]) == set(top_set), (case["title"], found)
        assert not set(case["absent"]) & set(found), (case["title"], found)
        if "before" in case:
            first, then = case["before"]
            assert found.index(first) < found.index(then), (case["title"], found)


def test_the_score_is_relevance_times_a_bounded_bonus(fixed_set, workspace):
    _, repos, _ = fixed_set
    ranked = rank(workspace, Work(repos["api"], "migrations for the model"))
    assert max(r.parts.relevance for r in ranked) == 1.0  # divided by the best match's
    for r in ranked:
        p = r.parts
        bonus = (p.affinity + p.freshness + p.utility + p.maturity) / 4
        assert r.score == round(p.relevance * (1 + BAND * bonus), 4)
        assert 0 < p.relevance <= 1.0 and 0 <= bonus <= 1
        assert p.affinity == (1.0 if r.learning.repository == repos["api"] else 0.0)
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)


def test_no_bonus_moves_a_learning_past_one_clearly_more_relevant(make_repo, workspace):
    here, far = make_repo("here"), make_repo("far")
    # Everything but relevance for the weaker match: its repository, proven,
    # the best utility, helped a minute ago.
    favoured = learning(
        "Cache warmup",
        workspace,
        here,
        body="Warm the cache before the release.",
        maturity="proven",
        utility=1.0,
        last_helped_at=timezone.now(),
    )
    relevant = learning(
        "Cache warmup for the release pipeline",
        workspace,
        far,
        body="The release pipeline warms the cache: run the warmup job after each release.",
        tags=["cache", "release", "pipeline"],
    )
    ranked = rank(workspace, Work(here, "cache warmup release pipeline job"))
    assert [r.learning for r in ranked] == [relevant, favoured]
    top, other = ranked
    assert other.parts.bonus == pytest.approx(1.0) and top.parts.bonus == 0.0  # all at the top
    assert top.parts.relevance > (1 + BAND) * other.parts.relevance
    # Among any two ranked, the clearly more relevant one comes first.
    for i, a in enumerate(ranked):
        for b in ranked[i + 1 :]:
            assert not b.parts.relevance > (1 + BAND) * a.parts.relevance


def test_a_useful_mature_learning_outranks_an_equally_relevant_one(repo, workspace):
    plain = learning("Pin the toolchain version", workspace, repo)
    useful = learning("Pin the toolchain version", workspace, repo, utility=0.9, maturity="proven")
    ranked = rank(workspace, Work(repo, "toolchain version"))
    assert [r.learning for r in ranked] == [useful, plain]
    assert ranked[0].parts.utility == pytest.approx(0.8)  # (0.9 - 0.5) × 2
    assert ranked[0].parts.maturity == 1.0 and ranked[1].parts.maturity == 0.0
    assert ranked[1].parts.utility == 0.0  # 0.5, the start, is no evidence either way


def test_freshness_counts_from_the_last_time_it_helped_not_from_when_it_was_written(
    repo, workspace
):
    written_long_ago = timezone.now() - timedelta(weeks=30)
    old = learning("Vendor the parser", workspace, repo, confirmed_at=written_long_ago)
    (ranked,) = rank(workspace, Work(repo, "parser"))
    assert ranked.parts.freshness == 0.0  # never helped: no bonus, and no penalty
    Learning.objects.filter(pk=old.pk).update(last_helped_at=timezone.now() - timedelta(weeks=4))
    (ranked,) = rank(workspace, Work(repo, "parser"))
    assert ranked.parts.freshness == pytest.approx(0.5066, abs=1e-3)  # exp(-0.17 × 4)
    old.confirm()  # a landing it went into, or a helpful mark
    old.refresh_from_db()
    assert old.last_helped_at is not None
    assert timezone.now() - old.last_helped_at < timedelta(minutes=1)
    (ranked,) = rank(workspace, Work(repo, "parser"))
    assert ranked.parts.freshness == pytest.approx(1.0, abs=1e-3)


def test_a_persons_helpful_mark_renews_freshness(repo, workspace, user):
    item = learning("Vendor the lexer", workspace, repo)
    feedback.mark(item, helpful=True, why="saved me an hour", person=user)
    item.refresh_from_db()
    assert item.last_helped_at is not None and item.freshness() == pytest.approx(1.0, abs=1e-3)


def test_a_refuted_lesson_ranks_below_its_replacement(repo, workspace, user):
    now = timezone.now()
    refuted = learning(
        "Pin the Node version in .nvmrc",
        workspace,
        repo,
        body="CI reads the Node version from .nvmrc; pin it there.",
        tags=["node", "ci"],
        maturity="proven",
        utility=0.9,
        helpful=10,
        last_helped_at=now - timedelta(weeks=1),
    )
    replacement = learning(
        "The Node version is pinned in package.json engines",
        workspace,
        repo,
        body="CI now reads the Node version from engines in package.json; .nvmrc is gone.",
    )
    work = Work(repo, "Pin the Node version for CI")
    assert [r.learning for r in rank(workspace, work)] == [refuted, replacement]
    # A person says the lesson no longer holds: one harmful mark against ten
    # helpful ones does not retire it, but it is the last word of the evidence.
    assert not feedback.mark(refuted, helpful=False, why=".nvmrc is gone", person=user)
    refuted.refresh_from_db()
    assert refuted.status == "approved" and refuted.refuted()
    ranked = rank(workspace, work)
    assert [r.learning for r in ranked] == [replacement, refuted]
    assert ranked[1].parts.refuted and not ranked[0].parts.refuted
    # Helped again since (a landing it went into), it stands again.
    refuted.confirm()
    assert [r.learning for r in rank(workspace, work)] == [refuted, replacement]


def test_another_repository_sharing_paths_is_closer_than_one_that_does_not(make_repo, workspace):
    here, near, far = make_repo("here"), make_repo("near"), make_repo("far")
    sharing = learning("Generated client code", workspace, near, files=["client/gen.py"])
    apart = learning("Generated client code", workspace, far, files=["docs/x.md"])
    ranked = rank(workspace, Work(here, "generated client", scope=["client/**"]))
    assert [r.learning for r in ranked] == [sharing, apart]
    assert [r.parts.affinity for r in ranked] == [0.5, 0.0]


def test_the_index_follows_inserts_updates_and_deletes(repo, workspace):
    first = learning("Quokka handling", workspace, repo, body="b")
    Learning.objects.bulk_create(
        [Learning(workspace=workspace, title="Wombat rules", body="b", status="approved")]
    )
    assert [r.learning.title for r in rank(workspace, Work(repo, "wombat"))] == ["Wombat rules"]
    Learning.objects.filter(pk=first.pk).update(title="Platypus handling")
    assert rank(workspace, Work(repo, "quokka")) == []
    assert [r.learning for r in rank(workspace, Work(repo, "platypus"))] == [first]
    first.delete()
    assert rank(workspace, Work(repo, "platypus")) == []


def test_only_approved_learnings_of_the_workspace_are_ranked(repo, workspace):
    learning("Narwhal candidate", workspace, repo, status="candidate")
    learning("Narwhal retired", workspace, repo, status="retired")
    assert rank(workspace, Work(repo, "narwhal")) == []


def test_search_words_cannot_break_the_query(repo, workspace):
    learning("Quotes and operators", workspace, repo, body='He said "NEAR" OR AND ( * ^')
    hostile = "quotes\" OR body:* NEAR( -- '; DROP TABLE x; ^ & | ! :*"
    assert [r.learning.title for r in rank(workspace, Work(repo, hostile))] == [
        "Quotes and operators"
    ]


@pytest.mark.django_db
def test_the_index_triggers_are_installed_after_every_migration():
    """A later migration that remakes knowledge_learning on SQLite drops its
    triggers; it must call knowledge.fts.install again."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            assert fts.SQLITE_TRIGGERS <= {name for (name,) in cursor.fetchall()}
        else:
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgname = 'knowledge_learning_search'"
            )
            assert cursor.fetchall()
            cursor.execute(
                "SELECT 1 FROM pg_indexes WHERE indexname = 'knowledge_learning_search_gin'"
            )
            assert cursor.fetchall()
