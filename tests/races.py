"""Run one function in many processes at once, to race a state change.

Processes are forked after closing the parent's database connections, so
each child opens its own; a barrier releases them together.
"""

import multiprocessing
import traceback

from django.db import connections


def _child(barrier, queue, index, func, args):
    # A connection inherited from the parent shares its socket: drop it
    # unclosed (closing would end the parent's session) and open a new one.
    for conn in connections.all():
        conn.connection = None
    try:
        barrier.wait(timeout=60)
        result = func(*args)
        queue.put((index, "ok", result))
    except BaseException:
        queue.put((index, "error", traceback.format_exc()))
    finally:
        connections.close_all()


def race(func, args_list, timeout=120):
    """Call func(*args) for each args in its own process; return results in order.

    A child that raised makes this raise with the child's traceback.
    """
    ctx = multiprocessing.get_context("fork")
    connections.close_all()
    barrier = ctx.Barrier(len(args_list))
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(barrier, queue, i, func, args))
        for i, args in enumerate(args_list)
    ]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=timeout) for _ in procs]
    for proc in procs:
        proc.join(timeout=timeout)
    errors = [detail for _, kind, detail in results if kind == "error"]
    if errors:
        raise AssertionError("a racing process failed:\n" + errors[0])
    return [value for _, _, value in sorted(results, key=lambda r: r[0])]
