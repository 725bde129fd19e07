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
