"""Fuzz the agents' API from its own OpenAPI document (schemathesis, in-process over WSGI).

Every operation gets a bounded, repeatable set of requests: schemathesis'
coverage phase (the schema's edge cases, valid and invalid) and a fuzzing phase
of FUZZ.max_examples generated ones. They go through the real WSGI app, which
uses the test database, against a workspace with data in it: two repositories,
ready and blocked beads, a claimed session of the caller and one of another
agent. In the fuzzing phase, well-typed generated ids, slugs and session UUIDs
are often swapped for ones that exist (sessions claimed during the run
included) and a patch for a real one, so that requests get past the 404s into
the views' real work: claims, heartbeats, logs, submissions, releases, new beads.

Checks (CHECKS): no 5xx; 2xx bodies, content types and headers as documented;
invalid requests are refused; methods the document does not declare get 405 with
an Allow header; auth is enforced (a probe without the token must fail); every
other 4xx is JSON with a `detail`. Left out, and why:
- status_code_conformance: the document declares only each operation's success
  status, not the 400/403/404/409/413/422 the design promises (the JSON-detail
  check stands in for it);
- positive_data_acceptance: some rules cannot be read off the document — inject
  needs bead or repo/q, a new bead needs repo or discovered_from, a patch must be
  a git diff — and limit's 1..500 range is checked by hand, not declared, so
  schema-valid requests get a rightful 4xx.

Without a token every request must be refused before any parameter is read:
401 — not 422 for a malformed id, which would tell the caller what is valid —
writes included. (405 for a method a path does not take comes before auth; the
first test covers it.)
"""

import json
import re
import uuid
from urllib.parse import unquote

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from django.test import Client
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks

from agents.models import Agent
from agents.moves import lifecycle
from beads.models import Bead, Dependency
from tests.factories import make_patch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SCHEMA_PATH = "/api/v1/openapi.json"
FUZZ = settings(
    max_examples=15,  # per operation, on top of the coverage phase's cases
    deadline=None,
    derandomize=True,  # the same requests on every run
    database=None,  # and no .hypothesis/ folder in the working tree
    suppress_health_check=list(HealthCheck),
)


def errors_are_json_with_a_detail(ctx, response, case):
    """The design's error contract, for the statuses the document does not declare."""
    if not 400 <= response.status_code < 500 or response.status_code == 405:
        return None  # 405 is Django's bare HttpResponseNotAllowed (text/html; a finding)
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    assert isinstance(body, dict) and "detail" in body, (
        f"a {response.status_code} must be JSON with a detail, got {response.content[:200]!r}"
    )
    return True


CHECKS = [
    not_a_server_error,
    checks.response_schema_conformance,
    checks.content_type_conformance,
    checks.negative_data_rejection,
    checks.response_headers_conformance,
    checks.unsupported_method,
    checks.allow_header_conformance,
    checks.ignored_auth,
    errors_are_json_with_a_detail,
]


class World:
    """The rows the fuzzer aims at, and the calling agent's token."""

    def __init__(self, repo, other):
        repo.max_agents = 50
        repo.save()
        caller = Agent(name="fuzzer", preset="shell", internal=False)
        caller.save()
        rival = Agent(name="rival", preset="shell", internal=False)
        rival.save()
        beads = [
            Bead.objects.create(
                repository=repo, title=f"bead {i}", priority=i % 5, scope=["src/**"]
            )
            for i in range(8)
        ]
        elsewhere = Bead.objects.create(repository=other, title="elsewhere")
        Dependency.objects.create(issue=beads[7], depends_on=beads[6])
        Dependency.objects.create(issue=beads[6], depends_on=elsewhere)  # across repositories
        self.token = caller.plain_token
        self.repos = [repo.slug, other.slug]
        self.beads = [b.id for b in beads] + [elsewhere.id]
        self.sessions = [str(lifecycle.claim(caller, repository=repo).pk)]
        self.their_session = str(lifecycle.claim(rival, repository=repo).pk)
        _, self.patch = make_patch(repo, {"src/fuzzed.py": "print('fuzzed')\n"})

    def saw(self, case, response):
        """Sessions the fuzzer claims become targets for the session operations."""
        if case.operation.path.endswith("/claim") and response.status_code == 200:
            self.sessions.append(response.json()["session"])


@pytest.fixture
def world(repo, make_repo, rq_redis):
    return World(repo, make_repo("other"))


