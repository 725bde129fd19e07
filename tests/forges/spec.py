"""A forge's OpenAPI description (the subset in tests/forges/data/) as a validator:
the operation a request names, whether the request and the response match it,
and a minimal valid instance of a schema for a fake's answers to start from."""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

DATA = Path(__file__).parent / "data"
URI = "urn:forge-spec"


@dataclass
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        return self.spec.get("operationId", f"{self.method} {self.template}")


class Spec:
    def __init__(self, forge: str) -> None:
        self.forge = forge
        self.doc = nullable_enums(json.loads((DATA / f"{forge}.json").read_text()))
        resource = Resource.from_contents(self.doc, default_specification=DRAFT4)
        self.registry: Registry = Registry().with_resource(URI, resource)
        self.operations = [
            Operation(method.upper(), path, compile_template(path), op)
            for path, item in self.doc["paths"].items()
            for method, op in item.items()
            if method != "parameters"
        ]

    def find(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for op in self.operations:
            if op.method == method and (m := op.pattern.fullmatch(path)):
                return op, m.groupdict()
        return None

    def resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            node = self.pointer(node["$ref"])
        return node

    def pointer(self, ref: str) -> Any:
        node: Any = self.doc
        for part in ref.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def errors(self, schema: dict[str, Any], instance: Any) -> list[str]:
        validator = OAS30Validator(rebase(schema), registry=self.registry)
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validator.iter_errors(instance)
        ]

    def check_request(
        self, op: Operation, params: dict[str, str], query: dict[str, str], body: Any
    ) -> list[str]:
        problems = []
        declared = [self.resolve(p) for p in op.spec.get("parameters", [])]
        by_place = {(p["in"], p["name"]): p for p in declared}
        for name, value in params.items():
            if ("path", name) not in by_place:
                problems.append(f"path parameter {name} is not declared")
            else:
                problems += self.param(by_place["path", name], value)
        for name, value in query.items():
            if ("query", name) not in by_place:
                problems.append(f"query parameter {name!r} is not declared")
            else:
                problems += self.param(by_place["query", name], value)
        request = self.resolve(op.spec.get("requestBody"))
        if request is None:
            if body is not None:
                problems.append("a body where the operation takes none")
        elif body is None:
            if request.get("required"):
                problems.append("no body where one is required")
        else:
            schema = request["content"]["application/json"]["schema"]
            problems += [f"request body {e}" for e in self.errors(schema, body)]
        return problems

    def param(self, declared: dict[str, Any], value: str) -> list[str]:
        schema = declared.get("schema", {})
        typed: Any = value
        if schema.get("type") == "integer":
            if not re.fullmatch(r"-?\d+", value):
                return [f"parameter {declared['name']}={value!r} is not an integer"]
            typed = int(value)
        elif schema.get("type") == "boolean":
            typed = value == "true"
        return [f"parameter {declared['name']} {e}" for e in self.errors(schema, typed)]

    def response_schema(self, op: Operation, status: int) -> tuple[bool, dict[str, Any] | None]:
        """(declared, schema or None) for a status of the operation."""
        responses = op.spec.get("responses", {})
        response = responses.get(str(status), responses.get("default"))
        if response is None:
            return False, None
        response = self.resolve(response)
        content = (response.get("content") or {}).get("application/json")
        return True, (content or {}).get("schema")

    def check_response(self, op: Operation, status: int, body: Any) -> list[str]:
        declared, schema = self.response_schema(op, status)
        if not declared:
            return [f"status {status} is not a response of {op.name}"]
        if schema is None:
            return [] if body is None else [f"a body where {status} has none"]
        return [f"response {status} {e}" for e in self.errors(schema, body)]

    def sample(self, schema: Any) -> Any:
        """A minimal instance of `schema`: its required properties, each the
        simplest value its type allows (null where it is nullable)."""
        schema = self.resolve(schema)
        if "allOf" in schema:
            if schema.get("nullable"):
                return None
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                value = self.sample(part)
                if isinstance(value, dict):
                    merged |= value
                else:
                    return value
            return merged
        for key in ("oneOf", "anyOf"):
            if key in schema:
                return self.sample(schema[key][0])
        if schema.get("nullable"):
            return None
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            props = schema.get("properties", {})
            return {name: self.sample(props.get(name, {})) for name in schema.get("required", [])}
        if kind == "array":
            return []
        if kind == "integer":
            return max(1, schema.get("minimum", 1))
        if kind == "number":
            return 1
        if kind == "boolean":
            return False
        if kind == "string":
            return STRING_FORMATS.get(schema.get("format", ""), "x")
        return None


STRING_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "uri": "https://forge.invalid/x",
    "url": "https://forge.invalid/x",
    "email": "x@forge.invalid",
}


def nullable_enums(node: Any) -> Any:
    """A nullable enum takes null too: GitHub's description writes `nullable: true`
    beside an enum without null (a check run's `conclusion`), which OpenAPI 3.0.3
    would read as refusing the null GitHub sends while a check runs."""
    if isinstance(node, dict):
        if node.get("nullable") and "enum" in node and None not in node["enum"]:
            node = {**node, "enum": [*node["enum"], None]}
        return {k: nullable_enums(v) for k, v in node.items()}
    if isinstance(node, list):
        return [nullable_enums(v) for v in node]
    return node


def rebase(schema: Any) -> Any:
    """`schema` with its local `#/…` references made to point into the description."""
    if isinstance(schema, dict):
        return {
            k: (
                f"{URI}{v}"
                if k == "$ref" and isinstance(v, str) and v.startswith("#")
                else rebase(v)
            )
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [rebase(v) for v in schema]
    return schema


def compile_template(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", path)
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(regex)
