"""What a session's page shows of its log: the tail, whatever the log's size.

The page shows the last chunks up to LOG_TAIL_CHARS and links to the whole
log as text; the poller then appends only the chunks after the last one shown.
"""

from django.db.models.functions import Length

from agents.models import LogChunk, Session

LOG_TAIL_CHARS = 200_000


def tail(session: Session, limit: int = LOG_TAIL_CHARS) -> tuple[list[LogChunk], int]:
    """The last chunks of the log that fit in `limit` characters (the last one
    always), and how many characters come before them: two queries, the first
    reading only each chunk's seq and length."""
    sizes = session.log_chunks.annotate(n=Length("text")).order_by("-seq").values_list("seq", "n")
    kept, first, skipped = 0, None, 0
    for seq, n in sizes:
        if first is not None and (skipped or kept + n > limit):
            skipped += n
            continue
        kept, first = kept + n, seq
    if first is None:
        return [], 0
    return list(session.log_chunks.filter(seq__gte=first).order_by("seq")), skipped
