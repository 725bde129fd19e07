"""Conditional state transitions shared by every model with a `status`.

Each model declares its moves next to its `Status` as a table, `MOVES`:
a move's name, the statuses it may start from and the one it leads to. That
table is the state machine of DESIGN.md in one place; the tests check it
against the document.

A move is one UPDATE … WHERE status IN (…): of two processes making the same
move, the database lets exactly one win, and each learns which it was.
"""

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from django.db import transaction
from django.db.models import Case, Value, When
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
    def move_many(
        cls,
        name: str,
        rows: Sequence[Any],
        each: Mapping[str, Mapping[Any, Any]] | None = None,
        **changes: Any,
    ) -> list[Any]:
        """Make the move `name` on every row of `rows` that may make it, with two
        queries for them all instead of one per row: which may move (their rows
        locked until the transaction ends, so none moves meanwhile), then one
        conditional UPDATE of exactly those. `each`: {field: {pk: value}}, a
        value per row. Returns the rows that won (in the order given), their
        fields set as move() sets them; the others' status is read again."""
        sources, target = cls.MOVES[name]
        model: Any = cls
        if any(f.name == "updated_at" for f in model._meta.fields):
            changes.setdefault("updated_at", timezone.now())
        if any(isinstance(v, Combinable) for v in changes.values()):
            raise ValueError("move_many takes values, not expressions")
        by_pk = {row.pk: row for row in rows}
        with transaction.atomic():
            may = model.objects.select_for_update().filter(pk__in=by_pk, status__in=sources)
            movable = set(may.order_by("pk").values_list("pk", flat=True))
            won = [row for pk, row in by_pk.items() if pk in movable]
            per_row = {
                field: Case(
                    *(When(pk=row.pk, then=Value(values[row.pk])) for row in won),
                    output_field=model._meta.get_field(field),
                )
                for field, values in (each or {}).items()
            }
            if won:
                model.objects.filter(pk__in=movable, status__in=sources).update(
                    status=target, **changes, **per_row
                )
        for row in won:
            row.status = target
            for key, value in changes.items():
                setattr(row, key, value)
            for field, values in (each or {}).items():
                setattr(row, field, values[row.pk])
        if lost := [pk for pk in by_pk if pk not in movable]:
            statuses = dict(model.objects.filter(pk__in=lost).values_list("pk", "status"))
            for pk in lost:
                by_pk[pk].status = statuses.get(pk, by_pk[pk].status)
        return won

    @classmethod
    def edges(cls) -> set[tuple[str, str]]:
        """Every (from, to) pair the MOVES table allows."""
        return {(s, m.target) for m in cls.MOVES.values() for s in m.sources}
