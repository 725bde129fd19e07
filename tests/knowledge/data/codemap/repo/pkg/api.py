from pkg.store import Store

from . import util


def handler(request):
    return Store(), util.OUTSIDE
