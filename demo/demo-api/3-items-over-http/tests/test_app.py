import io
import json
import unittest
from wsgiref.util import setup_testing_defaults

from service import app as items_app
from service.store import ItemStore


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
    }
    setup_testing_defaults(environ)
    seen = {}

    def start_response(status, headers):
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(headers)

    body = b"".join(items_app.app(environ, start_response))
    return seen["status"], seen["headers"], body


class AppTests(unittest.TestCase):
    def setUp(self):
        items_app.store = ItemStore()

    def test_health(self):
        status, _, body = call("GET", "/health")
        self.assertEqual((status, json.loads(body)), (200, {"status": "ok"}))

    def test_add_then_list(self):
        status, _, body = call("POST", "/items", {"title": " buy milk "})
        self.assertEqual(status, 201)
        self.assertEqual(json.loads(body)["title"], "buy milk")
        status, headers, body = call("GET", "/items")
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual([i["title"] for i in json.loads(body)["items"]], ["buy milk"])

    def test_post_without_title_is_refused(self):
        status, _, _ = call("POST", "/items", {"title": "  "})
        self.assertEqual(status, 400)

    def test_unknown_path(self):
        status, _, _ = call("GET", "/nope")
        self.assertEqual(status, 404)
