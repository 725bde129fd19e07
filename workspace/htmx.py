"""What the dashboard's views share about htmx."""

from typing import cast

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """A request as HtmxMiddleware leaves it (for type checking only)."""

    htmx: HtmxDetails


def is_partial(request: HttpRequest) -> bool:
    """An htmx poll wants the partial; htmx restoring history wants the whole page."""
    htmx = cast(HtmxHttpRequest, request).htmx
    return bool(htmx and not htmx.history_restore_request)
