from pkg import store


def check_store():
    assert store.Store().get("a") is None
