"""Where Corral's own outgoing requests (webhooks) may go, and how they are sent.

A webhook's URL is written by a person, but what it names can point inward: a
name that resolves to 127.0.0.1, the cloud's metadata service at
169.254.169.254, a database on the private network. Its receiver could also
answer with a redirect to any of those. So a destination is refused unless
every address its host resolves to is a global (public) one, unless
CORRAL_WEBHOOK_ALLOW_PRIVATE is on; this is checked when the webhook is saved
and again at each send, since DNS can change. The request then goes to the
address that was checked (no second lookup for DNS to answer differently),
and a redirect is never followed: it is an answer like any other that is not
a 2xx, a failed delivery with its reason.
"""

import http.client
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

ALLOW_SETTING = "CORRAL_WEBHOOK_ALLOW_PRIVATE"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """A destination Corral does not send to; the message says why."""


@dataclass
class Answer:
    status: int
    reason: str
    location: str  # a redirect's Location, else ""


@dataclass
class Target:
    scheme: str
    host: str
    port: int
    path: str


def target_of(url: str) -> Target:
    """The URL's parts a request needs; Refused if it is not http(s) with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise Refused(f"{url!r} is not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(f"{url!r} is not an http:// or https:// URL with a host")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname, port or default, path)


def kind_of(address: Address) -> str:
    """What makes an address off limits ("" for a global one)."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        return kind_of(mapped)
    kinds = [
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not public", not address.is_global),
    ]
    return next((kind for kind, found in kinds if found), "")


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to (OSError when it resolves to none)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


def check(host: str, addresses: list[Address]) -> None:
    """Refused unless every address is public (or the setting allows any)."""
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return
    for address in addresses:
        if kind := kind_of(address):
            shown = host if host == str(address) else f"{host} resolves to {address}, which"
            raise Refused(
                f"{shown} is a {kind} address: webhooks go only to public addresses "
                f"(set {ALLOW_SETTING}=1 to allow private ones)"
            )


def check_url(url: str) -> None:
    """When a webhook is saved: Refused for a destination off limits. A name
    that does not resolve now passes (it is checked again at each send)."""
    target = target_of(url)
    try:
        addresses = resolve(target.host, target.port)
    except OSError:
        return
    check(target.host, addresses)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
    """POST `body` to `url`, to an address just checked, following no redirect.
    Raises Refused, or OSError when no address answers."""
    target = target_of(url)
    addresses = resolve(target.host, target.port)
    check(target.host, addresses)
    error: OSError = OSError(f"{target.host} has no address")
    for address in addresses:
        connection = pinned(target, address, timeout)
        try:
            connection.request("POST", target.path, body=body, headers=dict(headers))
            response = connection.getresponse()
            response.read()
            return Answer(response.status, response.reason, response.getheader("Location") or "")
        except OSError as e:
            error = e  # the next address, if the host has another
        finally:
            connection.close()
    raise error


def pinned(target: Target, address: Address, timeout: float) -> http.client.HTTPConnection:
    """A connection to `target` (its Host header, and for https its name for
    TLS) that opens its socket to `address`, not to what DNS says next."""
    kind = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    connection = kind(target.host, target.port, timeout=timeout)

    def connect(where: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        return socket.create_connection((str(address), where[1]), *args, **kwargs)

    connection._create_connection = connect  # type: ignore[attr-defined]
    return connection
