"""The upstream's push webhook: `POST /hooks/upstream/<slug>/` from GitHub,
Gitea/Forgejo or GitLab, checked against the repository's webhook secret.

- GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`;
- Gitea and Forgejo: `X-Gitea-Signature` (or `X-Forgejo-Signature`): the hex
  HMAC-SHA256 of the body;
- GitLab: `X-Gitlab-Token`: the secret itself.

A delivery that carries none of them, or a wrong one, or comes for a
repository with no secret set, is refused (403) with the reason; nothing it
says is believed beyond "the upstream may have moved": the lead fetches the
branch itself. A push to another branch is acknowledged and ignored.

The same URL takes a repository's pull-request events (pull-request mode):
a signed `pull_request`, `merge_request`, check or status event only asks
the forge poll (agents/jobs/forge.py) to look now.
"""

import hashlib
import hmac
import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from agents import queues
from agents.jobs import forge
from workspace.models import Repository

# Each forge's event header, and its names for the events that are not pushes.
EVENT_HEADERS = ("X-GitHub-Event", "X-Gitea-Event", "X-Forgejo-Event", "X-Gitlab-Event")
GITLAB_EVENTS = {
    "Merge Request Hook": "merge_request",
    "Pipeline Hook": "status",
    "Job Hook": "status",
}


def refused(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_problem(request: HttpRequest, secret: str) -> str:
    """Why the delivery is not the upstream's; "" when its signature is good."""
    headers, body = request.headers, request.body
    if github := headers.get("X-Hub-Signature-256"):
        good = "sha256=" + hmac_hex(secret, body)
        return "" if hmac.compare_digest(github.strip(), good) else "X-Hub-Signature-256 is wrong"
    gitea = headers.get("X-Gitea-Signature") or headers.get("X-Forgejo-Signature")
    if gitea:
        good = hmac_hex(secret, body)
        return "" if hmac.compare_digest(gitea.strip().lower(), good) else "the signature is wrong"
    if (gitlab := headers.get("X-Gitlab-Token")) is not None:
        same = hmac.compare_digest(gitlab.encode(), secret.encode())
        return "" if same else "X-Gitlab-Token is wrong"
    return "no signature: X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token is required"


def pushed_ref(body: bytes) -> str | None:
    """The ref a push event names (all three forges call it `ref`); None if the
    body is not a JSON object."""
    try:
        payload = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    ref = payload.get("ref", "")
    return ref if isinstance(ref, str) else ""


def event_kind(request: HttpRequest) -> str:
    """`push` unless a forge's event header names another event."""
    for header in EVENT_HEADERS:
        if name := request.headers.get(header, "").strip():
            name = GITLAB_EVENTS.get(name, name)
            return "push" if name in ("push", "Push Hook") else name
    return "push"


@csrf_exempt
@require_POST
def receive(request: HttpRequest, slug: str) -> JsonResponse:
    repo = Repository.objects.filter(slug=slug).first()
    if repo is None:
        return refused(404, f"no repository {slug!r}")
    secret = repo.webhook_secret
    if not secret:
        return refused(
            403, "this repository has no webhook secret set: an admin sets one on its page"
        )
    if problem := signature_problem(request, secret):
        return refused(403, problem)
    ref = pushed_ref(request.body)
    if ref is None:
        return refused(400, "the body is not a JSON object")
    if (kind := event_kind(request)) != "push":
        asked = forge.on_forge_event(repo, kind, {})
        said = "the lead will ask the forge" if asked else f"{kind} events are not used here"
        return JsonResponse({"detail": said}, status=202)
    if ref and ref != f"refs/heads/{repo.branch}":
        return JsonResponse({"detail": f"{ref} is not {repo.branch}: ignored"}, status=202)
    if not repo.follows_upstream:
        return JsonResponse({"detail": "push is off here: nothing to follow"}, status=202)
    queues.enqueue_follow(repo)
    return JsonResponse({"detail": "the lead will fetch the upstream"}, status=202)
