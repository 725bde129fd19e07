"""Conditional state transitions shared by every model with a state column.

Each model declares its moves next to its `Status` as a table, `MOVES`:
a move's name, the states it may start from and the one it leads to. The
column is `status` unless the model names another as `STATE` (a journal
step's `state`, an injection's `outcome`, a change-set member's `active`). That
table is the state machine of DESIGN.md in one place; the tests check it
against the document.

A move is one UPDATE … WHERE status IN (…): of two processes making the same
move, the database lets exactly one win, and each learns which it was.
"""

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from django.db import transaction
from django.db.models import Case, Q, Value, When
from django.db.models.expressions import Combinable
from django.utils import timezone


class Move(NamedTuple):
    sources: tuple[Any, ...]
    target: Any


def move(sources: Any, target: Any) -> Move:
    """A row of a MOVES table: `move([OPEN], IN_PROGRESS)`, or `move(True, False)`
    for a yes/no state."""
    if isinstance(sources, (str, bool)):
        sources = (sources,)
    return Move(tuple(state(s) for s in sources), state(target))


def state(value: Any) -> Any:
    """A choice's plain value (a TextChoices member is a str), booleans as they are."""
    return value if isinstance(value, bool) else str(value)


class Transitions:
    MOVES: ClassVar[dict[str, Move]] = {}
    STATE: ClassVar[str] = "status"

    def move(self, name: str, when: Q | None = None, **changes: Any) -> bool:
        """Make the move `name` of this model's MOVES table; True if this call won.
        `when`: a further condition the row must meet in the same UPDATE."""
        sources, target = self.MOVES[name]
        model: Any = type(self)
        if any(f.name == "updated_at" for f in model._meta.fields):
            changes.setdefault("updated_at", timezone.now())
        pk: Any = getattr(self, "pk")  # noqa: B009 - a mixin: the model has it
        rows = model.objects.filter(pk=pk, **{f"{self.STATE}__in": sources})
        if when is not None:
            rows = rows.filter(when)
        won = rows.update(**{self.STATE: target}, **changes)
        if not won:
            self.refresh_from_db(fields=[self.STATE])  # type: ignore[attr-defined]
            return False
        setattr(self, self.STATE, target)
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
            may = model.objects.select_for_update().filter(
                pk__in=by_pk, **{f"{cls.STATE}__in": sources}
            )
            movable = set(may.order_by("pk").values_list("pk", flat=True))
            won = [row for pk, row in by_pk.items() if pk in movable]
            fields = {name: model._meta.get_field(name) for name in each or {}}
            per_row = {
                name: Case(
                    *(
                        When(pk=row.pk, then=Value(values[row.pk], output_field=fields[name]))
                        for row in won
                    ),
                    output_field=fields[name],
                )
                for name, values in (each or {}).items()
            }
            if won:
                model.objects.filter(pk__in=movable, **{f"{cls.STATE}__in": sources}).update(
                    **{cls.STATE: target}, **changes, **per_row
                )
        for row in won:
            setattr(row, cls.STATE, target)
            for key, value in changes.items():
                setattr(row, key, value)
            for field, values in (each or {}).items():
                setattr(row, field, values[row.pk])
        if lost := [pk for pk in by_pk if pk not in movable]:
            states = dict(model.objects.filter(pk__in=lost).values_list("pk", cls.STATE))
            for pk in lost:
                setattr(by_pk[pk], cls.STATE, states.get(pk, getattr(by_pk[pk], cls.STATE)))
        return won

    @classmethod
    def move_all(cls, name: str, rows: Any, **changes: Any) -> int:
        """Make the move `name` on every row of the queryset `rows` that may make
        it, in one conditional UPDATE; how many moved."""
        sources, target = cls.MOVES[name]
        model: Any = cls
        if any(f.name == "updated_at" for f in model._meta.fields):
            changes.setdefault("updated_at", timezone.now())
        movable = rows.filter(**{f"{cls.STATE}__in": sources})
        return int(movable.update(**{cls.STATE: target}, **changes))

    @classmethod
    def edges(cls) -> set[tuple[str, str]]:
        """Every (from, to) pair the MOVES table allows."""
        return {(s, m.target) for m in cls.MOVES.values() for s in m.sources}
