"""GitLab's REST API (v4), gitlab.com or self-managed (`url` is the instance's root).

Merging: the merge request is merged with the project's merge method (a
fast-forward or semi-linear project rebases each bead's one commit onto the
target); a merge request that needs a rebase first is rebased by GitLab
(`PUT …/rebase`) and merged at a later poll. Where the project has merge
trains (`merge_trains_enabled`), the request is added to the train instead
(`POST /projects/:id/merge_trains/merge_requests/:iid`) and GitLab merges it.
"""

import urllib.parse

from workspace.forges import base
from workspace.forges.base import Check, Merge, Proposal, Remark
from workspace.forges.http import Client, ForgeError

STATES = {  # a commit status's or pipeline's status -> ours
    "success": base.SUCCESS,
    "skipped": base.SUCCESS,
    "manual": base.PENDING,
    "failed": base.FAILURE,
    "canceled": base.FAILURE,
}


class GitLab:
    name = "gitlab"

    def __init__(self, url: str, repo: str, token: str) -> None:
        self.project = urllib.parse.quote(repo.strip("/"), safe="")
        self.client = Client(
            (url or "https://gitlab.com").rstrip("/") + "/api/v4", {"PRIVATE-TOKEN": token}
        )
        self.trains: bool | None = None  # read from the project once

    def path(self, rest: str) -> str:
        return f"/projects/{self.project}{rest}"

    def open(self, branch: str, base: str, title: str, body: str) -> Proposal:
        payload = {
            "source_branch": branch,
            "target_branch": base,
            "title": title,
            "description": body,
            "remove_source_branch": True,
        }
        reply = self.client.call("POST", self.path("/merge_requests"), payload, ok=(409,))
        if reply.status == 201:
            return proposal(reply.body)
        if found := self.find(branch):  # 409: one is open for this branch already
            return found
        raise ForgeError(f"GitLab refused the merge request: {reply.body}", reply.status)

    def find(self, branch: str) -> Proposal | None:
        query = {"source_branch": branch, "state": "opened"}
        found = self.client.get(self.path("/merge_requests"), query).body or []
        return proposal(found[0]) if found else None

    def get(self, number: int) -> Proposal:
        return proposal(self.client.get(self.path(f"/merge_requests/{number}")).body)

    def checks(self, sha: str) -> list[Check]:
        statuses = self.client.get(self.path(f"/repository/commits/{sha}/statuses")).body or []
        found = [
            Check(
                s["name"],
                STATES.get(s["status"], base.PENDING),
                s.get("target_url") or "",
                s.get("description") or "",
            )
            for s in statuses
            if not (s["status"] == "failed" and s.get("allow_failure"))
        ]
        pipelines = self.client.get(self.path("/pipelines"), {"sha": sha}).body or []
        if pipelines:  # the newest pipeline on the commit
            newest = max(pipelines, key=lambda p: p["id"])
            found.append(
                Check(
                    f"pipeline #{newest['id']}",
                    STATES.get(newest["status"], base.PENDING),
                    newest.get("web_url") or "",
                )
            )
        return found

    def remarks(self, number: int) -> list[Remark]:
        notes = self.client.get(
            self.path(f"/merge_requests/{number}/notes"), {"sort": "asc", "order_by": "created_at"}
        ).body
        return [
            Remark((n.get("author") or {}).get("username") or "someone", n["body"])
            for n in notes or []
            if not n.get("system")
        ]

    def merge(self, number: int, sha: str) -> Merge:
        if self.uses_trains():
            reply = self.client.call(
                "POST",
                self.path(f"/merge_trains/merge_requests/{number}"),
                {"sha": sha},
                ok=(400, 403, 409),
            )
            if reply.status in (200, 201, 202):
                return Merge(False, queued=True, message="added to the merge train")
            return Merge(False, message=message(reply.body, reply.status))
        reply = self.client.call(
            "PUT",
            self.path(f"/merge_requests/{number}/merge"),
            {"sha": sha},
            ok=(401, 405, 406, 409, 422),
        )
        if reply.status == 200 and reply.body.get("state") == "merged":
            return Merge(True, extra={"sha": reply.body.get("merge_commit_sha") or ""})
        if reply.status in (406, 422):  # cannot be merged as it is: GitLab rebases it first
            self.client.call("PUT", self.path(f"/merge_requests/{number}/rebase"), ok=(403, 409))
            return Merge(False, message="rebasing onto the target branch first")
        return Merge(False, message=message(reply.body, reply.status))

    def uses_trains(self) -> bool:
        if self.trains is None:
            project = self.client.get(self.path("")).body or {}
            self.trains = bool(project.get("merge_trains_enabled"))
        return self.trains

    def close(self, number: int, comment: str) -> None:
        self.client.call("POST", self.path(f"/merge_requests/{number}/notes"), {"body": comment})
        self.client.call("PUT", self.path(f"/merge_requests/{number}"), {"state_event": "close"})


def message(body: object, status: int) -> str:
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or status)
    return str(body or status)


def proposal(mr: dict) -> Proposal:
    state = {"merged": base.MERGED, "opened": base.OPEN, "locked": base.OPEN}.get(
        mr["state"], base.CLOSED
    )
    return Proposal(
        number=mr["iid"],
        url=mr.get("web_url") or "",
        state=state,
        head_sha=mr.get("sha") or "",
        merge_sha=(mr.get("merge_commit_sha") or "") if state == base.MERGED else "",
    )
