"""Cut the forges' published OpenAPI descriptions down to the operations Corral uses.

The descriptions are tens of megabytes; tests/forges/data/ keeps only the
operations listed in OPERATIONS and every schema, parameter and response they
reach through `$ref`, with where they came from (`x-source`), so the subset can
be made again and compared:

    python tests/forges/extract.py github path/to/api.github.com.json \
        --source "npm @octokit/openapi 23.0.2 (generated/api.github.com.json)"
    python tests/forges/extract.py gitea path/to/templates/swagger/v1_json.tmpl \
        --source "github:go-gitea/gitea@<commit> templates/swagger/v1_json.tmpl"

GitHub's is OpenAPI 3.0 (github/rest-api-description, as the @octokit/openapi
package ships it); Gitea's is Swagger 2.0 (its `{{AppSubUrl}}` template values
are filled in here). GitLab's merge-request endpoints are not taken from a
description: see tests/forges/data/gitlab.json, written by hand and labelled so.
"""

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"

# (method, path) of every operation a Corral forge adapter calls.
OPERATIONS = {
    "github": [
        ("post", "/repos/{owner}/{repo}/pulls"),
        ("get", "/repos/{owner}/{repo}/pulls"),
        ("get", "/repos/{owner}/{repo}/pulls/{pull_number}"),
        ("patch", "/repos/{owner}/{repo}/pulls/{pull_number}"),
        ("put", "/repos/{owner}/{repo}/pulls/{pull_number}/merge"),
        ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews"),
        ("get", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
        ("post", "/repos/{owner}/{repo}/issues/{issue_number}/comments"),
        ("get", "/repos/{owner}/{repo}/commits/{ref}/check-runs"),
        ("get", "/repos/{owner}/{repo}/commits/{ref}/status"),
    ],
    "gitea": [
        ("post", "/repos/{owner}/{repo}/pulls"),
        ("get", "/repos/{owner}/{repo}/pulls"),
        ("get", "/repos/{owner}/{repo}/pulls/{index}"),
        ("patch", "/repos/{owner}/{repo}/pulls/{index}"),
        ("post", "/repos/{owner}/{repo}/pulls/{index}/merge"),
        ("get", "/repos/{owner}/{repo}/pulls/{index}/reviews"),
        ("get", "/repos/{owner}/{repo}/issues/{index}/comments"),
        ("post", "/repos/{owner}/{repo}/issues/{index}/comments"),
        ("get", "/repos/{owner}/{repo}/commits/{ref}/status"),
    ],
}
# Text that only documents (descriptions, examples) is dropped: the subset is
# for validation, and it stays small enough to read in a review.
DROPPED = {"description", "summary", "examples", "example", "externalDocs", "x-github"}


def load(forge: str, path: Path) -> dict[str, Any]:
    text = path.read_text()
    if forge == "gitea":  # a Go template: its values are not JSON until filled
        text = re.sub(r"\{\{AppSubUrl[^}]*\}\}", "", text)
        text = re.sub(r"\{\{AppVer[^}]*\}\}", "0", text)
    return json.loads(text)


def strip(node: Any, names: bool = False) -> Any:
    """`node` without its documentation; `names`: a mapping of names (a schema's
    properties), whose keys are kept whatever they are called."""
    if isinstance(node, dict):
        return {
            k: strip(v, names=k == "properties" and not names)
            for k, v in node.items()
            if names or k not in DROPPED
        }
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def pointer(doc: dict[str, Any], ref: str) -> tuple[list[str], Any]:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in ref.removeprefix("#/").split("/")]
    node: Any = doc
    for part in parts:
        node = node[part]
    return parts, node


def subset(forge: str, doc: dict[str, Any], source: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "x-source": source,
        "x-extracted-by": "tests/forges/extract.py",
        "x-info-version": doc.get("info", {}).get("version", ""),
        "paths": {},
    }
    for key in ("openapi", "swagger", "basePath"):
        if key in doc:
            out[key] = doc[key]
    for method, path in OPERATIONS[forge]:
        item = doc["paths"][path]
        entry = out["paths"].setdefault(path, {})
        if "parameters" in item:
            entry["parameters"] = strip(item["parameters"])
        entry[method] = strip(item[method])
    seen: set[str] = set()
    todo = refs(out["paths"])
    while todo:
        ref = todo.pop()
        if ref in seen or not ref.startswith("#/"):
            continue
        seen.add(ref)
        parts, node = pointer(doc, ref)
        node = strip(node)
        place = out
        for part in parts[:-1]:
            place = place.setdefault(part, {})
        place[parts[-1]] = node
        todo.extend(refs(node))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("forge", choices=sorted(OPERATIONS))
    parser.add_argument("description", type=Path, help="the forge's full description")
    parser.add_argument("--source", required=True, help="where it came from, and which version")
    parser.add_argument("--output", type=Path, help="default: tests/forges/data/<forge>.json")
    args = parser.parse_args(argv)
    doc = load(args.forge, args.description)
    out = subset(args.forge, doc, args.source)
    target = args.output or DATA / f"{args.forge}.json"
    target.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"{target}: {len(OPERATIONS[args.forge])} operations, {len(json.dumps(out))} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
