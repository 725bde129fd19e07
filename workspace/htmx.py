"""What the dashboard's views share about htmx."""


def is_partial(request):
    """An htmx poll wants the partial; htmx restoring history wants the whole page."""
    return request.htmx and not request.htmx.history_restore_request
