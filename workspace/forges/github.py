"""GitHub's REST API (and GitHub Enterprise Server's, at https://HOST/api/v3).

Merging: REST's merge endpoint with `merge_method: rebase` (each bead's one
commit replayed onto the base). On a branch whose ruleset requires the merge
queue, REST's merge is refused (405, "...must be made through the merge
queue"); the request is then added to the queue through GitHub's GraphQL API
(`enqueuePullRequest`, which REST does not have), naming the head commit it
expects, and GitHub merges it; Corral sees the merge when it polls (or from
the webhook).
"""

import urllib.parse

from workspace.forges import base
from workspace.forges.base import Check, Merge, Proposal, Remark
from workspace.forges.http import Client, ForgeError

API_VERSION = "2022-11-28"
ENQUEUE = """
mutation Enqueue($id: ID!, $sha: GitObjectID) {
  enqueuePullRequest(input: {pullRequestId: $id, expectedHeadOid: $sha}) {
    mergeQueueEntry { position state }
  }
}
"""
CHECK_STATES = {  # a check run's conclusion (or status) -> ours
    "success": base.SUCCESS,
    "neutral": base.SUCCESS,
    "skipped": base.SUCCESS,
    "failure": base.FAILURE,
    "cancelled": base.FAILURE,
    "timed_out": base.FAILURE,
    "action_required": base.FAILURE,
    "startup_failure": base.FAILURE,
    "stale": base.PENDING,
}
STATUS_STATES = {  # a commit status's state -> ours
    "success": base.SUCCESS,
    "pending": base.PENDING,
    "failure": base.FAILURE,
    "error": base.FAILURE,
}


class GitHub:
    name = "github"

    def __init__(self, url: str, repo: str, token: str) -> None:
        self.repo = repo.strip("/")
        self.owner = self.repo.split("/")[0]
        root = url or "https://api.github.com"
        self.client = Client(
            root,
            {"Authorization": f"Bearer {token}"},
            accept="application/vnd.github+json",
            extra={"X-GitHub-Api-Version": API_VERSION},
        )
        self.graphql = Client(graphql_root(root), {"Authorization": f"Bearer {token}"})

    def path(self, rest: str) -> str:
        owner, name = (urllib.parse.quote(p, safe="") for p in self.repo.split("/", 1))
        return f"/repos/{owner}/{name}{rest}"

    def open(self, branch: str, base: str, title: str, body: str) -> Proposal:
        payload = {"head": branch, "base": base, "title": title, "body": body}
        reply = self.client.call("POST", self.path("/pulls"), payload, ok=(422,))
        if reply.status == 201:
            return proposal(reply.body)
        if found := self.find(branch):  # 422: one is open for this branch already
            return found
        raise ForgeError(f"GitHub refused the pull request: {reply.body}", reply.status)

    def find(self, branch: str) -> Proposal | None:
        query = {"head": f"{self.owner}:{branch}", "state": "open"}
        pulls = self.client.get(self.path("/pulls"), query).body or []
        return proposal(pulls[0]) if pulls else None

    def get(self, number: int) -> Proposal:
        return proposal(self.client.get(self.path(f"/pulls/{number}")).body)

    def checks(self, sha: str) -> list[Check]:
        runs = self.client.get(self.path(f"/commits/{sha}/check-runs"), {"per_page": 100}).body
        found = [
            Check(
                run["name"],
                CHECK_STATES.get(run.get("conclusion") or "", base.PENDING),
                run.get("html_url") or "",
                ((run.get("output") or {}).get("summary") or "")[:500],
            )
            for run in runs.get("check_runs", [])
        ]
        combined = self.client.get(self.path(f"/commits/{sha}/status")).body
        found += [
            Check(
                status["context"],
                STATUS_STATES.get(status["state"], base.PENDING),
                status.get("target_url") or "",
                status.get("description") or "",
            )
            for status in combined.get("statuses", [])
        ]
        return found

    def remarks(self, number: int) -> list[Remark]:
        reviews = self.client.get(self.path(f"/pulls/{number}/reviews")).body or []
        comments = self.client.get(self.path(f"/issues/{number}/comments")).body or []
        said = [
            Remark(login(r.get("user")), r["body"], f"review ({r['state']})")
            for r in reviews
            if r.get("body")
        ]
        return said + [Remark(login(c.get("user")), c.get("body") or "") for c in comments]

    def merge(self, number: int, sha: str) -> Merge:
        payload = {"merge_method": "rebase", "sha": sha}
        reply = self.client.call(
            "PUT", self.path(f"/pulls/{number}/merge"), payload, ok=(405, 409, 422)
        )
        if reply.status == 200 and reply.body.get("merged"):
            return Merge(True, extra={"sha": reply.body.get("sha", "")})
        said = str((reply.body or {}).get("message", reply.status))
        if reply.status == 405 and "merge queue" in said.lower():
            return self.enqueue(number, sha)
        return Merge(False, message=said)

    def enqueue(self, number: int, sha: str) -> Merge:
        """Add the request to the branch's merge queue (GraphQL: REST cannot)."""
        node = (self.client.get(self.path(f"/pulls/{number}")).body or {}).get("node_id")
        if not node:
            return Merge(False, message="GitHub gave no node id for the request: not queued")
        variables = {"id": node, "sha": sha or None}
        reply = self.graphql.call("POST", "", {"query": ENQUEUE, "variables": variables}).body
        reply = reply if isinstance(reply, dict) else {}
        if errors := reply.get("errors"):
            said = "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
            if "already" in said.lower():  # queued by an earlier poll, or by a person
                return Merge(False, queued=True, message=said)
            return Merge(False, message=f"GitHub refused to queue it: {said}")
        data = reply.get("data") or {}
        entry = (data.get("enqueuePullRequest") or {}).get("mergeQueueEntry") or {}
        where = f"position {entry['position']}" if entry.get("position") else "queued"
        return Merge(False, queued=True, message=f"{where} ({entry.get('state', 'QUEUED')})")

    def close(self, number: int, comment: str) -> None:
        self.client.call("POST", self.path(f"/issues/{number}/comments"), {"body": comment})
        self.client.call("PATCH", self.path(f"/pulls/{number}"), {"state": "closed"})


def graphql_root(rest: str) -> str:
    """GitHub's GraphQL endpoint beside its REST root: https://api.github.com/graphql,
    and https://HOST/api/graphql for a GitHub Enterprise Server at https://HOST/api/v3."""
    rest = rest.rstrip("/")
    if rest.endswith("/api/v3"):
        return rest.removesuffix("/v3") + "/graphql"
    return rest + "/graphql"


def login(user: dict | None) -> str:
    return (user or {}).get("login") or "someone"


def proposal(pull: dict) -> Proposal:
    if pull.get("merged") or pull.get("merged_at"):
        state = base.MERGED
    else:
        state = base.OPEN if pull["state"] == "open" else base.CLOSED
    return Proposal(
        number=pull["number"],
        url=pull.get("html_url") or "",
        state=state,
        head_sha=pull["head"]["sha"],
        merge_sha=pull.get("merge_commit_sha") or "" if state == base.MERGED else "",
    )
