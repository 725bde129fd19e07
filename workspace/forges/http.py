"""A small JSON-over-HTTP client for the forges' REST APIs (stdlib urllib).

What every forge adapter shares: the token in a header and nowhere else (never
in a URL, an exception's text or a log line), conditional GETs (a response's
ETag is sent back as If-None-Match, and a 304 answers from the copy kept, which
GitHub does not count against the rate limit), and rate limits honoured: a 429,
or a 403 saying the limit is spent, names when to come back (`Retry-After`
seconds, or the `X-RateLimit-Reset` / `RateLimit-Reset` epoch). A short wait is
slept once and the request made again; a longer one raises RateLimited and
every call to that forge host fails fast until then, without a request: the
caller tries again later (the poll is scheduled), never in a loop.
"""

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_S = 20.0
SLEEP_AT_MOST_S = 5.0  # a wait this short is slept once; a longer one is left to a later poll
DEFAULT_WAIT_S = 60.0  # a rate limit that names no time
CACHED = 256  # ETag'd responses kept per client
BODY_SHOWN = 300  # characters of an error body quoted in an exception

# host -> monotonic time before which no request is sent there (a rate limit).
_blocked: dict[str, float] = {}
_blocked_lock = threading.Lock()


class ForgeError(Exception):
    """The forge refused or failed a request; `status` is its HTTP status (0: unreachable)."""

    def __init__(self, message: str, status: int = 0, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class RateLimited(ForgeError):
    """The forge's rate limit is spent until `wait_s` from now."""

    def __init__(self, host: str, wait_s: float) -> None:
        super().__init__(f"{host}: rate limited for {wait_s:.0f} s more", status=429)
        self.wait_s = wait_s


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]
    cached: bool = False  # a 304 answered from the copy kept


@dataclass
class Client:
    """One forge's API at `base` (e.g. https://api.github.com, https://host/api/v4)."""

    base: str
    auth: dict[str, str]  # the header(s) carrying the token
    accept: str = "application/json"
    extra: dict[str, str] = field(default_factory=dict)
    sleep_at_most_s: float = SLEEP_AT_MOST_S
    cache: "OrderedDict[str, tuple[str, Any]]" = field(default_factory=OrderedDict)
    requests: int = 0  # made over the network (a test counts them)

    def __repr__(self) -> str:  # the token is never shown
        return f"<forge client {self.base}>"

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.base).netloc

    def url(self, path: str, query: dict[str, Any] | None = None) -> str:
        url = self.base.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return url

    def get(self, path: str, query: dict[str, Any] | None = None) -> Response:
        return self.call("GET", path, query=query)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (),
    ) -> Response:
        """The response of a 2xx (or a status in `ok`); ForgeError otherwise."""
        url = self.url(path, query)
        for attempt in range(2):
            self.wait_out_limit()
            try:
                response = self.send(method, url, body)
            except urllib.error.HTTPError as e:
                response = self.error_response(e)
            if (wait := rate_limit_wait(response)) is None:
                break
            self.block(wait)
            if attempt or wait > self.sleep_at_most_s:
                raise RateLimited(self.host, wait)
            time.sleep(wait)
        if response.status == 304 and url in self.cache:
            kept = self.cache[url][1]
            return Response(200, kept, response.headers, cached=True)
        if 200 <= response.status < 300 or response.status in ok:
            if method == "GET" and (etag := response.headers.get("etag")):
                self.keep(url, etag, response.body)
            return response
        raise ForgeError(
            f"{method} {path}: {response.status} {quote(response.body)}",
            response.status,
            response.body,
        )

    def send(self, method: str, url: str, body: Any) -> Response:
        headers = {"Accept": self.accept, "User-Agent": "corral", **self.extra, **self.auth}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if method == "GET" and url in self.cache:
            headers["If-None-Match"] = self.cache[url][0]
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as reply:  # noqa: S310
                return Response(reply.status, parse(reply.read()), lower(reply.headers))
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ForgeError(f"{method} {self.host}: unreachable ({reason})") from None

    @staticmethod
    def error_response(e: urllib.error.HTTPError) -> Response:
        try:
            raw = e.read()
        except OSError:
            raw = b""
        return Response(e.code, parse(raw), lower(e.headers))

    def keep(self, url: str, etag: str, body: Any) -> None:
        self.cache[url] = (etag, body)
        self.cache.move_to_end(url)
        while len(self.cache) > CACHED:
            self.cache.popitem(last=False)

    def block(self, wait_s: float) -> None:
        with _blocked_lock:
            until = time.monotonic() + wait_s
            _blocked[self.host] = max(_blocked.get(self.host, 0.0), until)

    def wait_out_limit(self) -> None:
        """Fail fast while the host's limit is spent (a short rest is slept)."""
        with _blocked_lock:
            left = _blocked.get(self.host, 0.0) - time.monotonic()
        if left <= 0:
            return
        if left > self.sleep_at_most_s:
            raise RateLimited(self.host, left)
        time.sleep(left)


def forget_limits() -> None:
    """Every host's rate limit forgotten (a test starts clean)."""
    with _blocked_lock:
        _blocked.clear()


def rate_limit_wait(response: Response) -> float | None:
    """Seconds to wait when `response` says the rate limit is spent, else None."""
    headers = response.headers
    if response.status not in (403, 429):
        return None
    spent = headers.get("x-ratelimit-remaining") == "0" or headers.get("ratelimit-remaining") == "0"
    if response.status == 403 and not (spent or "retry-after" in headers):
        return None  # a plain permission refusal
    if (after := headers.get("retry-after")) is not None:
        try:
            return max(0.0, float(after))
        except ValueError:
            pass
    reset = headers.get("x-ratelimit-reset") or headers.get("ratelimit-reset")
    if reset is not None:
        try:
            return max(0.0, float(reset) - time.time())
        except ValueError:
            pass
    return DEFAULT_WAIT_S


def parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()} if headers else {}


def quote(body: Any) -> str:
    """What a forge said, short: its `message` when it has one."""
    if isinstance(body, dict):
        text = str(body.get("message") or body.get("error") or body)
    else:
        text = str(body or "")
    return text[:BODY_SHOWN]
