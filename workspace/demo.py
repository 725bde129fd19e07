"""Seed a demo workspace: three small repositories with history, beads across
them, and two demo agents. Used by `manage.py demo`.

The demo is recognised by its repository slugs (`demo-api`, `demo-web`,
`demo-infra`): if any of them is registered, seeding changes nothing. Seeding
is all or nothing: on a failure the database rolls back and every folder this
run created is removed again.
"""

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from beads.models import Bead, Dependency
from workspace.gitops import GitError, last_line
from workspace.models import Repository, Workspace


class DemoError(Exception):
    """Seeding failed; the message is one line fit to show a person."""


# --- The repositories' files -------------------------------------------------

GITIGNORE = "__pycache__/\n*.pyc\n.venv/\n"

API_README_1 = """\
# api

A tiny items service: a WSGI application using only Python's standard library.

    python3 -m service.app    # serves on http://localhost:8000
"""

API_README_2 = (
    API_README_1
    + """
## Tests

    python3 -m unittest -q

## Routes

- `GET /health` answers `{"status": "ok"}`
- `GET /items` lists the items
- `POST /items` with `{"title": "..."}` adds one
"""
)

API_APP_1 = '''\
"""The items service: a WSGI application using only the standard library."""

import json
from wsgiref.simple_server import make_server


def respond(start_response, status, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/health":
        return respond(start_response, "200 OK", {"status": "ok"})
    return respond(start_response, "404 Not Found", b"Not Found", "text/plain")


def main(port=8000):
    with make_server("", port, app) as server:
        print("Serving items on http://localhost:%d" % port)
        server.serve_forever()


if __name__ == "__main__":
    main()
'''

API_APP_2 = '''\
"""The items service: a WSGI application using only the standard library."""

import json
from wsgiref.simple_server import make_server

from service.store import ItemStore

store = ItemStore()


def respond(start_response, status, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]


def read_json(environ):
    """The request body parsed as a JSON object, or {} when it is not one."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}") if length > 0 else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def app(environ, start_response):
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO") or "/"
    if path == "/health":
        return respond(start_response, "200 OK", {"status": "ok"})
    if path == "/items" and method == "GET":
        return respond(start_response, "200 OK", {"items": store.list()})
    if path == "/items" and method == "POST":
        title = read_json(environ).get("title")
        if not isinstance(title, str) or not title.strip():
            return respond(start_response, "400 Bad Request", b"title is required", "text/plain")
        return respond(start_response, "201 Created", store.add(title.strip()))
    return respond(start_response, "404 Not Found", b"Not Found", "text/plain")


def main(port=8000):
    with make_server("", port, app) as server:
        print("Serving items on http://localhost:%d" % port)
        server.serve_forever()


if __name__ == "__main__":
    main()
'''

API_STORE = '''\
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
'''

API_TEST_STORE = """\
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
"""

API_TEST_APP = """\
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
"""

API_MAIN = """\
from service.app import main

main()
"""

WEB_README_1 = """\
# web

The items web client: static HTML, CSS and JavaScript, no build step.
Serve the folder with any static server, e.g. `python3 -m http.server`.
"""

WEB_README_2 = (
    WEB_README_1
    + """
## Checks

    python3 tools/check_site.py

checks that every page's markup is balanced and every local link resolves.
"""
)

WEB_INDEX_1 = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Items</title>
  <link rel="stylesheet" href="css/style.css">
</head>
<body>
  <header class="top">
    <h1>Items</h1>
  </header>
  <main>
    <ul id="items" class="items">
      <li>Nothing yet.</li>
    </ul>
  </main>
</body>
</html>
"""

WEB_INDEX_2 = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Items</title>
  <link rel="stylesheet" href="css/style.css">
</head>
<body>
  <header class="top">
    <h1>Items</h1>
  </header>
  <main>
    <form id="new-item">
      <input name="title" placeholder="What needs doing?" required>
      <button type="submit">Add</button>
    </form>
    <ul id="items" class="items"></ul>
    <p class="muted" id="status">Loading...</p>
  </main>
  <script src="js/api.js"></script>
  <script src="js/app.js"></script>
</body>
</html>
"""

WEB_INDEX_3 = WEB_INDEX_2.replace(
    "    <h1>Items</h1>\n",
    '    <h1>Items</h1>\n    <nav><a href="about.html">About</a></nav>\n',
)

WEB_ABOUT = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>About - Items</title>
  <link rel="stylesheet" href="css/style.css">
</head>
<body>
  <header class="top">
    <h1>About</h1>
    <nav><a href="index.html">Back to the list</a></nav>
  </header>
  <main>
    <p>Items is a small to-do list. It talks to the items service under <code>/api</code>.</p>
  </main>
</body>
</html>
"""

WEB_CSS_1 = """\
body {
  font-family: system-ui, sans-serif;
  margin: 0;
  color: #222;
  background: #fff;
}

.top {
  padding: 1rem 2rem;
  border-bottom: 1px solid #ddd;
}

main {
  max-width: 40rem;
  margin: 2rem auto;
}
"""

WEB_CSS_2 = (
    WEB_CSS_1
    + """
.items {
  list-style: none;
  padding: 0;
}

.items li {
  padding: 0.5rem 0;
  border-bottom: 1px solid #eee;
}

.items li.done {
  text-decoration: line-through;
}

.muted {
  color: #aaa;
}
"""
)

WEB_API_JS = """\
// A thin client for the items service, mounted under /api by nginx.
const API_BASE = window.ITEMS_API || "/api";

