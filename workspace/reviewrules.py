"""Which paths of a repository need a person to review a change, and who is asked
first: `.corral/review.toml`, or else a CODEOWNERS file read the same way.

The rules are read from the tree of the repository's branch as it stands (the
commit the submission goes onto once landed work is counted), never from the
submission's own tree: an agent's patch that edits the rules changes nothing
about how that patch is reviewed. A file that cannot be read as rules is no
rules at all but an error: every path then needs a person (see `decide`).

review.toml:

    [[rules]]
    paths = ["migrations/**"]   # gitignore-style patterns (pathspec's gitignore rules)
    review = "two"              # auto | one | two
    owners = ["db-team"]        # people (usernames) or Django groups, asked first
    risk = "high"               # optional: a change here is at least this risky

    [risk]
    person_at = "medium"        # the risk from which an `auto` change needs a person
    medium_lines = 100          # lines changed from which a change is medium risk
    high_lines = 400            # and high

The last rule matching a path decides it (as in .gitignore and CODEOWNERS); a
path no rule matches follows the repository's review_mode.
"""

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from pathspec import GitIgnoreSpec
from pathspec.patterns.gitwildmatch import GitWildMatchPatternError

from workspace import gitops
from workspace.gitops import StrPath

RULES_FILE = ".corral/review.toml"
CODEOWNERS_FILES = ("CODEOWNERS", ".github/CODEOWNERS", "docs/CODEOWNERS")
MAX_BYTES = 64_000  # a rules file larger than this is refused, not read
NEEDS = {"auto": 0, "one": 1, "two": 2}
LEVELS = ("low", "medium", "high")
# A change to the rules themselves is never landed without a person, whatever
# the rules say: they decide who looks at everything else.
RULE_PATHS = (RULES_FILE, *CODEOWNERS_FILES)
OWNER = re.compile(r"[\w.@+-]{1,150}")


class RulesError(ValueError):
    """The rules file cannot be read as rules: the message says where and why."""


@dataclass(frozen=True)
class Rule:
    patterns: tuple[str, ...]
    people: int  # 0 auto, 1 one person, 2 two people
    owners: tuple[str, ...] = ()
    risk: str = "low"
    line: int = 0  # its CODEOWNERS line, or its place among [[rules]] (1-based)

    @property
    def review(self) -> str:
        return {0: "auto", 1: "one", 2: "two"}[self.people]

    def label(self) -> str:
        return ", ".join(self.patterns)


@dataclass(frozen=True)
class RiskSettings:
    person_at: str = "medium"  # "never": risk alone never asks for a person
    medium_lines: int = 100
    high_lines: int = 400


@dataclass
class Rules:
    """The rules of one repository at one commit; `source` the file they came from
    (empty: none), `error` why it could not be read (then `rules` is empty)."""

    source: str = ""
    rules: list[Rule] = field(default_factory=list)
    risk: RiskSettings = field(default_factory=RiskSettings)
    error: str = ""
    specs: list[GitIgnoreSpec] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.specs = [GitIgnoreSpec.from_lines(r.patterns) for r in self.rules]

    def rule_for(self, path: str) -> Rule | None:
        """The last rule matching `path`, or None."""
        for rule, spec in zip(reversed(self.rules), reversed(self.specs), strict=True):
            if spec.match_file(path):
                return rule
        return None


@dataclass
class Need:
    """What one change needs: `people` (0–2), the owners asked first, and why."""

    people: int = 0
    owners: list[str] = field(default_factory=list)
    why: list[str] = field(default_factory=list)
    path_risk: str = "low"
    path_risk_why: list[str] = field(default_factory=list)


