"""Rank a workspace's approved learnings for a piece of work, in the database.

The score of a learning for a bead is a product of five parts, each shown on
the knowledge page ("what would be injected and why"):

    score = relevance × affinity × freshness × utility × maturity

- relevance: full-text match of the learning (title and tags weigh most,
  then the files it names, then the body) against the bead's title,
  description, acceptance criteria, labels and scope paths. PostgreSQL:
  `SearchRank` over `Learning.search` (a tsvector under a GIN index);
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

from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from beads.models import Bead
from beads.scopes import literal_root
from knowledge.models import DECAY_PER_WEEK, Learning
from workspace.models import Repository, Workspace

TOP_MATCHES = 20
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
    # Words are [a-z0-9] only: safe to join as a raw tsquery.
    query = SearchQuery(" | ".join(words), search_type="raw", config="english")
    found = (
        Learning.objects.filter(workspace=workspace, status__in=statuses, search=query)
        .annotate(
            relevance=SearchRank(
                F("search"),
                query,
                weights=POSTGRES_WEIGHTS,
                normalization=POSTGRES_NORMALIZATION,
                cover_density=POSTGRES_COVER_DENSITY,
            )
        )
        .order_by("-relevance", "-pk")
        .values_list("pk", "relevance")[:TOP_MATCHES]
    )
    return [(pk, float(relevance)) for pk, relevance in found]


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
