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
