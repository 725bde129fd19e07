"""Every CORRAL_* variable the code reads is listed in docs/operating.md.

The code names a variable as a whole string literal: read directly
(os.environ.get("CORRAL_X"), os.environ["CORRAL_X"], os.getenv), passed to a
reader (config.env_int("CORRAL_X", …)), or kept in a constant that a reader
uses (CRASH_ENV = "CORRAL_X"). Taking every such literal, rather than
following calls, catches all three. Keyword arguments named CORRAL_X are the
variables Corral hands to an agent's process (env.update(CORRAL_X=…)), and
count too. A name built at run time ("CORRAL_" + kind, f"CORRAL_{kind}")
cannot be checked, so it is reported as such.

"Listed" means named in the first cell of a table row of docs/operating.md.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPERATING = ROOT / "docs" / "operating.md"
PACKAGES = ("corral", "agents", "knowledge", "beads", "workspace", "corral_client")
# What else names variables an operator sets: the compose file, the Makefile, the image.
OTHER_SOURCES = ("docker-compose.yml", "Makefile", "Dockerfile")
# Read by the settings without the CORRAL_ prefix.
PLAIN = {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS"}

NAME = re.compile(r"CORRAL_[A-Z0-9_]*[A-Z0-9]")
BUILT = re.compile(r"CORRAL_[A-Z0-9_]*")  # a literal that is only the start of a name
LISTED = re.compile(r"`([A-Z][A-Z0-9_]*)`")


def names_in_code(source: str) -> tuple[set[str], set[str]]:
    """(the CORRAL_* names a module holds as literals or keywords, the name
    fragments it builds names from)."""
    names: set[str] = set()
    built: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if NAME.fullmatch(node.value):
                names.add(node.value)
            elif BUILT.fullmatch(node.value):
                built.add(node.value)
        elif isinstance(node, ast.keyword) and node.arg and NAME.fullmatch(node.arg):
            names.add(node.arg)
    return names, built


def listed(markdown: str) -> set[str]:
    """The names in the first cell of each table row: | `CORRAL_X` | … |."""
    found: set[str] = set()
    for line in markdown.splitlines():
        if line.startswith("|"):
            found |= set(LISTED.findall(line.split("|")[1]))
    return found


def undocumented(sources: dict[str, str], markdown: str) -> list[str]:
    """One line per name the code reads that the document does not list, and
    per name the code builds at run time."""
    documented = listed(markdown)
    problems = []
    for path, source in sorted(sources.items()):
        names, built = names_in_code(source)
        problems += [f"{path}: {name} is not in docs/operating.md" for name in names - documented]
        problems += [f"{path}: a name built from {part!r}: write it out" for part in built]
    return sorted(problems)


def code_sources() -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text()
        for package in PACKAGES
        if (ROOT / package).is_dir()
        for path in (ROOT / package).rglob("*.py")
    }


def test_every_corral_setting_the_code_reads_is_documented():
    assert undocumented(code_sources(), OPERATING.read_text()) == []


def test_the_settings_without_the_prefix_are_documented():
    assert PLAIN <= listed(OPERATING.read_text())


def test_every_documented_corral_setting_is_still_named_somewhere():
    names: set[str] = set()
    for source in code_sources().values():
        names |= names_in_code(source)[0]
    for other in OTHER_SOURCES:
        names |= set(NAME.findall((ROOT / other).read_text()))
    stale = {name for name in listed(OPERATING.read_text()) if NAME.fullmatch(name)} - names
    assert stale == set(), "docs/operating.md lists variables nothing reads"


CHECKED = """
import os
from workspace import config

CRASH_ENV = "CORRAL_KEPT_IN_A_CONSTANT"
a = os.environ.get("CORRAL_LISTED")
b = os.environ["CORRAL_SUBSCRIPTED"]
c = os.getenv("CORRAL_GETENV", "1")
d = config.env_int("CORRAL_HELPER", default=3)
e = os.environ.get(CRASH_ENV)
f = dict(os.environ, CORRAL_HANDED_TO_AGENTS="1")
g = os.environ.get("CORRAL_SANDBOX_" + "TMP_MB")
h = os.environ.get(f"CORRAL_{a}")
print("CORRAL_URL is not set")  # a message, not a name
"""
DOCUMENT = """
| name | default | what it does |
| --- | --- | --- |
| `CORRAL_LISTED` | 1 | listed, so not reported |

`CORRAL_HELPER` in prose is not a listing.
"""


def test_the_checker_reports_each_way_of_reading_an_undocumented_name():
    assert undocumented({"x.py": CHECKED}, DOCUMENT) == [
        "x.py: CORRAL_GETENV is not in docs/operating.md",
        "x.py: CORRAL_HANDED_TO_AGENTS is not in docs/operating.md",
        "x.py: CORRAL_HELPER is not in docs/operating.md",
        "x.py: CORRAL_KEPT_IN_A_CONSTANT is not in docs/operating.md",
        "x.py: CORRAL_SUBSCRIPTED is not in docs/operating.md",
        "x.py: a name built from 'CORRAL_': write it out",
        "x.py: a name built from 'CORRAL_SANDBOX_': write it out",
    ]


def test_the_checker_is_quiet_when_every_name_is_listed():
    document = DOCUMENT + "| `CORRAL_HELPER` | 3 | now listed |\n"
    assert undocumented({"x.py": 'config.env_int("CORRAL_HELPER", default=3)'}, document) == []
