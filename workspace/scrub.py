"""Take secrets out of text that agents or pages may show: gate output, refusal reasons.

A check command runs agents' code, and what it prints is stored and shown;
it may print the environment, a settings file or a connection URL. Two kinds
of secret are replaced with REDACTED: the ones this process knows (its
SECRET_KEY and any KEY_PIECE or more characters of it, the database password,
the DATABASE_URL and REDIS_URL whole and their passwords, CORRAL_ADMIN_PASSWORD)
and anything shaped like a credential (agent and session tokens, bearer
tokens and Authorization headers, a password in a URL, AWS keys, private key
blocks, common API key formats, `password=…`-like assignments). It errs on
the side of hiding too much: a check's output is for finding a bug, and no
bug needs a credential to be seen.
"""

import os
import re
from urllib.parse import unquote, urlsplit

from django.conf import settings

REDACTED = "[redacted]"
KEY_PIECE = 12  # any run of this many characters of SECRET_KEY counts as the key
MIN_KNOWN = 4  # a known secret shorter than this would match all over ordinary text

# Shapes of credentials: each match is replaced whole, or only its `secret` group.
SHAPES = [
    # A private key, from its BEGIN line to its END line (or the end of the text).
    re.compile(
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
        re.DOTALL,
    ),
    # Corral's own agent (crl_) and session (crs_) tokens.
    re.compile(r"\bcr[ls]_[A-Za-z0-9_\-]{8,}"),
    # A password in any URL: scheme://user:password@host, scheme://:password@host.
    re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:(?P<secret>[^\s@/]+)@"),
    # HTTP credentials: an Authorization header's value, a bearer token anywhere.
    re.compile(r"(?i)\bauthorization\s*[:=]\s*(?:[A-Za-z]+\s+)?(?P<secret>[^\s\"',;]+)"),
    re.compile(r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9\-._~+/]{8,}=*)"),
    # AWS access key ids (the secret keys are caught by their names below).
    re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA)[A-Z0-9]{16}\b"),
    # GitHub, Slack, OpenAI/Anthropic-style and Google API keys.
    re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}"),
    re.compile(r"\bAIza[A-Za-z0-9_\-]{30,}"),
    # NAME=value, NAME: value, "name": "value" where the name says it is secret.
    re.compile(
        r"(?i)\b[A-Za-z0-9_.\-]*(?:secret|passw(?:or)?d|pwd|token|api[_-]?key|"
        r"access[_-]?key|private[_-]?key|credentials?)[A-Za-z0-9_.\-]*[\"']?[ \t]*[:=][ \t]*"
        r"[\"']?(?P<secret>[^\s\"',;]{4,})"
    ),
]


def scrub(text: str) -> str:
    """`text` with every secret it shows replaced by REDACTED (and any NUL by
    U+FFFD: program output may hold one, and PostgreSQL cannot store it)."""
    if not text:
        return text
    text = text.replace("\x00", "\ufffd")
    text = hide_key(text, str(getattr(settings, "SECRET_KEY", "") or ""))
    for secret in known_secrets():
        text = text.replace(secret, REDACTED)
    for shape in SHAPES:
        text = shape.sub(redact, text)
    return text


def redact(match: re.Match[str]) -> str:
    if "secret" not in match.re.groupindex or match.group("secret") is None:
        return REDACTED
    start, end = match.start("secret") - match.start(), match.end("secret") - match.start()
    whole = match.group(0)
    return whole[:start] + REDACTED + whole[end:]


def hide_key(text: str, key: str) -> str:
    """Replace every run of KEY_PIECE or more characters of the key.

    Such a run is covered by the key's KEY_PIECE-character windows found in
    the text (overlapping finds merged), so the whole run goes, not just a
    multiple of KEY_PIECE of it.
    """
    if len(key) < MIN_KNOWN:
        return text
    windows = {key[i : i + KEY_PIECE] for i in range(max(1, len(key) - KEY_PIECE + 1))}
    found = [w for w in windows if w in text]
    if not found:
        return text
    spans: list[list[int]] = []
    for window in sorted(found):
        start = text.find(window)
        while start != -1:
            spans.append([start, start + len(window)])
            start = text.find(window, start + 1)
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, last = [], 0
    for start, end in merged:
        out += [text[last:start], REDACTED]
        last = end
    return "".join([*out, text[last:]])


def known_secrets() -> list[str]:
    """Secrets this process holds, longest first; read each time, as settings may change."""
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = str(getattr(settings, "REDIS_URL", "") or os.environ.get("REDIS_URL", ""))
    database = settings.DATABASES.get("default", {})
    found = {
        database_url,
        redis_url,
        os.environ.get("REDIS_URL", ""),
        password_of(database_url),
        password_of(redis_url),
        str(database.get("PASSWORD") or ""),
        os.environ.get("CORRAL_ADMIN_PASSWORD", ""),
    }
    return sorted((s for s in found if len(s) >= MIN_KNOWN), key=len, reverse=True)


def password_of(url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:
        return ""
    return unquote(password) if password else ""
