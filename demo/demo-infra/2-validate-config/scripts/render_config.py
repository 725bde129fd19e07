"""Render config/nginx.conf.tmpl with the values in config/site.json."""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")

REQUIRED = {"server_name": (str, "text"), "listen": (int, "a number")}


def validate(values):
    """Return `values` if the site config is usable, else raise ValueError naming every problem."""
    problems = []
    for key, (kind, what) in REQUIRED.items():
        if key not in values:
            problems.append("missing %s" % key)
        elif not isinstance(values[key], kind) or isinstance(values[key], bool):
            problems.append("%s must be %s" % (key, what))
    port = values.get("listen")
    if isinstance(port, int) and not 0 < port < 65536:
        problems.append("listen must be a port from 1 to 65535")
    if problems:
        raise ValueError("; ".join(problems))
    return values


def render(template, values):
    """Fill every {{ name }}; nginx's own $variables are left alone."""

    def substitute(match):
        key = match.group(1)
        if key not in values:
            raise KeyError("the template needs %r" % key)
        return str(values[key])

    return PLACEHOLDER.sub(substitute, template)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    config = Path(argv[0]) if argv else ROOT / "config" / "site.json"
    values = validate(json.loads(config.read_text()))
    template = (ROOT / "config" / "nginx.conf.tmpl").read_text()
    sys.stdout.write(render(template, values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
