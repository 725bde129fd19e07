"""Rank a workspace's approved learnings for a piece of work, in the database.

Relevance leads; the rest re-rank within a bounded band (issue 27: the old
product of five factors buried a relevant lesson unconfirmed for a few months
under weaker fresh ones, and found the right learning half as often as plain
search). The score of a learning for a bead:

    score = relevance × (1 + BAND × bonus)
    bonus = (affinity + freshness + utility + maturity) / 4, each in [0, 1]
    order: the learnings not refuted by score, then the refuted ones by score

- relevance: full-text match of the learning (title and tags weigh most,
  then the files it names, then the body) against the bead's title,
  description, acceptance criteria, labels and scope paths. PostgreSQL:
  ts_rank_cd over `Learning.search` (a tsvector under a GIN index), on a
  SHORTLIST of the matches plain ts_rank picks (postgres_matches says why);
  SQLite: FTS5's bm25 over knowledge_learning_fts (knowledge/fts.py).
  Divided by the best match's, so 1.0 is the most relevant and the figure
  means the same on both databases.
- affinity: 1 for the bead's own repository, 0.5 for a workspace-wide
  learning or another repository's that names files under the bead's scope,
  0 for any other repository. Other repositories compete: that is how
  knowledge crosses them.
- freshness: exp(-0.17 × weeks since the learning last helped), agentops'
  17% a week, counted from `last_helped_at` (a landing it went into, a
  helpful mark by an agent or a person), never from when it was written:
  0 until it first helps.
- utility: how far the moving average of its outcomes (α = 0.1, 0.5 to
  start) is above the neutral 0.5, doubled: 0 at 0.5 or below, 1 at 1.
- maturity: candidate 0, established 0.5, proven 1.

Each part's floor is 0, so the factor is between 1 and 1 + BAND (1.01):
together they move a learning past another only if its relevance is within
1% of the other's; a more relevant learning stays ahead. A
learning whose last evidence is a harmful mark (`last_hurt_at` after
`last_helped_at`: its lesson was refuted) comes after every learning that is
not, so it ranks below the replacement that says the lesson anew, until it
helps again; a retired one is not ranked at all.

Only the TOP_MATCHES best text matches are scored: the database does the
search, Python the arithmetic of a few rows.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from beads.models import Bead
from beads.scopes import literal_root
from knowledge.models import Learning
from workspace.models import Repository, Workspace

TOP_MATCHES = 20
# PostgreSQL: how many of the matches plain ts_rank keeps for cover density to order.
SHORTLIST = 200
MAX_TERMS = 64
# Column weights: SQLite's bm25 per fts.COLUMNS (title, tags, files, body);
# PostgreSQL's SearchRank per weight letter D, C (body), B (files), A (title, tags).
SQLITE_WEIGHTS = (2.0, 2.0, 1.0, 1.0)
POSTGRES_WEIGHTS = [0.1, 0.2, 0.4, 1.0]
# ts_rank_cd (cover density: how close together the words are) without
# normalization. Dividing by the number of unique words (8) was tuned on the
# 52 short pairs (0.85) and found 2 of the second set's 24 realistic learnings
# in the top 5; with 0 the figures are 0.63 and 0.67, and it is twice as fast
# (bench/knowledge.py).
POSTGRES_NORMALIZATION = 0
POSTGRES_COVER_DENSITY = True
# The band: at most +1% for a learning at the top of every other part. Wider
# bands lost pairs text alone finds in bench/knowledge.py (its note has the
# sweep: on PostgreSQL 0.02 already lost one of the second set's 24), so the
# parts order learnings of near-equal relevance only: near-duplicates, and
# the near-ties ts_rank and bm25 leave.
BAND = 0.01
AFFINITY = {"same": 1.0, "workspace": 0.5, "shares paths": 0.5, "other": 0.0}
MATURITY: dict[str, float] = {
    Learning.Maturity.CANDIDATE: 0.0,
    Learning.Maturity.ESTABLISHED: 0.5,
    Learning.Maturity.PROVEN: 1.0,
}

WORD = re.compile(r"[a-z0-9]{3,}")
# Words that say nothing about what a piece of work touches ("Add a ...", "Fix the ...").
STOP = set(
    "the and for with that this from into when are not all add fix make use support update "
    "new need needs want wants should must can get set our its every more than out have has "
    "was were will one two some any instead too also only after before each which who them "
    "they their there then but now how why what where does doesn isn don".split()
)


@dataclass(frozen=True)
class Parts:
    """Relevance (0-1], the bonus's four parts, each in [0, 1], and whether refuted."""

    relevance: float
    affinity: float
    freshness: float
    utility: float
    maturity: float
    refuted: bool = False

    @property
    def bonus(self) -> float:
        return (self.affinity + self.freshness + self.utility + self.maturity) / 4

    @property
    def score(self) -> float:
        return self.relevance * (1 + BAND * self.bonus)

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 3) for k, v in vars(self).items()}


