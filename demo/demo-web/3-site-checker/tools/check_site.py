#!/usr/bin/env python3
"""Check the static site: balanced markup and no broken local links.

Run from anywhere: python3 tools/check_site.py
"""

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class PageChecker(HTMLParser):
    def __init__(self, page):
        super().__init__()
        self.page = page
        self.open_tags = []
        self.errors = []
        self.links = 0

    def problem(self, message):
        line = self.getpos()[0]
        self.errors.append("%s:%d: %s" % (self.page.relative_to(ROOT), line, message))

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.open_tags.append(tag)
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.check_link(value)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.open_tags or self.open_tags[-1] != tag:
            self.problem("unexpected </%s>" % tag)
            return
        self.open_tags.pop()

    def check_link(self, value):
        parts = urlsplit(value)
        if parts.scheme or parts.netloc or not parts.path:
            return  # another site, or only a #fragment
        self.links += 1
        if parts.path.startswith("/"):
            target = ROOT / parts.path.lstrip("/")
        else:
            target = self.page.parent / parts.path
        if not target.exists():
            self.problem("broken link %s" % value)

    def finish(self):
        self.close()
        for tag in reversed(self.open_tags):
            self.problem("<%s> is never closed" % tag)


def main():
    pages = sorted(p for p in ROOT.rglob("*.html") if ".git" not in p.relative_to(ROOT).parts)
    errors, links = [], 0
    for page in pages:
        checker = PageChecker(page)
        checker.feed(page.read_text(encoding="utf-8"))
        checker.finish()
        errors += checker.errors
        links += checker.links
    for error in errors:
        print(error)
    print("%d pages, %d local links, %d problems" % (len(pages), links, len(errors)))
    return 1 if errors or not pages else 0


if __name__ == "__main__":
    sys.exit(main())