def is_uuid(value):
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def swap(values, key, choices, fits=lambda v: isinstance(v, str)):
    """Keep the generated value of `key`, or put a real one in its place.

    Only a well-typed value is swapped: one that negative generation broke on
    purpose stays broken, so the case stays negative.
    """
    if not isinstance(values, dict) or key not in values or not fits(values[key]):
        return st.just(values)
    return st.sampled_from([values[key], *choices()]).map(lambda v: {**values, key: v})


def aim_at_real_rows(schema, world):
    """Hooks on this schema that reach into the workspace's rows (fuzzing phase)."""

    def sessions():
        # The caller's own sessions, newest first, and one of another agent's (a 403).
        return [*world.sessions[::-1][:3], world.their_session]

    @schema.hook("flatmap_path_parameters")
    def real_path_ids(context, path):
        if isinstance(path, dict) and "session_id" in path:
            return swap(path, "session_id", sessions, fits=is_uuid)
        return swap(path, "bead_id", lambda: world.beads)

    @schema.hook("flatmap_query")
    def real_query(context, query):
        return swap(query, "repo", lambda: world.repos).flatmap(
            lambda q: swap(q, "bead", lambda: world.beads)
        )

    @schema.hook("flatmap_body")
    def real_body(context, body):
        return (
            swap(body, "repo", lambda: world.repos)
            .flatmap(lambda b: swap(b, "bead", lambda: world.beads))
            .flatmap(lambda b: swap(b, "discovered_from", lambda: world.beads))
            .flatmap(lambda b: swap(b, "session", sessions, fits=is_uuid))
            .flatmap(lambda b: swap(b, "patch", lambda: [world.patch]))
        )

    return schema


def load_schema(world, coverage):
    """The app's document; undeclared methods tried: three per path, not all eight."""
    phase = {"unexpected-methods": ["get", "post", "put", "delete"]} if coverage else {}
    config = schemathesis.Config.from_dict({"phases": {"coverage": {"enabled": coverage, **phase}}})
    schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, get_wsgi_application(), config=config)
    return aim_at_real_rows(schema, world)


@pytest.fixture
def api_schema(world):
    return load_schema(world, coverage=True)


@pytest.fixture
def anonymous_schema(world):
    """Fuzzing phase only: refused requests need no tour of the edge cases."""
    return load_schema(world, coverage=False)


api = schemathesis.pytest.from_fixture("api_schema")
anonymous = schemathesis.pytest.from_fixture("anonymous_schema")


@api.parametrize()
@FUZZ
def test_fuzzed_requests_with_a_token_get_no_server_error(case, world):
    headers = {"Authorization": f"Bearer {world.token}"}
    response = case.call(headers=headers)
    world.saw(case, response)
    case.validate_response(response, checks=CHECKS, headers=headers)


def routes_to_the_operation(case):
    """Whether the request's path reaches the operation's view (a `/` in an id does not)."""
    template = re.sub(r"{(\w+)}", r"<\1>", case.operation.path).lstrip("/")
    try:
        return resolve(unquote(case.formatted_path)).route == template
    except Resolver404:
        return False


def expect_refusal(case):
    """Schemathesis sends no token, or a made-up bearer token or session cookie."""
    response = case.call()
    if not routes_to_the_operation(case):
        expected = 404  # not this API's path at all
    else:
        expected = 401  # before any parameter is read: a 422 would tell what is valid
    assert response.status_code == expected, (
        f"{case.method} {case.formatted_path}: {response.status_code}, want {expected}: "
        f"{response.content[:200]!r}"
    )
    if expected == 401:
        assert response.json() == {"detail": "Unauthorized"}
    else:
        assert "detail" in response.json()


@anonymous.parametrize()
@FUZZ
def test_fuzzed_requests_without_a_token_are_refused(case, world):
    expect_refusal(case)


def test_a_write_without_a_valid_token_is_401_when_csrf_is_enforced(world):
    client = Client(enforce_csrf_checks=True)  # as a real HTTP client is treated
    for token in [None, "crl_wrong"]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = client.post(
            "/api/v1/claim", "{}", content_type="application/json", headers=headers
        )
        assert response.status_code == 401, response.content


def test_submit_learnings_are_documented_as_submit_takes_them(client):
    """Submit's learnings have their own schema in the document (not POST
    learnings', which also takes repo and session)."""
    document = client.get(SCHEMA_PATH, HTTP_HOST="localhost").json()
    schemas = document["components"]["schemas"]
    item = schemas["SubmitIn"]["properties"]["learnings"]["items"]["$ref"].rsplit("/", 1)[-1]
    assert set(schemas[item]["properties"]) == {"title", "body", "tags"}
