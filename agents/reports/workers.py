"""Which RQ workers listen: a page says plainly whether anyone will act on what it asks."""

from rq import Worker

from agents import queues


def listening() -> tuple[int, int]:
    """(session workers, default workers) registered now; raises redis.RedisError."""
    sessions = len(Worker.all(queue=queues.queue(queues.SESSIONS)))
    defaults = len(Worker.all(queue=queues.queue(queues.DEFAULT)))
    return sessions, defaults
