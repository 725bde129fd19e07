"""Scopes compared as patterns: whether one scope lies within another.

An agent may file a bead only within the scope of the bead it works on
(agents.moves.filing.file_bead). Patterns are gitignore-style; the comparison is
conservative: a pattern is accepted only where it provably matches no path
the parent's scope does not, and anything unclear is reported as beyond (a
person can widen a scope).
"""

import re

GLOB = re.compile(r"[*?\[\]\\]")
EVERYTHING = {"*", "**", "/**", "**/*"}


def beyond(scope: list[str], parent: list[str], unscoped_ok: bool) -> list[str]:
    """The patterns of `scope` that may match a path `parent` does not ([] if none).

    A pattern lies within the parent's scope when the parent has the same
    pattern, or one matching everything, or a directory pattern `dir/**` or
    `dir/` (anchored, `dir` without wildcards) and the pattern is anchored
    under `dir/` (`dir/sub/**`, `dir/*.py`). Negations in `scope` only narrow
    it; the parent's (`!dir/secret/**`) must provably miss every pattern. An
    empty scope means any path where the repository allows unscoped beads.
    """
    if not parent:
        return [] if unscoped_ok or not scope else list(scope)
    if not scope:
        return ["(no scope, which is any path)"]
    included = [p for p in parent if adds_paths(p)]
    excluded = [p[1:] for p in parent if p.startswith("!")]
    return [
        pattern
        for pattern in scope
        if adds_paths(pattern)
        and not (
            any(pattern_within(pattern, q) for q in included)
            and all(disjoint(pattern, x) for x in excluded)
        )
    ]


def adds_paths(pattern: str) -> bool:
    """Not a negation, a comment or a blank line (those add no path)."""
    return bool(pattern.strip()) and not pattern.startswith(("!", "#"))


def anchored(pattern: str) -> bool:
    """Matched from the repository's root, not at any depth (git's rule: a
    slash at the start or in the middle; one at the end does not count)."""
    return "/" in pattern.rstrip("/") and not pattern.startswith("**/")


def literal_root(pattern: str) -> str:
    """The leading path segments of an anchored pattern that hold no wildcard:
    every path it matches is that path or lies under it ("" if none)."""
    segments = []
    for segment in pattern.strip("/").split("/"):
        if not segment or GLOB.search(segment):
            break
        segments.append(segment)
    return "/".join(segments)


def pattern_within(pattern: str, parent: str) -> bool:
    if pattern == parent or parent in EVERYTHING:
        return True
    if {".", ".."} & set(pattern.split("/")):
        return False  # not a path git can hold; refused rather than reasoned about
    directory = parent.removesuffix("/**") if parent.endswith("/**") else None
    if directory is None and parent.endswith("/") and anchored(parent):
        directory = parent.rstrip("/")
    if not directory or not anchored(parent) or GLOB.search(directory):
        return False
    prefix = directory.lstrip("/") + "/"
    below = pattern.lstrip("/") if anchored(pattern) else ""
    return below.startswith(prefix) and len(below) > len(prefix)


def disjoint(pattern: str, negated: str) -> bool:
    """Whether no path matches both: both anchored under roots neither of which
    lies under the other."""
    if not (anchored(pattern) and anchored(negated)):
        return False
    mine, theirs = literal_root(pattern), literal_root(negated)
    if not mine or not theirs:
        return False
    return not (mine == theirs or mine.startswith(theirs + "/") or theirs.startswith(mine + "/"))
