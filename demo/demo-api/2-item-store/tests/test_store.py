import unittest

from service.store import ItemStore


class ItemStoreTests(unittest.TestCase):
    def setUp(self):
        self.store = ItemStore()

    def test_add_gives_increasing_ids(self):
        first = self.store.add("write docs")
        second = self.store.add("ship it")
        self.assertEqual((first["id"], second["id"]), (1, 2))
        self.assertFalse(first["done"])

    def test_get_returns_a_copy(self):
        item = self.store.add("buy milk")
        copy = self.store.get(item["id"])
        copy["title"] = "changed"
        self.assertEqual(self.store.get(item["id"])["title"], "buy milk")

    def test_get_unknown_is_none(self):
        self.assertIsNone(self.store.get(42))

    def test_complete_marks_done(self):
        item = self.store.add("water plants")
        self.assertTrue(self.store.complete(item["id"])["done"])
        self.assertEqual([i["done"] for i in self.store.list()], [True])

    def test_complete_unknown_raises(self):
        with self.assertRaises(KeyError):
            self.store.complete(7)