def parse_toml(text: str) -> Rules:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RulesError(f"{RULES_FILE} is not TOML: {e}") from None
    unknown = set(data) - {"rules", "risk"}
    if unknown:
        raise RulesError(f"{RULES_FILE}: unknown table or key {sorted(unknown)[0]!r}")
    rows = data.get("rules", [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise RulesError(f"{RULES_FILE}: write each rule as a [[rules]] table")
    rules = [toml_rule(row, i) for i, row in enumerate(rows, 1)]
    return Rules(RULES_FILE, rules, risk_settings(data.get("risk", {})))


def toml_rule(row: dict[str, object], n: int) -> Rule:
    where = f"{RULES_FILE}, rule {n}"
    unknown = set(row) - {"paths", "review", "owners", "risk"}
    if unknown:
        raise RulesError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    paths = row.get("paths")
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise RulesError(f"{where}: paths must be a pattern or a list of patterns")
    review = row.get("review", "one")
    if review not in NEEDS:
        raise RulesError(f"{where}: review must be auto, one or two, not {review!r}")
    risk = row.get("risk", "low")
    if risk not in LEVELS:
        raise RulesError(f"{where}: risk must be low, medium or high, not {risk!r}")
    return Rule(
        checked_patterns(paths, where), NEEDS[str(review)], owners(row, where), str(risk), n
    )


def owners(row: dict[str, object], where: str) -> tuple[str, ...]:
    found = row.get("owners", [])
    if isinstance(found, str):
        found = [found]
    if not isinstance(found, list) or not all(isinstance(o, str) for o in found):
        raise RulesError(f"{where}: owners must be a list of user or group names")
    return tuple(owner_name(o, where) for o in found)


def owner_name(text: str, where: str) -> str:
    """A user or group name; CODEOWNERS' `@org/team` is the group `team`."""
    name = text.strip().removeprefix("@").rsplit("/", 1)[-1]
    if not OWNER.fullmatch(name):
        raise RulesError(f"{where}: {text!r} is not a user or group name")
    return name


def checked_patterns(patterns: Iterable[str], where: str) -> tuple[str, ...]:
    patterns = tuple(p.strip() for p in patterns)
    try:
        GitIgnoreSpec.from_lines(patterns)
    except (GitWildMatchPatternError, ValueError) as e:
        raise RulesError(f"{where}: bad pattern: {e}") from None
    return patterns


def risk_settings(table: object) -> RiskSettings:
    if not isinstance(table, dict):
        raise RulesError(f"{RULES_FILE}: [risk] must be a table")
    unknown = set(table) - {"person_at", "medium_lines", "high_lines"}
    if unknown:
        raise RulesError(f"{RULES_FILE}, [risk]: unknown key {sorted(unknown)[0]!r}")
    person_at = table.get("person_at", "medium")
    if person_at not in (*LEVELS, "never"):
        raise RulesError(f"{RULES_FILE}, [risk]: person_at must be low, medium, high or never")
    medium, high = table.get("medium_lines", 100), table.get("high_lines", 400)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in (medium, high)):
        raise RulesError(f"{RULES_FILE}, [risk]: medium_lines and high_lines are whole numbers")
    return RiskSettings(str(person_at), int(medium), int(high))


def parse_codeowners(text: str, source: str) -> Rules:
    """GitHub's CODEOWNERS: `pattern owner…` per line; each owned path needs one
    person, its owners asked first; a pattern with no owner has none (auto)."""
    rules = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = re.split(r"(?<!\\)#", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        pattern, *names = line.split()
        where = f"{source}, line {n}"
        people = 1 if names else 0
        found = tuple(owner_name(name, where) for name in names)
        rules.append(Rule(checked_patterns([pattern], where), people, found, "low", n))
    return Rules(source, rules)


def parse(source: str, text: str) -> Rules:
    return parse_toml(text) if source == RULES_FILE else parse_codeowners(text, source)


# Rules by the blob they were read from: a blob's id names its content.
PARSED: dict[str, Rules] = {}


def read(path: StrPath, commit: str) -> Rules:
    """The rules in the tree of `commit` of the repository at `path`: review.toml
    if there is one, else the first CODEOWNERS of GitHub's places, else none.
    A file that is not a regular blob, is too large or does not parse gives
    Rules whose `error` says why."""
    sources = (RULES_FILE, *CODEOWNERS_FILES)
    entries = files_at(path, commit, sources)
    for source in sources:
        if source not in entries:
            continue
        mode, blob, size = entries[source]
        if mode not in ("100644", "100755"):
            return Rules(source, error=f"{source} is not a regular file")
        if size > MAX_BYTES:
            return Rules(source, error=f"{source} is larger than {MAX_BYTES} bytes")
        if blob not in PARSED:
            PARSED[blob] = parsed_blob(path, blob, source)
        return PARSED[blob]
    return Rules()


# The rules files of a commit, by (repository, commit): a commit never changes.
ENTRIES: dict[tuple[str, str], dict[str, tuple[str, str, int]]] = {}


def files_at(path: StrPath, commit: str, sources: Sequence[str]) -> dict[str, tuple[str, str, int]]:
    key = (str(path), commit)
    if key not in ENTRIES:
        if len(ENTRIES) > 1024:
            ENTRIES.clear()
        ENTRIES[key] = gitops.blobs_at(path, commit, sources)
    return ENTRIES[key]


def on_branch(path: StrPath, branch: str) -> Rules:
    """The rules at the tip of `branch` (none when it has no commits yet)."""
    try:
        return read(path, gitops.head_sha(path, branch))
    except gitops.GitError:
        return Rules()


def parsed_blob(path: StrPath, blob: str, source: str) -> Rules:
    text = gitops.cat_blobs(path, [blob])[blob].decode("utf-8", errors="replace")
    try:
        return parse(source, text)
    except RulesError as e:
        return Rules(source, error=str(e))


def decide(rules: Rules, paths: Sequence[str], human_default: bool) -> Need:
    """What a change to `paths` needs under `rules`; a path no rule matches needs
    one person when `human_default` (the repository's review_mode is human)."""
    need = Need()
    if rules.error:
        return Need(1, [], [f"The review rules cannot be read ({rules.error}): a person decides."])
    defaulted = []
    for path in paths:
        if path in RULE_PATHS or PurePosixPath(path).name == "CODEOWNERS":
            add(need, 1, (), f"`{path}` changes the review rules")
            continue
        rule = rules.rule_for(path)
        if rule is None:
            defaulted.append(path)
            continue
        if rule.people:
            many = " (two people)" if rule.people == 2 else ""
            if rule.owners:
                why = f"`{rule.label()}` is owned by {', '.join(rule.owners)}{many}"
            else:
                why = f"`{rule.label()}` needs {'two people' if rule.people == 2 else 'a person'}"
            add(need, rule.people, rule.owners, why)
        if LEVELS.index(rule.risk) > LEVELS.index(need.path_risk):
            need.path_risk = rule.risk
        if rule.risk != "low":
            note = f"`{rule.label()}` is {rule.risk} risk"
            if note not in need.path_risk_why:
                need.path_risk_why.append(note)
    if human_default and defaulted:
        many = f" and {len(defaulted) - 1} more" if len(defaulted) > 1 else ""
        add(need, 1, (), f"`{defaulted[0]}`{many}: the repository reviews by hand")
    return need


def add(need: Need, people: int, owners: Iterable[str], why: str) -> None:
    need.people = max(need.people, people)
    need.owners.extend(o for o in owners if o not in need.owners)
    if why not in need.why:
        need.why.append(why)
