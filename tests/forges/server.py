"""A fake forge on 127.0.0.1: the REST endpoints Corral's adapters call, for
GitHub, GitLab or Gitea, over a real bare git repository standing in for the
forge's git side.

Every request and every response is checked against the forge's description
(tests/forges/data/, see spec.py): a mismatch is recorded in `problems`, and
the fixture fails the test on any. Its merge really rebases the request's
branch onto the base in the bare repository (one commit per bead kept) and
moves the base only by a fast-forward.

GitHub's merge queue is reachable only through its GraphQL API: `POST
/graphql` is validated against GitHub's published GraphQL schema
(tests/forges/data/github.graphql.gz, `schema.graphql` of
github:octokit/graphql-schema at 82ff2d4780080e6929ebb95608cefa22dfa05ac7)
and answered by executing it against that schema, so an answer cannot leave it.

Tests (and a bench) drive it: `set_check(sha, name, state)`, `review(number,
author, text)`, `close(number)`, `limit_next(status, retry_after)`, and read
`pulls`, `requests` and `problems`.
"""

import gzip
import hashlib
import json
import subprocess
import tempfile
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import graphql

from tests.forges.spec import Spec

# Answers every forge gives to any operation, documented outside its
# per-operation description (rate limits, conditional requests, a bad token).
FORGE_WIDE = {304, 401, 429}
GIT_ID = ["-c", "user.name=Forge", "-c", "user.email=forge@forge.invalid"]
GITHUB_GRAPHQL = Path(__file__).parent / "data" / "github.graphql.gz"
SCHEMAS: dict[str, graphql.GraphQLSchema] = {}


def github_schema() -> graphql.GraphQLSchema:
    """GitHub's GraphQL schema, built once per process (it takes a second or two).
    Its SDL defines two fields twice, which GitHub's own server accepts."""
    if "github" not in SCHEMAS:
        text = gzip.decompress(GITHUB_GRAPHQL.read_bytes()).decode()
        SCHEMAS["github"] = graphql.build_schema(text, assume_valid_sdl=True)
    return SCHEMAS["github"]


@dataclass
class Pull:
    number: int
    branch: str
    base: str
    title: str
    body: str
    head_sha: str
    state: str = "open"  # open | closed | merged
    merge_sha: str = ""
    queued: bool = False  # in GitHub's merge queue
    remarks: list[tuple[str, str, str]] = field(default_factory=list)  # (who, text, review state)