@dataclass
class Ranked:
    learning: Learning
    parts: Parts

    @property
    def score(self) -> float:
        return round(self.parts.score, 4)

    @property
    def text(self) -> str:
        return f"### {self.learning.title}\n\n{self.learning.body.strip()}\n"


@dataclass(frozen=True)
class Work:
    """What learnings are ranked against: a bead, or a search."""

    repository: Repository | None
    text: str
    scope: Sequence[str] = ()

    @classmethod
    def of(cls, bead: Bead) -> "Work":
        text = " ".join(
            [
                bead.title,
                bead.description,
                bead.acceptance_criteria,
                *bead.labels,
                *bead.scope,
            ]
        )
        return cls(bead.repository, text, bead.scope)


def terms(text: str) -> list[str]:
    """The search's words, in order of first appearance (at most MAX_TERMS)."""
    seen: dict[str, None] = {}
    for word in WORD.findall(text.lower()):
        if word not in STOP:
            seen.setdefault(word, None)
    return list(seen)[:MAX_TERMS]


def rank(workspace: Workspace, work: Work, limit: int = 50) -> list[Ranked]:
    """The workspace's approved learnings, best first (only those that match at all;
    with no words to search, the repository's and the workspace-wide ones)."""
    words = terms(work.text)
    matches = full_text(workspace, words) if words else unsearched(workspace, work.repository)
    if not matches:
        return []
    best = max(relevance for _, relevance in matches) or 1.0
    # One query for the few rows scored, whole (they are what is injected),
    # without PostgreSQL's tsvector.
    found = Learning.objects.select_related("repository").defer("search")
    learnings = found.in_bulk([pk for pk, _ in matches])
    now = timezone.now()
    scored = [
        Ranked(learnings[pk], parts(learnings[pk], relevance / best, work, now))
        for pk, relevance in matches
        if pk in learnings  # deleted meanwhile
    ]
    scored.sort(key=lambda r: (r.parts.refuted, -r.parts.score, -r.learning.pk))
    return scored[:limit]


def parts(learning: Learning, relevance: float, work: Work, now: datetime) -> Parts:
    return Parts(
        relevance=relevance,
        affinity=AFFINITY[affinity(learning.repository_id, learning.files, work)],
        freshness=learning.freshness(now),
        utility=min(1.0, max(0.0, 2 * (learning.utility - 0.5))),
        maturity=MATURITY[learning.maturity],
        refuted=learning.refuted(),
    )


def affinity(repository_id: int | None, files: Iterable[str], work: Work) -> str:
    if repository_id is None:
        return "workspace"
    if work.repository is not None and repository_id == work.repository.pk:
        return "same"
    if shares_paths(files, work.scope):
        return "shares paths"
    return "other"


def shares_paths(files: Iterable[str], scope: Sequence[str]) -> bool:
    """Whether a file the learning names lies under a scope pattern's fixed part."""
    roots = [literal_root(p) for p in scope if not p.startswith("!")]
    roots = [r for r in roots if r]
    return any(
        str(f).strip("/") == r or str(f).strip("/").startswith(r + "/")
        for f in files
        for r in roots
    )


