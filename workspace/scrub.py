"""Take secrets out of text that agents or pages may show: gate output, refusal reasons.

A check command runs agents' code, and what it prints is stored and shown;
it may print the environment, a settings file or a connection URL. Two kinds
of secret are replaced with REDACTED: the ones this process knows (its
SECRET_KEY and any KEY_PIECE or more characters of it, the database password,
the DATABASE_URL and REDIS_URL whole and their passwords, CORRAL_ADMIN_PASSWORD)
and anything shaped like a credential (agent, session and person tokens, bearer
tokens and Authorization headers, a password in a URL, AWS keys, private key
blocks, common API key formats, `password=…`-like assignments). It errs on
the side of hiding too much: a check's output is for finding a bug, and no
bug needs a credential to be seen.
"""

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
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
    # Corral's own agent (crl_), session (crs_) and person (crp_) tokens.
    re.compile(r"\bcr[lsp]_[A-Za-z0-9_\-]{8,}"),
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


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret it shows replaced by REDACTED (and any NUL by
    U+FFFD: program output may hold one, and PostgreSQL cannot store it).
    `secrets`: more known secrets (an agent's env values, its session token)."""
    if not text:
        return text
    text = text.replace("\x00", "\ufffd")
    text = hide_key(text, str(getattr(settings, "SECRET_KEY", "") or ""))
    for secret in longest_first([*known_secrets(), *secrets]):
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
    return longest_first(found)


def longest_first(secrets: Iterable[str]) -> list[str]:
    """Each secret long enough to look for, once, the longest first (so a
    secret holding another is replaced whole)."""
    return sorted({s for s in secrets if len(s) >= MIN_KNOWN}, key=len, reverse=True)


def password_of(url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:
        return ""
    return unquote(password) if password else ""


# --- Text that arrives in pieces ------------------------------------------------
#
# A log reaches Corral in pieces: the runner reads an agent's output as it
# comes, and each log call an agent makes brings one. A secret cut in two by a
# piece's end would pass scrub() as two halves, neither shaped like a secret.
# So the end of a piece that may be the beginning of a secret is held back and
# scrubbed with what follows.

HOLD_CHARS = 256  # the longest end of a piece held as a secret's possible beginning
LINE_HOLD_CHARS = 4096  # an output's unfinished line, held whole up to this
KEY_HOLD_CHARS = 65_536  # a private key block, held until its END line up to this
# The literal beginnings of the SHAPES' credentials: a word that is one of
# them ("sk-…") or the start of one ("s", "cr") may go on into a secret.
PREFIXES = (
    *("crs_", "crl_", "crp_", "sk-", "AIza", "github_pat_"),
    *("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    *("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-"),
    *("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA"),
)
# What may follow a piece's end: a shape's match that runs on into one of
# these began with the piece's end, and the rest of it may be coming.
PROBES = tuple(glue + "A1" * 32 for glue in ("", " ", "=", ": "))
WHOLE_CORRAL_TOKEN = re.compile(r"\bcr[lsp]_[A-Za-z0-9_\-]{43}\Z")  # nothing can follow it
KEY_BEGIN = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
KEY_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY-----")
KEY_HEADER_SO_FAR = re.compile(r"-----BEGIN [A-Z0-9 \-]{0,60}")
DASHES_AT_END = re.compile(r"(?<![A-Za-z0-9\-])-[\-A-Z]{0,10}\Z")
WORD_AT_END = re.compile(r"[A-Za-z0-9_\-]*\Z")
SECRET_NAME = re.compile(r"(?i)secret|passw|pwd|token|key|auth|credential|cookie|session")
LOOKS_RANDOM_CHARS = 16
HOLD_ROUNDS = 8  # a cut moved earlier is checked again; a real text settles in two


class Stream:
    """Scrubs a text that arrives in pieces. `held` is what waits for the next
    piece (between log calls, the caller keeps it); with `lines` (an agent's
    output) an unfinished line waits for its end too."""

    def __init__(self, secrets: Iterable[str] = (), held: str = "", lines: bool = False) -> None:
        self.secrets = longest_first(secrets)
        self.held = held
        self.lines = lines

    def feed(self, text: str) -> str:
        """What may be shown now of the text so far, scrubbed."""
        text = self.held + text
        cut = hold_from(text, self.secrets, self.lines)
        self.held = text[cut:]
        return scrub(text[:cut], self.secrets)

    def finish(self) -> str:
        """What was held, scrubbed: nothing more comes to complete it."""
        text, self.held = self.held, ""
        return scrub(text, self.secrets)


def hold_from(text: str, secrets: list[str], lines: bool = False) -> int:
    """Where the end of `text` that may go on into the next piece begins
    (len(text): none). What is shown before it must itself end nowhere inside
    a secret (a line held may be a key block's last): asked again of it."""
    cut = len(text)
    for _ in range(HOLD_ROUNDS):
        earlier = first_held(text[:cut], secrets, lines)
        if earlier == cut:
            break
        cut = earlier
    return cut


def first_held(text: str, secrets: list[str], lines: bool) -> int:
    line = max(text.rfind("\n"), text.rfind("\r")) + 1
    starts = [len(text), open_key(text)]
    if lines and len(text) - line <= LINE_HOLD_CHARS:
        starts.append(line)
    if not WHOLE_CORRAL_TOKEN.search(text):
        starts += shapes_running_on(text) + prefix_word(text)
    starts += secret_beginnings(text, secrets)
    return min(starts)


def open_key(text: str) -> int:
    """Where a private key block begins whose END line has not come (or whose
    BEGIN line is still coming); else len(text)."""
    begin = text.rfind("-----BEGIN ")
    if begin != -1 and len(text) - begin <= KEY_HOLD_CHARS:
        header_end = text.find("\n", begin)
        if header_end == -1:
            if KEY_HEADER_SO_FAR.fullmatch(text, begin):
                return begin
        elif KEY_BEGIN.match(text[begin:header_end]) and not KEY_END.search(text, begin):
            return begin
    dashes = DASHES_AT_END.search(text)
    if dashes and "-----BEGIN".startswith(dashes.group()):
        return dashes.start()
    return len(text)


def shapes_running_on(text: str) -> list[int]:
    """Where each credential begins that more text could make (or make longer):
    a shape's match that runs on into a probe began in the text."""
    tail = text[-HOLD_CHARS:]
    base = len(text) - len(tail)
    found = []
    for probe in PROBES:
        probed = tail + probe
        for shape in SHAPES:
            found += [
                base + m.start() for m in shape.finditer(probed) if m.start() < len(tail) < m.end()
            ]
    return found


def prefix_word(text: str) -> list[int]:
    """Where the last word begins, if it is or begins a credential's prefix (at
    a word boundary, as the SHAPES see one: its start, or after a hyphen)."""
    tail = text[-HOLD_CHARS:]
    word = WORD_AT_END.search(tail)
    assert word is not None  # it matches the empty word
    base = len(text) - len(tail) + word.start()
    found = []
    for at in [0, *(i + 1 for i, char in enumerate(word.group()) if char == "-")]:
        rest = word.group()[at:]
        if rest and any(p.startswith(rest) or rest.startswith(p) for p in PREFIXES):
            found.append(base + at)
    return found


def secret_beginnings(text: str, secrets: list[str]) -> list[int]:
    """Where a known secret's beginning (not the whole of it) ends the text."""
    found = []
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(text)), 0, -1):
            if text.endswith(secret[:size]):
                found.append(len(text) - size)
                break
    return found


def env_secrets(env: Mapping[str, Any]) -> list[str]:
    """The values of an agent's env that are secrets, as far as can be told:
    each whose name says so (…KEY, …TOKEN, …SECRET, …PASSWORD, …AUTH…), and
    any other that reads like a key (LOOKS_RANDOM_CHARS or more, no spaces or
    slashes, upper and lower case letters and digits mixed). A model's name or
    a path is left alone: hiding it would garble the log for nothing."""
    found = []
    for name, value in (env or {}).items():
        value = str(value)
        if SECRET_NAME.search(str(name)) or looks_random(value):
            found.append(value)
    return longest_first(found)


def looks_random(value: str) -> bool:
    return (
        len(value) >= LOOKS_RANDOM_CHARS
        and not re.search(r"[\s/]", value)
        and bool(re.search(r"[a-z]", value))
        and bool(re.search(r"[A-Z]", value))
        and bool(re.search(r"[0-9]", value))
    )