async function request(path, options = {}) {
  const response = await fetch(API_BASE + path, {
    headers: { "Content-Type": "application/json" },
    ...options,
  });
  if (!response.ok) {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  return response.json();
}

const api = {
  listItems: () => request("/items").then((body) => body.items),
  addItem: (title) => request("/items", { method: "POST", body: JSON.stringify({ title }) }),
};
"""

WEB_APP_JS = """\
// Render the item list and handle the "new item" form.
const list = document.getElementById("items");
const status = document.getElementById("status");
const form = document.getElementById("new-item");

function render(items) {
  list.replaceChildren(
    ...items.map((item) => {
      const li = document.createElement("li");
      li.textContent = item.title;
      li.classList.toggle("done", item.done);
      return li;
    }),
  );
  status.textContent = items.length ? "" : "Nothing to do.";
}

async function refresh() {
  try {
    render(await api.listItems());
  } catch (error) {
    status.textContent = "Could not load items.";
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const title = form.elements.title.value.trim();
  if (!title) return;
  await api.addItem(title);
  form.reset();
  refresh();
});

refresh();
"""

WEB_CHECK_SITE = '''\
#!/usr/bin/env python3
"""Check the static site: balanced markup and no broken local links.

Run from anywhere: python3 tools/check_site.py
"""

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class PageChecker(HTMLParser):
    def __init__(self, page):
        super().__init__()
        self.page = page
        self.open_tags = []
        self.errors = []
        self.links = 0

    def problem(self, message):
        line = self.getpos()[0]
        self.errors.append("%s:%d: %s" % (self.page.relative_to(ROOT), line, message))

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.open_tags.append(tag)
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.check_link(value)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.open_tags or self.open_tags[-1] != tag:
            self.problem("unexpected </%s>" % tag)
            return
        self.open_tags.pop()

    def check_link(self, value):
        parts = urlsplit(value)
        if parts.scheme or parts.netloc or not parts.path:
            return  # another site, or only a #fragment
        self.links += 1
        if parts.path.startswith("/"):
            target = ROOT / parts.path.lstrip("/")
        else:
            target = self.page.parent / parts.path
        if not target.exists():
            self.problem("broken link %s" % value)

    def finish(self):
        self.close()
        for tag in reversed(self.open_tags):
            self.problem("<%s> is never closed" % tag)


def main():
    pages = sorted(p for p in ROOT.rglob("*.html") if ".git" not in p.relative_to(ROOT).parts)
    errors, links = [], 0
    for page in pages:
        checker = PageChecker(page)
        checker.feed(page.read_text(encoding="utf-8"))
        checker.finish()
        errors += checker.errors
        links += checker.links
    for error in errors:
        print(error)
    print("%d pages, %d local links, %d problems" % (len(pages), links, len(errors)))
    return 1 if errors or not pages else 0


if __name__ == "__main__":
    sys.exit(main())
'''

INFRA_README_1 = """\
# infra

Configuration and scripts that deploy the items service and its web client.

    python3 scripts/render_config.py > /etc/nginx/sites-enabled/items.conf
"""

INFRA_README_2 = (
    INFRA_README_1
    + """
## Deploying

    scripts/deploy.sh HOST

## Tests

    python3 -m unittest -q
"""
)

INFRA_SITE_1 = """\
{
  "server_name": "items.example.com",
  "listen": 80
}
"""

INFRA_SITE_2 = """\
{
  "server_name": "items.example.com",
  "listen": 80,
  "web_root": "/srv/items/web"
}
"""

INFRA_NGINX_1 = """\
server {
    listen {{ listen }};
    server_name {{ server_name }};

    location / {
        return 503;
    }
}
"""

INFRA_NGINX_2 = """\
server {
    listen {{ listen }};
    server_name {{ server_name }};
    root {{ web_root }};
    access_log /var/log/nginx/items.access.log;

    location / {
        try_files $uri $uri/ /index.html;
    }
}
"""

INFRA_RENDER_1 = '''\
"""Render config/nginx.conf.tmpl with the values in config/site.json."""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\\{\\{\\s*(\\w+)\\s*\\}\\}")


def render(template, values):
    """Fill every {{ name }}; nginx's own $variables are left alone."""

    def substitute(match):
        key = match.group(1)
        if key not in values:
            raise KeyError("the template needs %r" % key)
        return str(values[key])

    return PLACEHOLDER.sub(substitute, template)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    config = Path(argv[0]) if argv else ROOT / "config" / "site.json"
    values = json.loads(config.read_text())
    template = (ROOT / "config" / "nginx.conf.tmpl").read_text()
    sys.stdout.write(render(template, values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

INFRA_RENDER_2 = (
    INFRA_RENDER_1.replace(
        """

def render(template, values):""",
        '''
REQUIRED = {"server_name": (str, "text"), "listen": (int, "a number")}


def validate(values):
    """Return `values` if the site config is usable, else raise ValueError naming every problem."""
    problems = []
    for key, (kind, what) in REQUIRED.items():
        if key not in values:
            problems.append("missing %s" % key)
        elif not isinstance(values[key], kind) or isinstance(values[key], bool):
            problems.append("%s must be %s" % (key, what))
    port = values.get("listen")
    if isinstance(port, int) and not 0 < port < 65536:
        problems.append("listen must be a port from 1 to 65535")
    if problems:
        raise ValueError("; ".join(problems))
    return values


def render(template, values):''',
    )
    .replace("values = json.loads(", "values = validate(json.loads(")
    .replace("config.read_text())\n", "config.read_text()))\n")
)

INFRA_RENDER_3 = INFRA_RENDER_2.replace(
    '"listen": (int, "a number")}',
    '"listen": (int, "a number"), "web_root": (str, "text")}',
)

INFRA_TEST_1 = """\
import json
import unittest

from scripts.render_config import ROOT, render, validate


class RenderTests(unittest.TestCase):
    def test_fills_placeholders(self):
        self.assertEqual(render("listen {{ listen }};", {"listen": 80}), "listen 80;")

    def test_a_missing_value_is_an_error(self):
        with self.assertRaises(KeyError):
            render("{{ nope }}", {})

    def test_leaves_nginx_variables_alone(self):
        self.assertEqual(render("try_files $uri $uri/;", {}), "try_files $uri $uri/;")

    def test_the_site_config_renders_completely(self):
        values = validate(json.loads((ROOT / "config" / "site.json").read_text()))
        text = render((ROOT / "config" / "nginx.conf.tmpl").read_text(), values)
        self.assertNotIn("{{", text)
        self.assertIn("server_name %s;" % values["server_name"], text)


class ValidateTests(unittest.TestCase):
    def test_names_every_problem(self):
        with self.assertRaises(ValueError) as caught:
            validate({"listen": "80"})
        self.assertIn("missing server_name", str(caught.exception))
        self.assertIn("listen must be a number", str(caught.exception))

    def test_port_range(self):
        with self.assertRaises(ValueError):
            validate({"server_name": "x", "listen": 70000, "web_root": "/srv"})
"""

INFRA_DEPLOY = """\
#!/bin/sh
# Deploy the web client and the nginx config to HOST.
set -eu

HOST="${1:?usage: deploy.sh HOST}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"

python3 "$HERE/scripts/render_config.py" > /tmp/items.conf
scp /tmp/items.conf "$HOST:/etc/nginx/sites-enabled/items.conf"
rsync -a --delete ../web/ "$HOST:/srv/items/web/"
ssh "$HOST" "nginx -t && systemctl reload nginx"
"""

# (subject, author, days ago, {path: text})
ADA = ("Ada Byron", "ada@items.example")
GRACE = ("Grace Brewster", "grace@items.example")
LINUS = ("Linus Ops", "linus@items.example")


@dataclass
class DemoRepo:
    name: str
    prefix: str
    check_command: str
    commits: list
    review_mode: str = Repository.Review.AUTO


REPOS = [
    DemoRepo(
        name="demo-api",
        prefix="api",
        check_command="python3 -m unittest -q",
        commits=[
            (
                "Start the items service with a health check",
                ADA,
                9.5,
                {
                    "README.md": API_README_1,
                    ".gitignore": GITIGNORE,
                    "service/__init__.py": "",
                    "service/app.py": API_APP_1,
                },
            ),
            (
                "Add an in-memory item store",
                GRACE,
                9,
                {
                    "service/store.py": API_STORE,
                    "tests/__init__.py": "",
                    "tests/test_store.py": API_TEST_STORE,
                },
            ),
            (
                "List and create items over HTTP",
                ADA,
                8,
                {"service/app.py": API_APP_2, "tests/test_app.py": API_TEST_APP},
            ),
            (
                "Document the routes and add python3 -m service",
                GRACE,
                7,
                {"README.md": API_README_2, "service/__main__.py": API_MAIN},
            ),
        ],
    ),
    DemoRepo(
        name="demo-web",
        prefix="web",
        check_command="python3 tools/check_site.py",
        commits=[
            (
                "Add the page skeleton and styles",
                GRACE,
                8,
                {"README.md": WEB_README_1, "index.html": WEB_INDEX_1, "css/style.css": WEB_CSS_1},
            ),
            (
                "Fetch items from the API",
                GRACE,
                7,
                {
                    "index.html": WEB_INDEX_2,
                    "css/style.css": WEB_CSS_2,
                    "js/api.js": WEB_API_JS,
                    "js/app.js": WEB_APP_JS,
                },
            ),
            (
                "Add a checker for markup and local links",
                ADA,
                5,
                {"README.md": WEB_README_2, "tools/check_site.py": WEB_CHECK_SITE},
            ),
            (
                "Add an about page",
                GRACE,
                4,
                {"index.html": WEB_INDEX_3, "about.html": WEB_ABOUT},
            ),
        ],
    ),
    DemoRepo(
        name="demo-infra",
        prefix="infra",
        check_command="python3 -m unittest -q",
        review_mode=Repository.Review.HUMAN,
        commits=[
            (
                "Render the nginx config from a template",
                LINUS,
                6,
                {
                    "README.md": INFRA_README_1,
                    ".gitignore": GITIGNORE,
                    "config/site.json": INFRA_SITE_1,
                    "config/nginx.conf.tmpl": INFRA_NGINX_1,
                    "scripts/render_config.py": INFRA_RENDER_1,
                },
            ),
            (
                "Validate the site config before rendering",
                LINUS,
                5,
                {
                    "scripts/__init__.py": "",
                    "scripts/render_config.py": INFRA_RENDER_2,
                    "tests/__init__.py": "",
                    "tests/test_render_config.py": INFRA_TEST_1,
                },
            ),
            (
                "Serve the web folder from nginx",
                LINUS,
                3,
                {
                    "config/site.json": INFRA_SITE_2,
                    "config/nginx.conf.tmpl": INFRA_NGINX_2,
                    "scripts/render_config.py": INFRA_RENDER_3,
                },
            ),
            (
                "Add a deploy script",
                ADA,
                2,
                {"scripts/deploy.sh": INFRA_DEPLOY, "README.md": INFRA_README_2},
            ),
        ],
    ),
]

# --- The beads' work ---------------------------------------------------------
# Each open bead's description ends with the edits the demo agent
# (agents/demo_agent.py) carries out, so that `manage.py demo --run`, or
# Corral's own workers, land the demo for real. The edits stay inside the
# bead's scope, keep the repository's check passing, and land in whatever
# order the hook and the lead take them, two at once from one base included:
# a new file is written whole; an existing one is changed only by inserting
# after, or replacing, a passage that no other bead of the demo changes, at
# least one untouched line away from any other bead's change, so the lead's
# three-way merge never meets a conflict. Tests come in new files or at the
# end of a test file that no other open bead touches.


def block(op, path, body=""):
    return f"```corral {op} {path}\n{body}```\n"


def write(path, text):
    return block("write", path, text)


def append(path, text):
    return block("append", path, text)


def replace(path, old, new):
    return block("replace", path, f"{old}=====\n{new}")


def insert_after(path, anchor, text):
    """Add `text` right after `anchor`, which stays as it is."""
    return replace(path, anchor, anchor + text)


def with_edits(prose, *blocks):
    """The description: the prose for people first, then the demo agent's edits."""
    return prose + "\n\nThe demo agent's edits:\n\n" + "\n".join(blocks)


# demo-api

API_RESPOND = 'def respond(start_response, status, body, content_type="application/json"):\n'
API_RESPOND_JSON_ERRORS = """\
    if isinstance(body, bytes) and int(status.split()[0]) >= 400:
        body, content_type = {"error": body.decode()}, "application/json"  # errors are JSON
"""

API_TEST_ERRORS = """\
import json
import unittest

from service import app as items_app
from service.store import ItemStore
from tests.test_app import call


class JsonErrorTests(unittest.TestCase):
    def setUp(self):
        items_app.store = ItemStore()

    def test_an_unknown_path_is_a_json_404(self):
        status, headers, body = call("GET", "/nope")
        self.assertEqual(status, 404)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(json.loads(body), {"error": "Not Found"})

    def test_a_post_without_a_title_is_a_json_400(self):
        status, headers, body = call("POST", "/items", {"title": " "})
        self.assertEqual(status, 400)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(json.loads(body), {"error": "title is required"})
"""

API_PATH_LINE = '    path = environ.get("PATH_INFO") or "/"\n'
API_ITEM_ROUTE = """\
    if path.startswith("/items/") and method == "GET":
        item_id = path.removeprefix("/items/")
        item = store.get(int(item_id)) if item_id.isascii() and item_id.isdigit() else None
        if item is None:
            return respond(start_response, "404 Not Found", {"error": f"no item {item_id}"})
        return respond(start_response, "200 OK", item)
"""

API_TEST_ITEM = """\
import json
import unittest

from service import app as items_app
from service.store import ItemStore
from tests.test_app import call


class ItemRouteTests(unittest.TestCase):
    def setUp(self):
        items_app.store = ItemStore()

    def test_one_item(self):
        item = items_app.store.add("buy milk")
        status, headers, body = call("GET", "/items/%d" % item["id"])
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(json.loads(body), item)

    def test_an_unknown_or_bad_id_is_a_json_404(self):
        items_app.store.add("buy milk")
        for path in ("/items/2", "/items/abc", "/items/", "/items/-1"):
            status, headers, body = call("GET", path)
            self.assertEqual(status, 404, path)
            self.assertEqual(headers["Content-Type"], "application/json", path)
            self.assertIn("error", json.loads(body), path)
"""

API_STORE_ADD = """\
    def add(self, title):
        with self._lock:
            item = {"id": next(self._ids), "title": title, "done": False}
"""
API_STORE_ADD_TAGS = """\
    def add(self, title, tags=()):
        tags = sorted({tag.strip().lower() for tag in tags} - {""})
        with self._lock:
            item = {"id": next(self._ids), "title": title, "done": False, "tags": tags}
"""
API_STORE_LIST = """\
    def list(self):
        return [dict(item) for item in self._items.values()]
"""
API_STORE_LIST_TAG = '''\
    def list(self, tag=None):
        """Every item, or only those tagged `tag` (in any case)."""
        tag = tag.strip().lower() if tag else None
        items = self._items.values()
        return [dict(item) for item in items if tag is None or tag in item["tags"]]
'''
API_TEST_STORE_TAGS = """\


class TagTests(unittest.TestCase):
    def setUp(self):
        self.store = ItemStore()

    def test_tags_are_lowercase_unique_and_sorted(self):
        item = self.store.add("plan the trip", tags=["Travel", "home", "travel ", " "])
        self.assertEqual(item["tags"], ["home", "travel"])

    def test_an_item_added_without_tags_has_none(self):
        self.assertEqual(self.store.add("buy milk")["tags"], [])

    def test_list_by_tag(self):
        self.store.add("plan the trip", tags=["travel"])
        self.store.add("water plants", tags=["home"])
        self.assertEqual([i["title"] for i in self.store.list(tag="Home")], ["water plants"])
        self.assertEqual(len(self.store.list()), 2)
"""

API_IMPORT_JSON = "import json\n"
API_IMPORT_PARSE_QS = "from urllib.parse import parse_qs\n"
API_LIST_ITEMS = '        return respond(start_response, "200 OK", {"items": store.list()})\n'
API_LIST_ITEMS_BY_TAG = """\
        tag = parse_qs(environ.get("QUERY_STRING", "")).get("tag", [""])[0]
        return respond(start_response, "200 OK", {"items": store.list(tag=tag or None)})
"""
API_READ_TITLE = '        title = read_json(environ).get("title")\n'
API_READ_BODY = """\
        body = read_json(environ)
        title = body.get("title")
"""
API_ADD_ITEM = '        return respond(start_response, "201 Created", store.add(title.strip()))\n'
API_ADD_ITEM_WITH_TAGS = """\
        tags = body.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            message = b"tags must be a list of text"
            return respond(start_response, "400 Bad Request", message, "text/plain")
        return respond(start_response, "201 Created", store.add(title.strip(), tags))
"""

API_TEST_TAGS_FILTER = """\
import io
import json
import unittest
from wsgiref.util import setup_testing_defaults

from service import app as items_app
from service.store import ItemStore
from tests.test_app import call


def list_items(query):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/items", "QUERY_STRING": query}
    environ["wsgi.input"] = io.BytesIO(b"")
    setup_testing_defaults(environ)
    seen = {}
    body = b"".join(items_app.app(environ, lambda status, headers: seen.update(status=status)))
    return seen["status"], [item["title"] for item in json.loads(body)["items"]]


class TagFilterTests(unittest.TestCase):
    def setUp(self):
        items_app.store = ItemStore()
        call("POST", "/items", {"title": "plan the trip", "tags": ["travel"]})
        call("POST", "/items", {"title": "water plants", "tags": ["Home"]})

    def test_tag_filters(self):
        self.assertEqual(list_items("tag=home"), ("200 OK", ["water plants"]))
        self.assertEqual(list_items("tag=work"), ("200 OK", []))

    def test_without_a_tag_every_item_is_listed(self):
        self.assertEqual(list_items(""), ("200 OK", ["plan the trip", "water plants"]))

    def test_post_stores_the_tags(self):
        status, _, body = call("POST", "/items", {"title": "call mum", "tags": ["Home", "phone"]})
        self.assertEqual((status, json.loads(body)["tags"]), (201, ["home", "phone"]))

    def test_tags_must_be_a_list_of_text(self):
        status, _, _ = call("POST", "/items", {"title": "call mum", "tags": "home"})
        self.assertEqual(status, 400)
"""

API_README_EXAMPLES = """\
- `GET /items?tag=home` lists the items tagged `home`
- `GET /items/<id>` shows one item

## Examples

Every answer is JSON; an error is `{"error": "<message>"}` with a 4xx status.

    $ curl -s localhost:8000/health
    {"status": "ok"}

    $ curl -s -X POST localhost:8000/items -d '{"title": "water plants", "tags": ["Home"]}'
    {"id": 1, "title": "water plants", "done": false, "tags": ["home"]}

    $ curl -s 'localhost:8000/items?tag=home'
    {"items": [{"id": 1, "title": "water plants", "done": false, "tags": ["home"]}]}

    $ curl -s localhost:8000/items/1
    {"id": 1, "title": "water plants", "done": false, "tags": ["home"]}

    $ curl -s localhost:8000/items/7
    {"error": "no item 7"}

    $ curl -s -X POST localhost:8000/items -d '{}'
    {"error": "title is required"}
"""

# demo-web

WEB_ITEM_PAGE = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Item - Items</title>
  <link rel="stylesheet" href="css/style.css">
</head>
<body>
  <header class="top">
    <h1 id="title">Item</h1>
    <nav><a href="index.html">Back to the list</a></nav>
  </header>
  <main>
    <p id="state" class="muted">Loading...</p>
  </main>
  <script src="js/api.js"></script>
  <script src="js/item.js"></script>
</body>
</html>
"""

WEB_ITEM_JS = """\
// The item page: item.html?id=<id> shows one item from GET /items/<id>.
const title = document.getElementById("title");
const state = document.getElementById("state");

async function load() {
  const id = new URLSearchParams(window.location.search).get("id");
  try {
    const item = await api.getItem(id);
    title.textContent = item.title;
    document.title = `${item.title} - Items`;
    state.textContent = item.done ? "Done." : "Not done yet.";
  } catch (error) {
    state.textContent = `Could not load item ${id}: ${error.message}`;
  }
}

load();
"""

WEB_GET_ITEM_JS = """
api.getItem = (id) => request(`/items/${encodeURIComponent(id)}`);
"""

WEB_ITEM_TITLE = "      li.textContent = item.title;\n"
WEB_ITEM_LINK = """\
      const link = document.createElement("a");
      link.href = `item.html?id=${item.id}`;
      link.textContent = item.title;
      li.append(link);
"""

WEB_THROW = "    throw new Error(`${response.status} ${response.statusText}`);\n"
WEB_THROW_SERVICE_MESSAGE = """\
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || `${response.status} ${response.statusText}`);
"""
WEB_LOAD_FAILED = '    status.textContent = "Could not load items.";\n'
WEB_LOAD_FAILED_BANNER = """\
    status.textContent = "";
    showError(`Could not load the items: ${error.message}`);
"""
WEB_ADD_ITEM = "  await api.addItem(title);\n"
WEB_ADD_ITEM_OR_BANNER = """\
  try {
    await api.addItem(title);
  } catch (error) {
    showError(`Could not add the item: ${error.message}`);
    return;
  }
"""
WEB_BANNER_JS = """
// The error banner shows the service's message until the user closes it.
function showError(message) {
  const banner = document.getElementById("banner");
  banner.querySelector(".banner-text").textContent = message;
  banner.hidden = false;
}

document.querySelector("#banner .banner-close").addEventListener("click", () => {
  document.getElementById("banner").hidden = true;
});
"""
WEB_MAIN_TAG = "  <main>\n"
WEB_BANNER_HTML = """\
    <div id="banner" class="banner" role="alert" hidden>
      <span class="banner-text"></span>
      <button type="button" class="banner-close" aria-label="Close">&times;</button>
    </div>
"""
WEB_CSS_MAIN = """\
main {
  max-width: 40rem;
  margin: 2rem auto;
}
"""
WEB_BANNER_CSS = """
.banner {
  display: flex;
  justify-content: space-between;
  align-items: center;
  margin-bottom: 1rem;
  padding: 0.5rem 1rem;
  border: 1px solid #e0a9a9;
  background: #fbeaea;
  color: #7a1f1f;
}

.banner[hidden] {
  display: none;
}

.banner-close {
  border: 0;
  background: none;
  font-size: 1.25rem;
  cursor: pointer;
}
"""

WEB_DONE_TOGGLE = '      li.classList.toggle("done", item.done);\n'
WEB_TAG_CHIPS = """\
      for (const tag of item.tags || []) {
        const chip = document.createElement("span");
        chip.className = "chip";
        chip.textContent = tag;
        li.append(" ", chip);
      }
"""
WEB_CSS_ITEM = """\
.items li {
  padding: 0.5rem 0;
  border-bottom: 1px solid #eee;
}
"""
WEB_CHIP_CSS = """
.chip {
  display: inline-block;
  padding: 0 0.5rem;
  border-radius: 1rem;
  background: #e8eefc;
  color: #223;
  font-size: 0.8rem;
}
"""

WEB_MUTED_OLD = ".muted {\n  color: #aaa;\n"
WEB_MUTED_NEW = ".muted {\n  color: #6b6b6b;\n"

WEB_DARK_CSS = """
@media (prefers-color-scheme: dark) {
  body {
    color: #eee;
    background: #161616;
  }

  .top,
  .items li {
    border-bottom-color: #333;
  }

  .muted {
    color: #a3a3a3;
  }
}
"""

# demo-infra

INFRA_SITE_OPEN = "{\n"
INFRA_SITE_CERTIFICATE = """\
  "ssl_certificate": "/etc/letsencrypt/live/items.example.com/fullchain.pem",
  "ssl_certificate_key": "/etc/letsencrypt/live/items.example.com/privkey.pem",
"""
INFRA_LISTEN = "    listen {{ listen }};\n"
INFRA_LISTEN_TLS = """\
    listen 443 ssl;
    ssl_certificate {{ ssl_certificate }};
    ssl_certificate_key {{ ssl_certificate_key }};
"""
INFRA_RENEW_CERT = """\
#!/bin/sh
# Renew the certificate for items.example.com when it is due, and reload nginx
# when it was renewed. Run it daily from cron:
#   17 3 * * * /srv/items/infra/scripts/renew_cert.sh
set -eu

exec certbot renew --quiet --cert-name items.example.com \\
    --deploy-hook "systemctl reload nginx"
"""
INFRA_TEST_TLS = """\
import json
import unittest

from scripts.render_config import ROOT, render


class TlsTests(unittest.TestCase):
    def test_listens_on_443_with_the_certificate(self):
        values = json.loads((ROOT / "config" / "site.json").read_text())
        text = render((ROOT / "config" / "nginx.conf.tmpl").read_text(), values)
        self.assertIn("listen 443 ssl;", text)
        self.assertIn("ssl_certificate %s;" % values["ssl_certificate"], text)
        self.assertIn("ssl_certificate_key %s;" % values["ssl_certificate_key"], text)

    def test_the_renewal_script_reloads_nginx(self):
        script = (ROOT / "scripts" / "renew_cert.sh").read_text()
        self.assertIn("certbot renew", script)
        self.assertIn("systemctl reload nginx", script)
"""

INFRA_WEB_ROOT = '  "web_root": "/srv/items/web"\n'
INFRA_WEB_ROOT_AND_UPSTREAM = (
    '  "web_root": "/srv/items/web",\n  "api_upstream": "127.0.0.1:8000"\n'
)
INFRA_TRY_FILES = "        try_files $uri $uri/ /index.html;\n    }\n"
INFRA_API_LOCATION = """
    location /api/ {
        proxy_pass http://{{ api_upstream }}/;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
"""
INFRA_REQUIRED_WEB_ROOT = '"web_root": (str, "text")}\n'
INFRA_REQUIRED_UPSTREAM = """\
"web_root": (str, "text"),
            "api_upstream": (str, "host:port")}
"""
INFRA_TEST_PROXY = """\


class ProxyTests(unittest.TestCase):
    def site(self):
        return validate(json.loads((ROOT / "config" / "site.json").read_text()))

    def test_proxies_api_to_the_upstream(self):
        values = self.site()
        text = render((ROOT / "config" / "nginx.conf.tmpl").read_text(), values)
        self.assertIn("location /api/ {", text)
        self.assertIn("proxy_pass http://%s/;" % values["api_upstream"], text)

    def test_api_upstream_is_required(self):
        values = dict(self.site())
        del values["api_upstream"]
        with self.assertRaises(ValueError) as caught:
            validate(values)
        self.assertIn("missing api_upstream", str(caught.exception))
"""

INFRA_HEALTHCHECK = '''\
#!/usr/bin/env python3
"""Wait until URL/health answers {"status": "ok"}; exit 1 if it does not in time.

    python3 scripts/healthcheck.py [--timeout SECONDS] URL
"""

import argparse
import json
import sys
import time
import urllib.request


def healthy(url, timeout):
    """True when URL/health answers {"status": "ok"} within `timeout` seconds."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout) as response:
            return json.load(response) == {"status": "ok"}
    except (OSError, ValueError):
        return False


def wait(url, timeout, interval):
    deadline = time.monotonic() + timeout
    while True:
        if healthy(url, timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
            return True
        if time.monotonic() + interval >= deadline:
            return False
        time.sleep(interval)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the service, e.g. http://localhost:8000")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (60)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between tries (1)")
    args = parser.parse_args(argv)
    if wait(args.url, args.timeout, args.interval):
        print("%s is healthy" % args.url)
        return 0
    print("%s was not healthy within %gs" % (args.url, args.timeout), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
'''

INFRA_TEST_HEALTHCHECK = """\
import contextlib
import http.server
import io
import json
import socket
import threading
import unittest

from scripts import healthcheck


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(self.server.answer).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class HealthcheckTests(unittest.TestCase):
    def serve(self, answer):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
        server.answer = answer
        serve = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        serve.start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return "http://127.0.0.1:%d" % server.server_address[1]

    def run_main(self, *argv):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return healthcheck.main(list(argv))

    def test_a_healthy_service_exits_0(self):
        self.assertEqual(self.run_main(self.serve({"status": "ok"}), "--timeout", "5"), 0)

    def test_an_unhealthy_service_exits_1_after_the_timeout(self):
        url = self.serve({"status": "starting"})
        self.assertEqual(self.run_main(url, "--timeout", "0.2", "--interval", "0.05"), 1)

    def test_nothing_listening_exits_1(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = "http://127.0.0.1:%d" % port
        self.assertEqual(self.run_main(url, "--timeout", "0.1", "--interval", "0.05"), 1)
"""

INFRA_DEPLOY_WAIT = """
# The deploy has failed unless the service answers its health check.
if ! python3 "$HERE/scripts/healthcheck.py" --timeout 60 "http://$HOST/api"; then
    echo "deploy.sh: the items service on $HOST did not come up" >&2
    exit 1
fi
"""

INFRA_LOGROTATE = """\
# Install as /etc/logrotate.d/items on the host.
/var/log/nginx/items.*.log {
    daily
    rotate 14
    missingok
    notifempty
    compress
    delaycompress
    sharedscripts
    postrotate
        [ -s /run/nginx.pid ] && kill -USR1 "$(cat /run/nginx.pid)"
    endscript
}
"""


# --- The beads ---------------------------------------------------------------
# `key` names a bead inside this file; `commit` (closed beads) is the subject of
# the commit that did the work, whose SHA the bead records.

BEADS = [
    dict(
        key="api-health",
        repo="demo-api",
        title="Add a /health endpoint",
        issue_type="chore",
        priority=2,
        labels=["ops"],
        scope=["service/app.py"],
        description="Load balancers and the deploy script need a cheap way to tell "
        "whether the service is up.",
        acceptance_criteria='GET /health answers 200 with {"status": "ok"}.',
        status="closed",
        commit="Start the items service with a health check",
    ),
    dict(
        key="api-errors",
        repo="demo-api",
        title="Return JSON errors instead of plain text",
        issue_type="bug",
        priority=0,
        labels=["api", "bug"],
        scope=["service/app.py", "tests/test_errors.py"],
        description=with_edits(
            "Unknown paths and bad requests answer with text/plain bodies such as "
            "`Not Found`, so the web client cannot show a useful message. Every error "
            "response should be JSON.",
            insert_after("service/app.py", API_RESPOND, API_RESPOND_JSON_ERRORS),
            write("tests/test_errors.py", API_TEST_ERRORS),
        ),
        acceptance_criteria="- 404 and 400 responses have Content-Type application/json\n"
        '- the body is {"error": "<message>"}\n'
        "- tests cover an unknown path and a POST without a title",
    ),
    dict(
        key="api-item",
        repo="demo-api",
        title="Add GET /items/<id>",
        issue_type="feature",
        priority=1,
        labels=["api", "endpoint"],
        scope=["service/app.py", "tests/test_item.py"],
        description=with_edits(
            "The web client's item page needs one item at a time. Add a route "
            "that returns a single item from the store.",
            insert_after("service/app.py", API_PATH_LINE, API_ITEM_ROUTE),
            write("tests/test_item.py", API_TEST_ITEM),
        ),
        acceptance_criteria="- GET /items/1 returns the item as JSON with 200\n"
        "- an unknown or non-numeric id returns 404 with a JSON error\n"
        "- tests cover both",
    ),
    dict(
        key="api-tags",
        repo="demo-api",
        title="Tags on items",
        issue_type="epic",
        priority=1,
        labels=["tags"],
        scope=["service/**", "tests/**"],
        description="Let people tag items and filter by tag, in the service and in the "
        "web client. The child beads carry the work; the epic closes when they have landed.",
        acceptance_criteria="Items can be created with tags and listed by tag, and the web "
        "client shows them.",
    ),
    dict(
        key="api-tags-store",
        repo="demo-api",
        title="Store tags on items",
        issue_type="feature",
        priority=2,
        labels=["tags", "store"],
        scope=["service/store.py", "tests/test_store.py"],
        description=with_edits(
            "ItemStore.add takes an optional list of tags; every item carries a "
            "`tags` list, and ItemStore.list can keep to one tag.",
            replace("service/store.py", API_STORE_ADD, API_STORE_ADD_TAGS),
            replace("service/store.py", API_STORE_LIST, API_STORE_LIST_TAG),
            append("tests/test_store.py", API_TEST_STORE_TAGS),
        ),
        acceptance_criteria="- add(title, tags=[...]) stores lowercase, unique, sorted tags\n"
        "- items added without tags have tags == []\n"
        "- the existing store tests still pass",
    ),
    dict(
        key="api-tags-filter",
        repo="demo-api",
        title="Filter GET /items by ?tag=",
        issue_type="feature",
        priority=2,
        labels=["tags", "api"],
        scope=["service/app.py", "tests/test_tags_filter.py"],
        description=with_edits(
            "GET /items?tag=home returns only the items tagged `home`; POST /items "
            "accepts a `tags` list.",
            insert_after("service/app.py", API_IMPORT_JSON, API_IMPORT_PARSE_QS),
            replace("service/app.py", API_LIST_ITEMS, API_LIST_ITEMS_BY_TAG),
            replace("service/app.py", API_READ_TITLE, API_READ_BODY),
            replace("service/app.py", API_ADD_ITEM, API_ADD_ITEM_WITH_TAGS),
            write("tests/test_tags_filter.py", API_TEST_TAGS_FILTER),
        ),
        acceptance_criteria="- ?tag= filters; without it every item is listed\n"
        "- POST /items stores the given tags\n"
        "- tests cover both",
    ),
    dict(
        key="api-persist",
        repo="demo-api",
        title="Persist items to a JSON file",
        issue_type="feature",
        priority=3,
        labels=["store"],
        scope=["service/store.py", "tests/test_store.py"],
        description=with_edits(
            "Items vanish when the service restarts. Save them to the JSON file "
            "named by ITEMS_FILE. Deferred until we decide whether to move to SQLite.",
            block("fail", "decide between a JSON file and SQLite first"),
        ),
        acceptance_criteria="Items added before a restart are listed after it.",
        status="deferred",
    ),
    dict(
        key="api-readme",
        repo="demo-api",
        title="Document every route in the README",
        issue_type="chore",
        priority=4,
        labels=["docs"],
        scope=["README.md"],
        description=with_edits(
            "Give each route an example request and response.",
            append("README.md", API_README_EXAMPLES),
        ),
        acceptance_criteria="README.md has a section per route, GET /items/<id> included.",
    ),
    dict(
        key="web-list",
        repo="demo-web",
        title="Render the item list from the API",
        issue_type="feature",
        priority=1,
        labels=["frontend"],
        scope=["index.html", "js/**", "css/style.css"],
        description="Replace the static placeholder list with the items from GET /items, "
        "and add a form that creates items.",
        acceptance_criteria="The page lists the service's items and the form adds one.",
        status="closed",
        commit="Fetch items from the API",
    ),
    dict(
        key="web-item-page",
        repo="demo-web",
        title="Add an item page that calls GET /items/<id>",
        issue_type="feature",
        priority=1,
        labels=["frontend"],
        scope=["item.html", "js/item.js", "js/api.js", "js/app.js"],
        description=with_edits(
            "Clicking an item opens item.html?id=<id>, which loads that item with "
            "the service's new endpoint.",
            write("item.html", WEB_ITEM_PAGE),
            write("js/item.js", WEB_ITEM_JS),
            append("js/api.js", WEB_GET_ITEM_JS),
            replace("js/app.js", WEB_ITEM_TITLE, WEB_ITEM_LINK),
        ),
        acceptance_criteria="- api.js has getItem(id)\n"
        "- item.html shows the title and whether the item is done\n"
        "- python3 tools/check_site.py passes",
    ),
    dict(
        key="web-error-banner",
        repo="demo-web",
        title="Show the API's error message in a banner",
        issue_type="bug",
        priority=1,
        labels=["frontend", "bug"],
        scope=["js/app.js", "js/api.js", "css/style.css", "index.html"],
        description=with_edits(
            "When a request fails the page only says 'Could not load items.' Once "
            "the service answers with JSON errors, show their message in a banner the "
            "user can dismiss.",
            replace("js/api.js", WEB_THROW, WEB_THROW_SERVICE_MESSAGE),
            replace("js/app.js", WEB_LOAD_FAILED, WEB_LOAD_FAILED_BANNER),
            replace("js/app.js", WEB_ADD_ITEM, WEB_ADD_ITEM_OR_BANNER),
            append("js/app.js", WEB_BANNER_JS),
            insert_after("index.html", WEB_MAIN_TAG, WEB_BANNER_HTML),
            insert_after("css/style.css", WEB_CSS_MAIN, WEB_BANNER_CSS),
        ),
        acceptance_criteria="- a failed request shows the service's error message\n"
        "- the banner has a close button\n"
        "- python3 tools/check_site.py passes",
    ),
    dict(
        key="web-tags",
        repo="demo-web",
        title="Show tag chips on items",
        issue_type="feature",
        priority=2,
        labels=["tags", "frontend"],
        scope=["js/app.js", "css/style.css"],
        description=with_edits(
            "Render each item's tags as small chips after its title.",
            insert_after("js/app.js", WEB_DONE_TOGGLE, WEB_TAG_CHIPS),
            insert_after("css/style.css", WEB_CSS_ITEM, WEB_CHIP_CSS),
        ),
        acceptance_criteria="Items with tags show one chip per tag; items without show none.",
    ),
    dict(
        key="web-contrast",
        repo="demo-web",
        title="Raise the contrast of muted text",
        issue_type="bug",
        priority=3,
        labels=["a11y"],
        scope=["css/style.css"],
        description=with_edits(
            "`.muted` is #aaa on white, a contrast ratio of about 2.3:1. WCAG AA "
            "asks for 4.5:1 for body text; #6b6b6b gives 5.3:1.",
            replace("css/style.css", WEB_MUTED_OLD, WEB_MUTED_NEW),
        ),
        acceptance_criteria=".muted text has a contrast ratio of at least 4.5:1 on the page "
        "background.",
    ),
    dict(
        key="web-logo",
        repo="demo-web",
        title="Use the new logo in the header",
        issue_type="task",
        priority=3,
        labels=["design"],
        scope=["index.html", "about.html", "css/style.css", "img/**"],
        description=with_edits(
            "Put the new logo at the left of the header on every page.",
            block("fail", "the logo files from design have not arrived yet"),
        ),
        acceptance_criteria="Every page shows the logo; python3 tools/check_site.py passes.",
        status="blocked",
        last_failure="Waiting for the logo files from design.",
    ),
    dict(
        key="web-dark",
        repo="demo-web",
        title="Dark mode",
        issue_type="feature",
        priority=4,
        labels=["design"],
        scope=["css/**"],
        description=with_edits(
            "Follow prefers-color-scheme. Deferred until the contrast fix has landed.",
            append("css/style.css", WEB_DARK_CSS),
        ),
        acceptance_criteria="With a dark system theme the page is dark and stays readable.",
        status="deferred",
    ),
    dict(
        key="infra-web-root",
        repo="demo-infra",
        title="Serve the web folder from nginx",
        issue_type="task",
        priority=1,
        labels=["nginx"],
        scope=["config/**", "scripts/render_config.py"],
        description="nginx answers 503 for everything; serve the web client's files instead.",
        acceptance_criteria="/ serves index.html from web_root; unknown paths fall back to it.",
        status="closed",
        commit="Serve the web folder from nginx",
    ),
    dict(
        key="infra-proxy",
        repo="demo-infra",
        title="Proxy /api/ to the items service",
        issue_type="task",
        priority=1,
        labels=["nginx"],
        scope=["config/**", "scripts/render_config.py", "tests/test_render_config.py"],
        description=with_edits(
            "Add api_upstream to config/site.json and a `location /api/` block that "
            "proxies to it, so the web client can call /api/items.",
            replace("config/site.json", INFRA_WEB_ROOT, INFRA_WEB_ROOT_AND_UPSTREAM),
            insert_after("config/nginx.conf.tmpl", INFRA_TRY_FILES, INFRA_API_LOCATION),
            replace("scripts/render_config.py", INFRA_REQUIRED_WEB_ROOT, INFRA_REQUIRED_UPSTREAM),
            append("tests/test_render_config.py", INFRA_TEST_PROXY),
        ),
        acceptance_criteria="- the rendered config proxies /api/ to http://<api_upstream>/\n"
        "- validate() requires api_upstream\n"
        "- python3 -m unittest -q passes",
    ),
    dict(
        key="infra-tls",
        repo="demo-infra",
        title="Renew the TLS certificate automatically",
        issue_type="task",
        priority=0,
        labels=["ops", "security"],
        scope=["config/**", "scripts/renew_cert.sh", "tests/test_tls.py"],
        description=with_edits(
            "The certificate for items.example.com expires in nine days and is "
            "renewed by hand. Add a renewal script and listen on 443.",
            insert_after("config/site.json", INFRA_SITE_OPEN, INFRA_SITE_CERTIFICATE),
            insert_after("config/nginx.conf.tmpl", INFRA_LISTEN, INFRA_LISTEN_TLS),
            write("scripts/renew_cert.sh", INFRA_RENEW_CERT),
            write("tests/test_tls.py", INFRA_TEST_TLS),
        ),
        acceptance_criteria="- scripts/renew_cert.sh renews with certbot and reloads nginx\n"
        "- the rendered config listens on 443 with the certificate",
    ),
    dict(
        key="infra-healthcheck",
        repo="demo-infra",
        title="Add a deploy health check script",
        issue_type="feature",
        priority=2,
        labels=["deploy"],
        scope=["scripts/healthcheck.py", "tests/test_healthcheck.py"],
        description=with_edits(
            "scripts/healthcheck.py URL polls URL/health until it answers "
            '{"status": "ok"} or a timeout passes.',
            write("scripts/healthcheck.py", INFRA_HEALTHCHECK),
            write("tests/test_healthcheck.py", INFRA_TEST_HEALTHCHECK),
        ),
        acceptance_criteria="- exit 0 when healthy, 1 after the timeout\n"
        "- --timeout sets the limit in seconds\n"
        "- tests run against a local http.server",
    ),
    dict(
        key="infra-deploy-wait",
        repo="demo-infra",
        title="Make deploy.sh wait for the health check",
        issue_type="task",
        priority=2,
        labels=["deploy"],
        scope=["scripts/deploy.sh"],
        description=with_edits(
            "After reloading nginx, run scripts/healthcheck.py and fail the deploy "
            "if the service does not come up.",
            append("scripts/deploy.sh", INFRA_DEPLOY_WAIT),
        ),
        acceptance_criteria="deploy.sh exits non-zero when the health check fails.",
    ),
    dict(
        key="infra-logrotate",
        repo="demo-infra",
        title="Rotate nginx logs daily",
        issue_type="chore",
        priority=3,
        labels=["ops"],
        scope=["config/logrotate.conf"],
        description=with_edits(
            "items.access.log grows without bound. Rotate daily, keep 14 days.",
            write("config/logrotate.conf", INFRA_LOGROTATE),
        ),
        acceptance_criteria="config/logrotate.conf rotates /var/log/nginx/items.*.log daily.",
    ),
]

# (dependent, depends on, type)
DEPENDENCIES = [
    ("api-item", "api-errors", "blocks"),
    ("api-readme", "api-item", "blocks"),
    ("api-readme", "api-tags-filter", "blocks"),
    ("api-tags-filter", "api-tags-store", "blocks"),
    ("api-tags-store", "api-tags", "parent-child"),
    ("api-tags-filter", "api-tags", "parent-child"),
    ("web-tags", "api-tags", "parent-child"),
    ("web-tags", "api-tags-store", "blocks"),
    ("web-item-page", "api-item", "blocks"),
    ("web-item-page", "infra-proxy", "blocks"),
    ("web-error-banner", "api-errors", "blocks"),
    ("web-dark", "web-contrast", "blocks"),
    ("api-errors", "web-list", "discovered-from"),
    ("infra-healthcheck", "api-health", "blocks"),
    ("infra-deploy-wait", "infra-healthcheck", "blocks"),
]

AGENTS = ["demo-1", "demo-2"]


# --- Seeding -----------------------------------------------------------------


@dataclass
class Seeded:
    already: bool = False
    repositories: list = field(default_factory=list)
    beads: list = field(default_factory=list)
    dependencies: list = field(default_factory=list)
    agents: list = field(default_factory=list)  # (agent, plain token or None if it existed)
    source_dir: object = None


def demo_slugs():
    return [spec.name for spec in REPOS]


def seed():
    """Create the demo workspace, or report the one already there."""
    existing = list(Repository.objects.filter(slug__in=demo_slugs()))
    if existing:
        return Seeded(already=True, repositories=existing)
    if shutil.which("git") is None:
        raise DemoError("git is not installed (or not on PATH); the demo needs it")
    source_dir = settings.CORRAL_HOME / "demo-src"
    made = []  # folders this run created, removed again if it fails
    try:
        sources = {spec.name: make_source(source_dir / spec.name, spec, made) for spec in REPOS}
        with transaction.atomic():
            result = seed_database(sources, made)
    except BaseException as e:
        for path in reversed(made):
            shutil.rmtree(path, ignore_errors=True)
        if isinstance(e, GitError | OSError):
            raise DemoError(str(e)) from None
        if isinstance(e, ValidationError):
            raise DemoError("; ".join(e.messages)) from None
        raise
    result.source_dir = source_dir
    return result


def seed_database(sources, made):
    workspace = Workspace.default()
    result = Seeded()
    repos = {}
    for spec in REPOS:
        prefix = spec.prefix
        if Repository.objects.filter(bead_prefix=prefix).exists():
            prefix = Repository.free_prefix(spec.prefix)
        repo = Repository.register(
            str(sources[spec.name]),
            workspace,
            name=spec.name,
            check_command=spec.check_command,
            bead_prefix=prefix,
            review_mode=spec.review_mode,
        )
        made.append(repo.canonical_path)
        repos[spec.name] = repo
        result.repositories.append(repo)
    result.beads = create_beads(repos, sources)
    result.dependencies = create_dependencies({b.demo_key: b for b in result.beads})
    result.agents = create_agents()
    return result


def create_beads(repos, sources):
    commits = {name: commits_by_subject(path) for name, path in sources.items()}
    start = timezone.now() - timedelta(days=10)
    beads = []
    for n, spec in enumerate(BEADS):
        spec = dict(spec)
        key, repo_name = spec.pop("key"), spec.pop("repo")
        subject = spec.pop("commit", None)
        bead = Bead(repository=repos[repo_name], created_at=start + timedelta(hours=5 * n), **spec)
        if bead.status == Bead.Status.CLOSED:
            sha, when = commits[repo_name].get(subject, ("", None))
            bead.commit_sha = sha
            bead.closed_at = when or timezone.now()
            bead.close_reason = "committed" if sha else "closed by hand"
        bead.full_clean(exclude=["id"])
        bead.save()
        bead.demo_key = key
        beads.append(bead)
    return beads


def create_dependencies(beads):
    made = []
    for issue, depends_on, kind in DEPENDENCIES:
        dep = Dependency(issue=beads[issue], depends_on=beads[depends_on], type=kind)
        dep.save()  # refuses a blocks cycle
        made.append(dep)
    return made


def create_agents():
    """The demo agents; one that already exists by name is kept as it is."""
    agents = []
    for name in AGENTS:
        agent = Agent.objects.filter(name=name).first()
        if agent is not None:
            agents.append((agent, None))
            continue
        agent = Agent(name=name, preset="demo", internal=True)
        agent.full_clean(exclude=["token_hash"])
        agent.save()
        agents.append((agent, agent.plain_token))
    return agents


# --- Git ---------------------------------------------------------------------

# Inherited variables that would point git at another repository or identity.
GIT_OVERRIDES = {
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
}


def git(cwd, *args, author=ADA, env=None):
    name, email = author
    argv = [
        "git",
        "-c",
        f"user.name={name}",
        "-c",
        f"user.email={email}",
        "-c",
        "commit.gpgsign=false",
        *args,
    ]
    full_env = {k: v for k, v in os.environ.items() if k not in GIT_OVERRIDES}
    full_env.update(env or {}, GIT_TERMINAL_PROMPT="0")
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=full_env, capture_output=True, text=True, check=True
        )
    except FileNotFoundError:
        raise DemoError("git is not installed (or not on PATH); the demo needs it") from None
    except subprocess.CalledProcessError as e:
        raise DemoError(f"git {args[0]} failed in {cwd}: {last_line(e.stderr)}") from None
    return done.stdout


def make_source(path, spec, made):
    """The working repository for `spec` with its commits; an existing one is reused."""
    if path.exists():
        try:
            if git(path, "rev-parse", "--show-toplevel").strip() == str(path.resolve()):
                git(path, "rev-parse", "--verify", "HEAD^{commit}")
                return path
        except DemoError:
            pass
        raise DemoError(f"{path} exists but is not a demo repository; remove it and run again")
    path.mkdir(parents=True)
    made.append(path)
    git(path, "init", "-q", "-b", "main")
    now = timezone.now()
    for subject, author, days_ago, files in spec.commits:
        for rel, text in files.items():
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(text, encoding="utf-8")
        when = f"{int((now - timedelta(days=days_ago)).timestamp())} +0000"
        git(path, "add", "-A")
        dates = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
        git(path, "commit", "-q", "-m", subject, author=author, env=dates)
    return path


def commits_by_subject(path):
    """{subject: (sha, commit time)} for the history of the working repository."""
    out = git(path, "log", "--format=%H%x1f%cI%x1f%s")
    found = {}
    for line in out.splitlines():
        sha, when, subject = line.split("\x1f", 2)
        found.setdefault(subject, (sha, datetime.fromisoformat(when)))
    return found
