"""Read-only git over smart HTTP: `git clone http://HOST/git/<slug>.git`.

An agent authenticates with its token as the password of HTTP Basic (any user
name), as GitHub takes tokens; a session token opens only its session's
repository, an agent token every active one. Requests go to `git
http-backend` (argv, CGI environment), only its two read operations:
`info/refs?service=git-upload-pack` and `git-upload-pack`. A push is refused
before git runs. The slug is matched against a strict pattern and must name a
repository whose canonical copy is a real folder inside REPOS_DIR (no `..`,
no `%2e%2e`, no symlink out).
"""

import base64
import binascii
import io
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from agents.models import Agent
from workspace import gitops
from workspace.models import Repository

# <slug>.git/<what>: a slug is Django's slug pattern; `what` one of git's reads.
PATH = re.compile(r"(?P<slug>[-a-zA-Z0-9_]+)\.git/(?P<what>info/refs|git-upload-pack)")
UPLOAD_PACK = "git-upload-pack"
PUSH = re.compile(r"(^|/)git-receive-pack$")
GIT_PROTOCOL = re.compile(r"^version=\d$")
MAX_REQUEST = 64 * 1024 * 1024  # an upload-pack request lists wants and haves: never this big
CHUNK = 64 * 1024
OUT_CHUNK = 1024 * 1024
REALM = 'Basic realm="Corral git", charset="UTF-8"'


def refuse(status: int, reason: str) -> HttpResponse:
    response = HttpResponse(reason + "\n", status=status, content_type="text/plain")
    if status == 401:
        response["WWW-Authenticate"] = REALM
    return response


@csrf_exempt  # git sends no CSRF token; the Basic token is the credential
def serve(request: HttpRequest, path: str) -> HttpResponseBase:
    if PUSH.search(path) or request.GET.get("service") == "git-receive-pack":
        return refuse(403, "Corral's git over HTTP is read-only: submit a patch through the API.")
    agent = agent_of(request)
    if agent is None:
        return refuse(401, "Give an agent token as the password of HTTP Basic.")
    match = PATH.fullmatch(path)
    if match is None or not well_formed(request, match["what"]):
        return refuse(404, "Not a repository path Corral serves.")
    repo = readable(agent, match["slug"])
    if repo is None:
        return refuse(404, "No such repository for this token.")
    return backend(request, repo, match["what"])


def agent_of(request: HttpRequest) -> Agent | None:
    kind, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _, _, token = decoded.partition(":")
    return Agent.objects.authenticate(token)


def well_formed(request: HttpRequest, what: str) -> bool:
    if what == "info/refs":
        return request.method in ("GET", "HEAD") and request.GET.get("service") == UPLOAD_PACK
    return request.method == "POST"


def readable(agent: Agent, slug: str) -> Repository | None:
    """The repository, if this token may read it and its copy is where it must be."""
    repos = Repository.objects.filter(slug=slug)
    only = getattr(agent, "only_session", None)
    if only is not None:
        repos = repos.filter(beads__sessions__pk=only)
    else:
        repos = repos.filter(active=True)
    repo = repos.first()
    if repo is None or not inside_repos_dir(repo.canonical_path):
        return None
    return repo


def inside_repos_dir(path: Path) -> bool:
    """A real folder directly in REPOS_DIR: no symlink anywhere leads elsewhere."""
    root = Path(settings.REPOS_DIR).resolve()
    return not path.is_symlink() and path.is_dir() and path.resolve().parent == root


def backend(request: HttpRequest, repo: Repository, what: str) -> HttpResponseBase:
    body = request_body(request)
    if body is None:
        return refuse(413, "The request is too large.")
    proc = subprocess.Popen(
        ["git", *gitops.FORCED_FLAGS, "http-backend"],
        stdin=body,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=cgi_env(request, repo, what),
    )
    body.close()
    assert proc.stdout is not None
    status, headers = read_cgi_headers(proc.stdout)
    response = StreamingHttpResponse(stream(proc), status=status)
    for name, value in headers:
        response[name] = value
    return response


def request_body(request: HttpRequest) -> IO[bytes] | None:
    """The request body in a temporary file, for git's stdin; None if too large."""
    spool = tempfile.TemporaryFile()
    size = 0
    while chunk := request.read(CHUNK):
        size += len(chunk)
        if size > MAX_REQUEST:
            spool.close()
            return None
        spool.write(chunk)
    spool.seek(0)
    return spool


def cgi_env(request: HttpRequest, repo: Repository, what: str) -> dict[str, str]:
    config = [("http.receivepack", "false"), ("http.uploadpack", "true")]
    # Salvages are the next session's to start from, never anyone's to fetch.
    config.append(("uploadpack.hideRefs", gitops.SALVAGE_REFS))
    # What Corral fetched of the upstream and kept of a rewritten one: its own.
    config.append(("uploadpack.hideRefs", "refs/corral"))
    env = gitops.git_env()
    count = int(env["GIT_CONFIG_COUNT"])
    for n, (key, value) in enumerate(config, start=count):
        env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = key, value
    env["GIT_CONFIG_COUNT"] = str(count + len(config))
    env.update(
        GIT_PROJECT_ROOT=str(Path(settings.REPOS_DIR).resolve()),
        GIT_HTTP_EXPORT_ALL="1",
        PATH_INFO=f"/{repo.slug}.git/{what}",
        REQUEST_METHOD=request.method or "GET",
        QUERY_STRING=f"service={UPLOAD_PACK}" if what == "info/refs" else "",
        CONTENT_TYPE=request.headers.get("Content-Type", ""),
        REMOTE_USER="agent",
        REMOTE_ADDR=request.META.get("REMOTE_ADDR", ""),
    )
    if encoding := request.headers.get("Content-Encoding"):
        env["HTTP_CONTENT_ENCODING"] = encoding  # git gzips large requests
    if GIT_PROTOCOL.match(protocol := request.headers.get("Git-Protocol", "")):
        env["GIT_PROTOCOL"] = protocol
    return env


def read_cgi_headers(out: IO[bytes]) -> tuple[int, list[tuple[str, str]]]:
    status, headers = 200, []
    while line := out.readline().rstrip(b"\r\n"):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        else:
            headers.append((name.strip(), value.strip()))
    return status, headers


def stream(proc: subprocess.Popen[bytes]) -> Iterator[bytes]:
    out = proc.stdout
    assert isinstance(out, io.BufferedReader)  # a PIPE with the default buffering
    try:
        # read1: what the pipe has now, up to a large chunk (fewer, bigger writes).
        while chunk := out.read1(OUT_CHUNK):
            yield chunk
    finally:
        out.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
