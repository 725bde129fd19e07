"""Gitea's REST API (v1), which Forgejo serves too (`url` is the instance's root).

Merging: `POST …/pulls/{index}/merge` with `Do: "rebase"` (each bead's one
commit replayed onto the base), only while the head is the commit Corral
pushed (`head_commit_id`). Gitea has no merge queue.
"""

import urllib.parse

from workspace.forges import base
from workspace.forges.base import Check, Merge, Proposal, Remark
from workspace.forges.http import Client, ForgeError

STATES = {  # a commit status's state -> ours
    "success": base.SUCCESS,
    "warning": base.SUCCESS,
    "pending": base.PENDING,
    "failure": base.FAILURE,
    "error": base.FAILURE,
}


class Gitea:
    name = "gitea"

    def __init__(self, url: str, repo: str, token: str) -> None:
        self.repo = repo.strip("/")
        self.client = Client(
            (url or "https://gitea.com").rstrip("/") + "/api/v1",
            {"Authorization": f"token {token}"},
        )

    def path(self, rest: str) -> str:
        owner, name = (urllib.parse.quote(p, safe="") for p in self.repo.split("/", 1))
        return f"/repos/{owner}/{name}{rest}"

    def open(self, branch: str, base: str, title: str, body: str) -> Proposal:
        payload = {"head": branch, "base": base, "title": title, "body": body}
        reply = self.client.call("POST", self.path("/pulls"), payload, ok=(409, 422))
        if reply.status == 201:
            return proposal(reply.body)
        if found := self.find(branch):  # 409: one is open for this branch already
            return found
        raise ForgeError(f"Gitea refused the pull request: {reply.body}", reply.status)

    def find(self, branch: str) -> Proposal | None:
        pulls = self.client.get(self.path("/pulls"), {"state": "open"}).body or []
        mine = [p for p in pulls if (p.get("head") or {}).get("ref") == branch]
        return proposal(mine[0]) if mine else None

    def get(self, number: int) -> Proposal:
        return proposal(self.client.get(self.path(f"/pulls/{number}")).body)

    def checks(self, sha: str) -> list[Check]:
        combined = self.client.get(self.path(f"/commits/{sha}/status")).body or {}
        return [
            Check(
                s.get("context") or "status",
                STATES.get(s.get("status") or "", base.PENDING),
                s.get("target_url") or "",
                s.get("description") or "",
            )
            for s in combined.get("statuses") or []
        ]

    def remarks(self, number: int) -> list[Remark]:
        reviews = self.client.get(self.path(f"/pulls/{number}/reviews")).body or []
        comments = self.client.get(self.path(f"/issues/{number}/comments")).body or []
        said = [
            Remark(login(r.get("user")), r["body"], f"review ({r.get('state', '')})")
            for r in reviews
            if r.get("body")
        ]
        return said + [Remark(login(c.get("user")), c.get("body") or "") for c in comments]

    def merge(self, number: int, sha: str) -> Merge:
        payload = {"Do": "rebase", "head_commit_id": sha}
        reply = self.client.call(
            "POST", self.path(f"/pulls/{number}/merge"), payload, ok=(405, 409)
        )
        if reply.status == 200:
            return Merge(True)
        body = reply.body if isinstance(reply.body, dict) else {}
        return Merge(False, message=str(body.get("message") or reply.status))

    def close(self, number: int, comment: str) -> None:
        self.client.call("POST", self.path(f"/issues/{number}/comments"), {"body": comment})
        self.client.call("PATCH", self.path(f"/pulls/{number}"), {"state": "closed"})


def login(user: dict | None) -> str:
    return (user or {}).get("login") or "someone"


def proposal(pull: dict) -> Proposal:
    if pull.get("merged"):
        state = base.MERGED
    else:
        state = base.OPEN if pull.get("state") == "open" else base.CLOSED
    return Proposal(
        number=pull["number"],
        url=pull.get("html_url") or "",
        state=state,
        head_sha=(pull.get("head") or {}).get("sha") or "",
        merge_sha=(pull.get("merge_commit_sha") or "") if state == base.MERGED else "",
    )
