"""An in-memory store of to-do items."""

import itertools
import threading


class ItemStore:
    def __init__(self):
        self._items = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, title):
        with self._lock:
            item = {"id": next(self._ids), "title": title, "done": False}
            self._items[item["id"]] = item
            return dict(item)

    def get(self, item_id):
        item = self._items.get(item_id)
        return dict(item) if item is not None else None

    def list(self):
        return [dict(item) for item in self._items.values()]

    def complete(self, item_id):
        with self._lock:
            if item_id not in self._items:
                raise KeyError(item_id)
            self._items[item_id]["done"] = True
            return dict(self._items[item_id])
