"""Conditional state transitions shared by every model with a `status`.

A transition is one UPDATE … WHERE status IN (…): of two processes making the
same move, the database lets exactly one win, and each learns which it was.
"""

from django.db.models.expressions import Combinable
from django.utils import timezone


class Transitions:
    def transition(self, to, allowed_from, **changes):
        """Move from one of `allowed_from` to `to`; return True if this call won."""
        if isinstance(allowed_from, str):
            allowed_from = [allowed_from]
        model = type(self)
        if any(f.name == "updated_at" for f in model._meta.fields):
            changes.setdefault("updated_at", timezone.now())
        won = model.objects.filter(pk=self.pk, status__in=allowed_from).update(status=to, **changes)
        if not won:
            self.refresh_from_db(fields=["status"])
            return False
        self.status = to
        expressions = [k for k, v in changes.items() if isinstance(v, Combinable)]
        for key, value in changes.items():
            if key not in expressions:
                setattr(self, key, value)
        if expressions:
            self.refresh_from_db(fields=expressions)
        return True
