"""Conditional state transitions shared by every model with a `status`.

Each model declares its moves next to its `Status` as a table, `MOVES`:
a move's name, the statuses it may start from and the one it leads to. That
table is the state machine of DESIGN.md in one place; the tests check it
against the document.

A move is one UPDATE … WHERE status IN (…): of two processes making the same
move, the database lets exactly one win, and each learns which it was.
"""

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from django.db.models.expressions import Combinable
from django.utils import timezone


class Move(NamedTuple):
    sources: tuple[str, ...]
    target: str


def move(sources: str | Sequence[str], target: str) -> Move:
    """A row of a MOVES table: `move([OPEN], IN_PROGRESS)`."""
    if isinstance(sources, str):
        sources = (sources,)
    return Move(tuple(str(s) for s in sources), str(target))


class Transitions:
    MOVES: ClassVar[dict[str, Move]] = {}

    def move(self, name: str, **changes: Any) -> bool:
        """Make the move `name` of this model's MOVES table; True if this call won."""
        sources, target = self.MOVES[name]
        model: Any = type(self)
        if any(f.name == "updated_at" for f in model._meta.fields):
            changes.setdefault("updated_at", timezone.now())
        pk: Any = getattr(self, "pk")  # noqa: B009 - a mixin: the model has it
        won = model.objects.filter(pk=pk, status__in=sources).update(status=target, **changes)
        if not won:
            self.refresh_from_db(fields=["status"])  # type: ignore[attr-defined]
            return False
        setattr(self, "status", target)  # noqa: B010
        expressions = [k for k, v in changes.items() if isinstance(v, Combinable)]
        for key, value in changes.items():
            if key not in expressions:
                setattr(self, key, value)
        if expressions:
            self.refresh_from_db(fields=expressions)  # type: ignore[attr-defined]
        return True

    @classmethod
    def edges(cls) -> set[tuple[str, str]]:
        """Every (from, to) pair the MOVES table allows."""
        return {(s, m.target) for m in cls.MOVES.values() for s in m.sources}