class FakeForge:
    def __init__(self, kind: str, git_dir: Path, repo: str = "team/app", token: str = "t0ken"):
        self.kind = kind
        self.spec = Spec(kind)
        self.git_dir = Path(git_dir)
        self.repo = repo
        self.token = token
        self.pulls: dict[int, Pull] = {}
        self.checks: dict[str, dict[str, str]] = {}  # sha -> {name: our state}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.problems: list[str] = []
        self.limits: list[tuple[int, dict[str, str]]] = []
        self.merge_trains = False  # GitLab: the project merges through a train
        self.refuse_merge = ""  # the forge's words when it will not merge (a queue rule)
        self.merge_queue = False  # GitHub: requests join a merge queue, which merges them
        self.required: list[str] = []  # checks every commit waits for (pending until set)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- the test's side ------------------------------------------------------

    @property
    def url(self) -> str:
        """What a repository's forge_url is set to."""
        return f"http://127.0.0.1:{self.server.server_port}"

    def start(self) -> "FakeForge":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def set_check(self, sha: str, name: str, state: str) -> None:
        with self.lock:
            self.checks.setdefault(sha, {})[name] = state

    def review(self, number: int, author: str, text: str, state: str = "") -> None:
        with self.lock:
            self.pulls[number].remarks.append((author, text, state))

    def close(self, number: int) -> None:
        with self.lock:
            self.pulls[number].state = "closed"

    def limit_next(self, status: int, retry_after: str | None = None, reset: float | None = None):
        headers = {}
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        if reset is not None:
            headers["X-RateLimit-Remaining"] = "0"
            headers["X-RateLimit-Reset"] = str(int(reset))
        self.limits.append((status, headers))

    def checks_on(self, sha: str) -> dict[str, str]:
        """The checks reported on `sha`: a required one not reported yet is pending."""
        return {name: "pending" for name in self.required} | self.checks.get(sha, {})

    def calls(self, method: str, fragment: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and fragment in p)

    # -- git ------------------------------------------------------------------

    def git(self, *args: str, cwd: Path | None = None) -> str:
        where = ["-C", str(cwd)] if cwd else ["--git-dir", str(self.git_dir)]
        done = subprocess.run(
            ["git", *GIT_ID, *where, *args], capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise RuntimeError(done.stderr.strip())
        return done.stdout.strip()

    def branch_sha(self, branch: str) -> str:
        try:
            return self.git("rev-parse", "--verify", f"refs/heads/{branch}")
        except RuntimeError:
            return ""

    def rebase_merge(self, pull: Pull) -> str:
        """Replay the branch's commits onto the base and fast-forward the base;
        the new tip. RuntimeError on a conflict (nothing moves)."""
        with tempfile.TemporaryDirectory() as work:
            self.git("clone", "-q", str(self.git_dir), work)
            self.git("checkout", "-q", "-B", "merging", f"origin/{pull.branch}", cwd=Path(work))
            try:
                self.git("rebase", "-q", f"origin/{pull.base}", cwd=Path(work))
            except RuntimeError:
                raise RuntimeError(
                    "Merge conflict: the branch does not rebase onto the base"
                ) from None
            tip = self.git("rev-parse", "HEAD", cwd=Path(work))
            self.git("push", "-q", "origin", f"HEAD:refs/heads/{pull.base}", cwd=Path(work))
        return tip

    # -- the forge's side ------------------------------------------------------

    def handler(self) -> type[BaseHTTPRequestHandler]:
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                forge.serve(self)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        return Handler

    def serve(self, request: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(request.path)
        path = urllib.parse.unquote(url.path) if self.kind != "gitlab" else url.path
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        if self.kind == "github" and (request.command, path) == ("POST", "/graphql"):
            return self.serve_graphql(request, body or {})
        found = self.spec.find(request.command, path)
        if found is None:
            return self.answer(request, None, 404, {"message": "Not Found"}, path)
        op, params = found
        if self.kind == "gitlab":
            params = {k: urllib.parse.unquote(v) for k, v in params.items()}
        with self.lock:
            for problem in self.spec.check_request(op, params, query, body):
                self.problems.append(f"{op.name} request: {problem}")
            if not self.authorized(request.headers):
                return self.answer(request, op, 401, {"message": "Bad credentials"}, path)
            if self.limits:
                status, headers = self.limits.pop(0)
                return self.answer(
                    request, op, status, {"message": "API rate limit exceeded"}, path, headers, True
                )
            try:
                status, reply = getattr(self, self.kind.replace("-", "_"))(op, params, query, body)
            except Exception as e:  # a fake's own bug: the test must see it
                self.problems.append(f"{op.name}: the fake failed: {e!r}")
                status, reply = 500, None
        if status < 300 and request.command == "GET":
            etag = '"' + hashlib.sha1(json.dumps(reply, sort_keys=True).encode()).hexdigest() + '"'
            if request.headers.get("If-None-Match") == etag:
                return self.answer(request, op, 304, None, path, {"ETag": etag})
            return self.answer(request, op, status, reply, path, {"ETag": etag})
        return self.answer(request, op, status, reply, path)

    def authorized(self, headers: Any) -> bool:
        given = {
            "github": headers.get("Authorization", "").removeprefix("Bearer "),
            "gitlab": headers.get("PRIVATE-TOKEN", ""),
            "gitea": headers.get("Authorization", "").removeprefix("token "),
        }[self.kind]
        return given == self.token

    def serve_graphql(self, request: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        """GitHub's GraphQL endpoint: the query validated against its schema, then
        executed against it (the enqueuePullRequest mutation)."""
        with self.lock:
            self.requests.append(("POST", "/graphql", 200))
            if not self.authorized(request.headers):
                return self.send(request, 401, {"message": "Bad credentials"})
            schema = github_schema()
            try:
                document = graphql.parse(body.get("query") or "")
            except graphql.GraphQLError as e:
                self.problems.append(f"graphql: {e.message}")
                return self.send(request, 200, {"errors": [{"message": e.message}]})
            if invalid := graphql.validate(schema, document):
                self.problems += [f"graphql: {e.message}" for e in invalid]
                return self.send(
                    request, 200, {"errors": [{"message": e.message} for e in invalid]}
                )
            result = graphql.execute_sync(
                schema,
                document,
                root_value={"enqueuePullRequest": self.enqueue},
                variable_values=body.get("variables"),
            )
            # Errors with no path are the request's own (its variables), not the forge's answer.
            self.problems += [f"graphql: {e.message}" for e in result.errors or [] if not e.path]
            return self.send(request, 200, result.formatted)

    def enqueue(self, info: Any, input: dict[str, Any]) -> dict[str, Any]:
        """GitHub's enqueuePullRequest: the request joins the queue, which merges
        it at once when its checks have passed (a queue of one)."""
        pull = next(
            (p for p in self.pulls.values() if f"PR_{p.number}" == input["pullRequestId"]), None
        )
        if pull is None or pull.state != "open":
            raise graphql.GraphQLError("Could not resolve to a PullRequest with that id.")
        if not self.merge_queue:
            raise graphql.GraphQLError("The base branch does not use a merge queue.")
        if pull.queued:
            raise graphql.GraphQLError("This pull request is already queued to merge.")
        if (expected := input.get("expectedHeadOid")) and expected != self.head(pull):
            raise graphql.GraphQLError("The expected head OID is not the pull request's head.")
        pull.queued = True
        if all(s == "success" for s in self.checks_on(pull.head_sha).values()):
            self.do_merge(pull)
        return {"mergeQueueEntry": {"position": 1, "state": "QUEUED"}}

    def send(self, request: BaseHTTPRequestHandler, status: int, reply: Any, headers=None) -> None:
        """Write the answer: `reply` as JSON (None: no body), with `headers`."""
        data = b"" if reply is None else json.dumps(reply).encode()
        request.send_response(status)
        for key, value in (headers or {}).items():
            request.send_header(key, value)
        if data:
            request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def answer(self, request, op, status, reply, path, headers=None, limit=False) -> None:
        """Send a reply, checked against the description first. `limit`: a rate
        limit's 403 or 429, which the forges document for every operation at once
        (GitHub's rate limit pages), not per operation."""
        self.requests.append((request.command, path, status))
        if op is None:
            self.problems.append(f"{request.command} {path}: no such operation in the description")
        elif status not in FORGE_WIDE and not limit:
            for problem in self.spec.check_response(op, status, reply):
                self.problems.append(f"{op.name}: {problem}")
        self.send(request, status, reply, headers)

    # -- shared behaviour ------------------------------------------------------

    def create(self, branch: str, base: str, title: str, body: str) -> Pull | None:
        """A new request, or None when one is open for the branch already."""
        if any(p.branch == branch and p.state == "open" for p in self.pulls.values()):
            return None
        head = self.branch_sha(branch)
        if not head:
            raise LookupError(branch)
        pull = Pull(len(self.pulls) + 1, branch, base, title, body, head)
        self.pulls[pull.number] = pull
        return pull

    def head(self, pull: Pull) -> str:
        if pull.state == "open":  # a push to the branch moves the request's head
            pull.head_sha = self.branch_sha(pull.branch) or pull.head_sha
        return pull.head_sha

    def mergeable(self, pull: Pull, sha: str) -> tuple[int, str]:
        """(0, "") when it may merge now, else (status, the forge's words)."""
        if pull.state != "open":
            return 405, "Pull Request is not mergeable"
        if sha and sha != self.head(pull):
            return 409, "Head branch was modified. Review and try the merge again."
        if self.refuse_merge:
            return 405, self.refuse_merge
        if any(s != "success" for s in self.checks_on(pull.head_sha).values()):
            return 405, "Required status checks have not succeeded"
        return 0, ""

    def do_merge(self, pull: Pull) -> tuple[int, str]:
        try:
            pull.merge_sha = self.rebase_merge(pull)
        except RuntimeError as e:
            return 405, str(e)
        pull.state = "merged"
        return 0, ""

    def fill(self, schema_name: str, **values: Any) -> dict[str, Any]:
        """A minimal valid instance of a description's schema, with `values` over it."""
        ref = {"github": "#/components/schemas/", "gitlab": "#/components/schemas/"}.get(
            self.kind, "#/components/schemas/"
        )
        instance = self.spec.sample({"$ref": ref + schema_name})
        return deep_merge(instance, values)

    # -- GitHub ----------------------------------------------------------------

    def github(self, op, params, query, body) -> tuple[int, Any]:
        name = op.name
        if name in ("checks/list-for-ref", "repos/get-combined-status-for-ref"):
            return self.github_checks(op, params)
        if name == "pulls/create":
            try:
                pull = self.create(
                    body["head"], body["base"], body.get("title", ""), body.get("body", "")
                )
            except LookupError:
                return 422, {"message": "Validation Failed", "documentation_url": "x", "errors": []}
            if pull is None:
                return 422, {
                    "message": "Validation Failed",
                    "documentation_url": "https://docs.github.com/rest",
                    "errors": [
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"A pull request already exists for {body['head']}.",
                        }
                    ],
                }
            return 201, self.gh_pull(pull)
        if name == "pulls/list":
            owner = self.repo.split("/")[0]
            pulls = [
                p
                for p in self.pulls.values()
                if f"{owner}:{p.branch}" == query.get("head", f"{owner}:{p.branch}")
                and (
                    query.get("state", "open") in ("all", "open" if p.state == "open" else "closed")
                )
            ]
            return 200, [self.gh_pull_simple(p) for p in pulls]
        pull = self.pulls.get(int(params.get("pull_number") or params.get("issue_number") or 0))
        if pull is None:
            return 404, {"message": "Not Found", "documentation_url": "x"}
        if name == "pulls/get":
            return 200, self.gh_pull(pull)
        if name == "pulls/update":
            if body.get("state") == "closed" and pull.state == "open":
                pull.state = "closed"
            return 200, self.gh_pull(pull)
        if name == "pulls/merge":
            if body.get("merge_method") != "rebase":
                self.problems.append("pulls/merge: Corral merges by rebase")
            status, words = self.mergeable(pull, body.get("sha", ""))
            if not status:
                status, words = self.do_merge(pull)
            if status:
                return status, {"message": words, "documentation_url": "x"}
            return 200, {
                "sha": pull.merge_sha,
                "merged": True,
                "message": "Pull Request successfully merged",
            }
        if name == "pulls/list-reviews":
            return 200, [
                self.fill(
                    "pull-request-review",
                    id=i,
                    body=text,
                    state=state or "COMMENTED",
                    user=self.fill("simple-user", login=who),
                    commit_id=pull.head_sha,
                )
                for i, (who, text, state) in enumerate(pull.remarks, 1)
                if state
            ]
        if name == "issues/list-comments":
            return 200, [
                self.fill(
                    "issue-comment", id=i, body=text, user=self.fill("simple-user", login=who)
                )
                for i, (who, text, state) in enumerate(pull.remarks, 1)
                if not state
            ]
        if name == "issues/create-comment":
            pull.remarks.append(("corral", body["body"], ""))
            return 201, self.fill("issue-comment", id=len(pull.remarks), body=body["body"])
        return 404, {"message": "Not Found", "documentation_url": "x"}

    def github_checks(self, op, params) -> tuple[int, Any]:
        found = self.checks_on(params["ref"])
        if op.name == "checks/list-for-ref":
            runs = [
                self.fill(
                    "check-run",
                    id=i,
                    name=name,
                    head_sha=params["ref"],
                    status="completed" if state != "pending" else "in_progress",
                    conclusion=state if state != "pending" else None,
                    output={
                        "title": None,
                        "summary": f"{name}: {state}",
                        "text": None,
                        "annotations_count": 0,
                        "annotations_url": "https://forge.invalid/x",
                    },
                )
                for i, (name, state) in enumerate(sorted(found.items()), 1)
                if not name.startswith("status/")
            ]
            return 200, {"total_count": len(runs), "check_runs": runs}
        statuses = [
            self.fill(
                "simple-commit-status", id=i, context=name.removeprefix("status/"), state=state
            )
            for i, (name, state) in enumerate(sorted(found.items()), 1)
            if name.startswith("status/")
        ]
        overall = (
            "failure"
            if any(s["state"] == "failure" for s in statuses)
            else (
                "pending"
                if any(s["state"] == "pending" for s in statuses) or not statuses
                else "success"
            )
        )
        return 200, self.fill(
            "combined-commit-status",
            state=overall,
            sha=params["ref"],
            total_count=len(statuses),
            statuses=statuses,
        )

    def gh_pull(self, pull: Pull) -> dict[str, Any]:
        head = self.head(pull)
        merged = pull.state == "merged"
        return self.fill(
            "pull-request",
            number=pull.number,
            id=pull.number,
            node_id=f"PR_{pull.number}",
            title=pull.title,
            body=pull.body,
            state="open" if pull.state == "open" else "closed",
            merged=merged,
            merged_at="2026-01-01T00:00:00Z" if merged else None,
            merge_commit_sha=pull.merge_sha or None,
            html_url=f"{self.url}/{self.repo}/pull/{pull.number}",
            head={**self.fill("pull-request")["head"], "ref": pull.branch, "sha": head},
            base={
                **self.fill("pull-request")["base"],
                "ref": pull.base,
                "sha": self.branch_sha(pull.base),
            },
        )

    def gh_pull_simple(self, pull: Pull) -> dict[str, Any]:
        full = self.gh_pull(pull)
        schema = self.spec.resolve(
            self.spec.pointer(
                "#/paths/~1repos~1{owner}~1{repo}~1pulls/get/responses/200/content/application~1json/schema/items"
            )
        )
        return {k: v for k, v in full.items() if k in schema.get("properties", {})}

    # -- GitLab ----------------------------------------------------------------

    def gitlab(self, op, params, query, body) -> tuple[int, Any]:
        name = op.name
        if params.get("id") != self.repo:
            return 404, {"message": "404 Project Not Found"}
        if name == "getProject":
            return 200, {
                "id": 7,
                "path_with_namespace": self.repo,
                "default_branch": "main",
                "merge_method": "ff",
                "merge_trains_enabled": self.merge_trains,
            }
        if name == "createMergeRequest":
            try:
                pull = self.create(
                    body["source_branch"],
                    body["target_branch"],
                    body["title"],
                    body.get("description", ""),
                )
            except LookupError:
                return 409, {"message": ["Source branch does not exist"]}
            if pull is None:
                return 409, {
                    "message": ["Another open merge request already exists for this source branch"]
                }
            return 201, self.gl_mr(pull)
        if name == "listMergeRequests":
            want = {"opened": "open", "closed": "closed", "merged": "merged"}.get(
                query.get("state", ""), None
            )
            return 200, [
                self.gl_mr(p)
                for p in self.pulls.values()
                if p.branch == query.get("source_branch", p.branch)
                and (want is None or p.state == want)
            ]
        if name == "listCommitStatuses":
            return 200, [
                {
                    "id": i,
                    "sha": params["sha"],
                    "ref": None,
                    "status": GL_STATES[state],
                    "name": check,
                    "target_url": None,
                    "description": None,
                    "created_at": "2026-01-01T00:00:00Z",
                    "allow_failure": False,
                }
                for i, (check, state) in enumerate(sorted(self.checks_on(params["sha"]).items()), 1)
            ]
        if name == "listProjectPipelines":
            return 200, []
        pull = self.pulls.get(int(params.get("merge_request_iid", 0)))
        if pull is None:
            return 404, {"message": "404 Not found"}
        if name == "getMergeRequest":
            return 200, self.gl_mr(pull)
        if name == "updateMergeRequest":
            if body.get("state_event") == "close" and pull.state == "open":
                pull.state = "closed"
            return 200, self.gl_mr(pull)
        if name == "listMergeRequestNotes":
            return 200, [
                self.gl_note(i, who, text) for i, (who, text, _) in enumerate(pull.remarks, 1)
            ]
        if name == "createMergeRequestNote":
            pull.remarks.append(("corral", body["body"], ""))
            return 201, self.gl_note(len(pull.remarks), "corral", body["body"])
        if name in ("mergeMergeRequest", "addMergeRequestToMergeTrain"):
            status, words = self.mergeable(pull, (body or {}).get("sha", ""))
            if status:
                return {405: 405, 409: 409}[status], {"message": words}
            if name == "addMergeRequestToMergeTrain":
                status, words = self.do_merge(pull)  # the train runs at once here
                return (
                    (202, [{"id": 1, "status": "merged", "merge_request": {"iid": pull.number}}])
                    if not status
                    else (409, {"message": words})
                )
            status, words = self.do_merge(pull)
            return (200, self.gl_mr(pull)) if not status else (406, {"message": words})
        if name == "rebaseMergeRequest":
            return 202, {"rebase_in_progress": True}
        return 404, {"message": "404 Not found"}

    def gl_mr(self, pull: Pull) -> dict[str, Any]:
        state = {"open": "opened", "closed": "closed", "merged": "merged"}[pull.state]
        return {
            "id": 100 + pull.number,
            "iid": pull.number,
            "project_id": 7,
            "title": pull.title,
            "description": pull.body,
            "state": state,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "merged_at": None,
            "closed_at": None,
            "target_branch": pull.base,
            "source_branch": pull.branch,
            "author": self.gl_user("corral"),
            "sha": self.head(pull),
            "merge_commit_sha": pull.merge_sha or None,
            "squash_commit_sha": None,
            "web_url": f"{self.url}/{self.repo}/-/merge_requests/{pull.number}",
            "detailed_merge_status": "mergeable" if pull.state == "open" else "not_open",
            "draft": False,
            "head_pipeline": None,
        }

    @staticmethod
    def gl_user(login: str) -> dict[str, Any]:
        return {
            "id": 1,
            "username": login,
            "name": login,
            "state": "active",
            "avatar_url": None,
            "web_url": "https://forge.invalid/" + login,
        }

    def gl_note(self, i: int, who: str, text: str) -> dict[str, Any]:
        return {
            "id": i,
            "body": text,
            "author": self.gl_user(who),
            "created_at": "2026-01-01T00:00:00Z",
            "system": False,
            "noteable_type": "MergeRequest",
            "noteable_iid": None,
        }

    # -- Gitea -----------------------------------------------------------------

    def gitea(self, op, params, query, body) -> tuple[int, Any]:
        name = op.name
        if f"{params.get('owner')}/{params.get('repo')}" != self.repo:
            return 404, {"message": "repo not found"}
        if name == "repoCreatePullRequest":
            try:
                pull = self.create(
                    body["head"], body["base"], body.get("title", ""), body.get("body", "")
                )
            except LookupError:
                return 404, {"message": "head branch not found"}
            if pull is None:
                return 409, {"message": "pull request already exists for these targets"}
            return 201, self.gt_pull(pull)
        if name == "repoListPullRequests":
            want = query.get("state", "open")
            return 200, [
                self.gt_pull(p)
                for p in self.pulls.values()
                if want == "all" or (want == "open") == (p.state == "open")
            ]
        if name == "repoGetCombinedStatusByRef":
            found = self.checks_on(params["ref"])
            statuses = [
                {"id": i, "status": state, "context": check, "description": "", "target_url": ""}
                for i, (check, state) in enumerate(sorted(found.items()), 1)
            ]
            overall = (
                "failure"
                if "failure" in found.values()
                else ("pending" if "pending" in found.values() or not found else "success")
            )
            return 200, {
                "state": overall,
                "sha": params["ref"],
                "total_count": len(statuses),
                "statuses": statuses,
            }
        pull = self.pulls.get(int(params.get("index", 0)))
        if pull is None:
            return 404, {"message": "not found"}
        if name == "repoGetPullRequest":
            return 200, self.gt_pull(pull)
        if name == "repoEditPullRequest":
            if body.get("state") == "closed" and pull.state == "open":
                pull.state = "closed"
            return 201, self.gt_pull(pull)
        if name == "repoMergePullRequest":
            if body.get("Do") != "rebase":
                self.problems.append("repoMergePullRequest: Corral merges by rebase")
            status, words = self.mergeable(pull, body.get("head_commit_id", ""))
            if not status:
                status, words = self.do_merge(pull)
            return (200, None) if not status else (status, {"message": words})
        if name == "repoListPullReviews":
            return 200, [
                {"id": i, "body": text, "state": state, "user": {"id": 1, "login": who}}
                for i, (who, text, state) in enumerate(pull.remarks, 1)
                if state
            ]
        if name == "issueGetComments":
            return 200, [
                {"id": i, "body": text, "user": {"id": 1, "login": who}}
                for i, (who, text, state) in enumerate(pull.remarks, 1)
                if not state
            ]
        if name == "issueCreateComment":
            pull.remarks.append(("corral", body["body"], ""))
            return 201, {
                "id": len(pull.remarks),
                "body": body["body"],
                "user": {"id": 1, "login": "corral"},
            }
        return 404, {"message": "not found"}

    def gt_pull(self, pull: Pull) -> dict[str, Any]:
        reply = {
            "id": pull.number,
            "number": pull.number,
            "title": pull.title,
            "body": pull.body,
            "state": "open" if pull.state == "open" else "closed",
            "merged": pull.state == "merged",
            "mergeable": pull.state == "open",
            "html_url": f"{self.url}/{self.repo}/pulls/{pull.number}",
            "head": {"ref": pull.branch, "sha": self.head(pull), "label": pull.branch},
            "base": {"ref": pull.base, "sha": self.branch_sha(pull.base), "label": pull.base},
        }
        if pull.merge_sha:  # Gitea's description types it a string: absent, not null, until merged
            reply["merge_commit_sha"] = pull.merge_sha
        return reply


GL_STATES = {"success": "success", "failure": "failed", "pending": "running"}


def deep_merge(base: Any, over: dict[str, Any]) -> Any:
    out = dict(base)
    for key, value in over.items():
        out[key] = value
    return out
