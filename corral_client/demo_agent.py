"""The demo agent: a real, deterministic stand-in for an AI CLI.

It carries out the edits written in its bead's description, so the demo
workspace runs end to end with no AI service. Each edit is a fenced block:

    ```corral write path/to/file
    the whole new content
    ```
    ```corral append path/to/file
    lines to add at the end
    ```
    ```corral replace path/to/file
    the old text
    =====
    the new text
    ```
    ```corral delete path/to/file
    ```
    ```corral sleep 2
    ```
    ```corral fail the reason to give
    ```

It also reads its context pack (.agents/context.md) and follows one kind of
learning it was given there, as an AI agent would follow a lesson: a
convention naming the line every module of a folder must start with
(`every module in jobs/ must start with the line "# owner: items-team"`,
as the demo's check says when a module lacks it). Every file its edits
wrote under that folder gets the line first. Only the pack's learnings
count, not the bead's last failure: the demo shows a learning at work.

And it follows a reviewer's line comments, which a "request changes" puts
in the pack under "## Review comments to address" (one line each:
"- `path` line N, reviewer: text"). One rule, deterministic: a comment that
says "rename X to Y" (X and Y words, backquotes allowed) has the whole word
X replaced by Y on that line of that file, after the bead's own edits. The
comments on removed lines, and any other comment, are left for a person.

Run in a session's clone: `python -m corral_client.demo_agent` reads .agents/bead.json.
"""

import json
import re
import sys
import time
from pathlib import Path

BLOCK = re.compile(r"^```corral[ \t]+(\w+)[ \t]*(.*?)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


# A learning the agent follows: the first line a folder's modules must have.
HEADER_RULE = re.compile(r'every module in ([\w./-]+?)/ must start with the line "([^"\n]+)"')
LEARNINGS = "\n## Learnings from earlier work\n"
REVIEW = "\n## Review comments to address\n"
COMMENT = re.compile(r"^- `([^`\n]+)` line (\d+), [^:\n]*: (.*)$", re.M)
RENAME = re.compile(r"\brename `?(\w+)`? to `?(\w+)`?", re.I)


class EditError(Exception):
    pass


def edits(description: str) -> list[tuple[str, str, str]]:
    """(operation, argument, body) for each block, in order."""
    return [(m[1], m[2], m[3]) for m in BLOCK.finditer(description)]


def safe_path(root: Path, rel: str) -> Path:
    path = (root / rel).resolve()
    if root.resolve() not in path.parents:
        raise EditError(f"{rel}: outside the working folder")
    return path


def apply(root: Path, op: str, arg: str, body: str) -> str:
    if op == "sleep":
        time.sleep(float(arg))
        return f"slept {arg}s"
    if op == "fail":
        raise EditError(arg or "told to fail")
    path = safe_path(root, arg)
    if op == "write":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    elif op == "append":
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(body)
    elif op == "replace":
        old, sep, new = body.partition("=====\n")
        text = path.read_text() if path.exists() else ""
        if not sep or old not in text:
            raise EditError(f"{arg}: the text to replace is not there")
        path.write_text(text.replace(old, new, 1))
    elif op == "delete":
        path.unlink()
    else:
        raise EditError(f"unknown edit {op!r}")
    return f"{op} {arg}"


def header_rules(context: str) -> dict[str, str]:
    """{folder: first line} from the learnings section of a context pack."""
    _, found, rest = context.partition(LEARNINGS)
    section = rest.split("\n## ", 1)[0] if found else ""
    return dict(HEADER_RULE.findall(section))


def follow(root: Path, rules: dict[str, str], written: list[str]) -> list[str]:
    """Put each rule's line first in the files written under its folder."""
    done = []
    for folder, line in rules.items():
        for rel in written:
            path = safe_path(root, rel)
            if not rel.startswith(folder.strip("/") + "/") or not path.is_file():
                continue
            text = path.read_text()
            if text.partition("\n")[0] != line:
                path.write_text(f"{line}\n{text}")
                done.append(f'followed a learning: "{line}" first in {rel}')
    return done


def review_renames(context: str) -> list[tuple[str, int, str, str]]:
    """(path, line, old word, new word) for each "rename X to Y" comment of the pack."""
    _, found, rest = context.partition(REVIEW)
    section = rest.split("\n## ", 1)[0] if found else ""
    renames = []
    for path, line, text in COMMENT.findall(section):
        if rename := RENAME.search(text):
            renames.append((path, int(line), rename[1], rename[2]))
    return renames


def address(root: Path, renames: list[tuple[str, int, str, str]]) -> list[str]:
    """Make each rename on its line; a line that is not there is said, not an error."""
    done = []
    for rel, number, old, new in renames:
        path = safe_path(root, rel)
        lines = path.read_text().splitlines(keepends=True) if path.is_file() else []
        if not 1 <= number <= len(lines):
            done.append(f"review: {rel} has no line {number}")
            continue
        lines[number - 1] = re.sub(rf"\b{re.escape(old)}\b", new, lines[number - 1])
        path.write_text("".join(lines))
        done.append(f"review: renamed {old} to {new} on {rel} line {number}")
    return done


def main(root: str | Path | None = None) -> int:
    root = Path(root or ".")
    bead = json.loads((root / ".agents" / "bead.json").read_text())
    print(f"demo agent on {bead['id']}: {bead['title']}", flush=True)
    done = []
    try:
        for op, arg, body in edits(bead.get("description", "")):
            done.append(apply(root, op, arg, body))
            print(f"  {done[-1]}", flush=True)
        context = root / ".agents" / "context.md"
        pack = context.read_text() if context.is_file() else ""
        rules = header_rules(pack)
        written = [
            arg
            for op, arg, _ in edits(bead.get("description", ""))
            if op in ("write", "append", "replace")
        ]
        for step in follow(root, rules, written) + address(root, review_renames(pack)):
            done.append(step)
            print(f"  {step}", flush=True)
    except (EditError, OSError, ValueError) as e:
        print(f"demo agent failed: {e}", file=sys.stderr, flush=True)
        return 1
    handoff = "\n".join(f"- {step}" for step in done) or "- nothing to do"
    (root / ".agents" / "handoff.md").write_text(f"Applied {len(done)} edit(s):\n{handoff}\n")
    print(f"done: {len(done)} edit(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
