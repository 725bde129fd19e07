"""Rank a workspace's approved learnings for a piece of work, in the database.

The score of a learning for a bead is a product of five parts, each shown on
the knowledge page ("what would be injected and why"):

    score = relevance × affinity × freshness × utility × maturity

- relevance: full-text match of the learning (title and tags weigh most,
  then the files it names, then the body) against the bead's title,
  description, acceptance criteria, labels and scope paths. PostgreSQL:
  ts_rank_cd over `Learning.search` (a tsvector under a GIN index), on a
  SHORTLIST of the matches plain ts_rank picks (postgres_matches says why);
  SQLite: FTS5's bm25 over knowledge_learning_fts (knowledge/fts.py).
  Divided by the best match's, so 1.0 is the most relevant and the figure
  means the same on both databases.
- affinity: 1.0 for the bead's own repository, 0.9 for a workspace-wide
  learning, 0.8 for another repository's learning that names files under the
  bead's scope, 0.6 for any other repository. Other repositories compete:
  that is how knowledge crosses them.
- freshness: exp(-0.17 × weeks since the learning was last confirmed), the
  decay agentops uses (17% a week); a confirmation (a helpful mark, a
  first-try landing it went into) resets the clock.
- utility: 0.5 + the learning's utility, an exponential moving average
  (α = 0.1) of the outcomes of the sessions it was injected into (landed on
  the first try = 1, refused = 0), starting at 0.5: a factor from 0.5 to 1.5.
- maturity: candidate 0.7, established 1.0, proven 1.2.

Only the TOP_MATCHES best text matches are scored: the database does the
search, Python the arithmetic of a few rows, and a learning must first be
among the most relevant before freshness, utility and the rest reorder it
(with 200, fresh but barely relevant learnings crowded out the right one).
The constants below were tuned with bench/knowledge.py (its note says how).
"""

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from beads.models import Bead
from beads.scopes import literal_root
from knowledge.models import DECAY_PER_WEEK, Learning
from workspace.models import Repository, Workspace

TOP_MATCHES = 20
# PostgreSQL: how many of the matches plain ts_rank keeps for cover density to order.
SHORTLIST = 200
MAX_TERMS = 64
# Column weights: SQLite's bm25 per fts.COLUMNS (title, tags, files, body);
# PostgreSQL's SearchRank per weight letter D, C (body), B (files), A (title, tags).
SQLITE_WEIGHTS = (2.0, 2.0, 1.0, 1.0)
POSTGRES_WEIGHTS = [0.1, 0.2, 0.4, 1.0]
# ts_rank's normalization (8: divide by the number of unique words; PostgreSQL
# has no IDF, and without it long learnings full of common words won) and
# ts_rank_cd (cover density: how close together the words are).
POSTGRES_NORMALIZATION = 8
POSTGRES_COVER_DENSITY = True
AFFINITY = {"same": 1.0, "workspace": 0.9, "shares paths": 0.8, "other": 0.6}
MATURITY = {
    Learning.Maturity.CANDIDATE: 0.7,
    Learning.Maturity.ESTABLISHED: 1.0,
    Learning.Maturity.PROVEN: 1.2,
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
    relevance: float
    affinity: float
    freshness: float
    utility: float
    maturity: float

    @property
    def score(self) -> float:
        return self.relevance * self.affinity * self.freshness * self.utility * self.maturity

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in vars(self).items()}


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
    rows = {
        row["pk"]: row
        for row in Learning.objects.filter(pk__in=[pk for pk, _ in matches]).values(
            "pk", "repository_id", "files", "utility", "maturity", "confirmed_at"
        )
    }
    now = timezone.now()
    scored = [(pk, parts(rows[pk], relevance / best, work, now)) for pk, relevance in matches]
    scored.sort(key=lambda item: (-item[1].score, -item[0]))
    top = scored[:limit]
    learnings = Learning.objects.select_related("repository").in_bulk([pk for pk, _ in top])
    return [Ranked(learnings[pk], p) for pk, p in top]


def parts(row: Mapping[str, Any], relevance: float, work: Work, now: datetime) -> Parts:
    weeks = max(0.0, (now - row["confirmed_at"]).total_seconds() / 604_800)
    return Parts(
        relevance=relevance,
        affinity=AFFINITY[affinity(row["repository_id"], row["files"], work)],
        freshness=math.exp(-DECAY_PER_WEEK * weeks),
        utility=0.5 + row["utility"],
        maturity=MATURITY[row["maturity"]],
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