def full_text(
    workspace: Workspace, words: list[str], statuses: Sequence[str] = (Learning.Status.APPROVED,)
) -> list[tuple[int, float]]:
    """(learning id, raw relevance) of the best TOP_MATCHES of the workspace's
    learnings in `statuses` matching any of `words`, best first."""
    if connection.vendor == "postgresql":
        return postgres_matches(workspace, words, statuses)
    return sqlite_matches(workspace, words, statuses)


def postgres_matches(
    workspace: Workspace, words: list[str], statuses: Sequence[str]
) -> list[tuple[int, float]]:
    """The matches through the GIN index, then two passes. A typical bead's
    words match a third of the learnings, and cover density (ts_rank_cd) costs
    most per row: plain ts_rank, cheap, keeps a SHORTLIST of the matches, then
    cover density orders only those. With bench/knowledge.py's 20,000
    learnings, p95 went from 108 ms to 37 ms at the same load; recall@5 from
    0.33 to 0.31 (one pair of 52; a shortlist of 500 keeps 0.33 at +5 ms), full
    text alone unchanged at 0.81 (the bench's note has the figures)."""
    # Words are [a-z0-9] only: safe to join as a raw tsquery.
    query = " | ".join(words)
    places = ", ".join(["%s"] * len(statuses))
    rank_with = "ts_rank_cd" if POSTGRES_COVER_DENSITY else "ts_rank"
    # The tsquery comes from a CTE, not a constant, on purpose: seeing it, the
    # planner rightly expects a third of the table to match and scans it all,
    # testing @@ row by row (59 ms in EXPLAIN ANALYZE); not seeing it, it takes
    # the GIN index, which answers an OR of words without rechecking a row
    # (12 ms). The index is the better road at any share of matches.
    sql = f"""
        WITH q AS (SELECT to_tsquery('english', %s) AS q)
        SELECT id, {rank_with}(%s::real[], search, q.q, %s) AS relevance
        FROM (
            SELECT l.id, l.search FROM knowledge_learning l, q
            WHERE l.workspace_id = %s AND l.status IN ({places}) AND l.search @@ q.q
            ORDER BY ts_rank(%s::real[], l.search, q.q, %s) DESC, l.id DESC
            LIMIT %s
        ) AS shortlist, q
        ORDER BY relevance DESC, id DESC
        LIMIT %s
    """  # noqa: S608 - only placeholders and our own function name are formatted in
    weights, norm = POSTGRES_WEIGHTS, POSTGRES_NORMALIZATION
    params: list[Any] = [query, weights, norm, workspace.pk, *statuses]
    params += [weights, norm, SHORTLIST, TOP_MATCHES]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [(pk, float(relevance)) for pk, relevance in cursor.fetchall()]


def sqlite_matches(
    workspace: Workspace, words: list[str], statuses: Sequence[str]
) -> list[tuple[int, float]]:
    # bm25 is lower for better matches, so it is negated.
    weights = ", ".join(str(float(w)) for w in SQLITE_WEIGHTS)
    sql = f"""
        SELECT l.id, -bm25(knowledge_learning_fts, {weights}) AS relevance
        FROM knowledge_learning_fts
        JOIN knowledge_learning l ON l.id = knowledge_learning_fts.rowid
        WHERE knowledge_learning_fts MATCH %s AND l.workspace_id = %s
          AND l.status IN ({", ".join(["%s"] * len(statuses))})
        ORDER BY relevance DESC, l.id DESC
        LIMIT %s
    """  # noqa: S608 - only placeholders and our own numbers are formatted in
    match = " OR ".join(f'"{w}"' for w in words)
    with connection.cursor() as cursor:
        cursor.execute(sql, [match, workspace.pk, *statuses, TOP_MATCHES])
        return [(pk, float(relevance)) for pk, relevance in cursor.fetchall()]


def unsearched(workspace: Workspace, repository: Repository | None) -> list[tuple[int, float]]:
    local = Q(repository__isnull=True)
    if repository is not None:
        local |= Q(repository=repository)
    found = approved(workspace).filter(local).order_by("-confirmed_at", "-pk")
    return [(pk, 1.0) for pk in found.values_list("pk", flat=True)[:TOP_MATCHES]]


def approved(workspace: Workspace) -> Any:
    return Learning.objects.filter(workspace=workspace, status=Learning.Status.APPROVED)
