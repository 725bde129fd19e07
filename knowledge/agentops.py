"""agentops `.agents/learnings/*.md` in and out, losslessly.

A file agentops writes: YAML front matter (`id`, `type`, `date` or
`created_at`, `category`, `confidence`, `maturity`, `utility`, reward fields,
`source`, … and whatever else), then `# Learning: Title` and the markdown
body; sometimes more learnings follow, each after a `---` line, with inline
`**ID**:`, `**Category**:` and `**Confidence**:` lines under its title.

Each learning keeps where it came from in `Learning.agentops`: the file, its
part, the front matter's text exactly as written, the text before its
heading, the heading, the inline block. Export writes those back around the
current title and body, so a file that went in and came out unchanged is
the same file, byte for byte. Front matter is parsed with python-frontmatter's
YAML handler, every scalar kept as the string it was written as; only a key
Corral maps and has since changed (utility, maturity) is written anew, and
then the front matter is dumped again with each scalar as it was.

Corral maps: maturity (agentops' provisional is Corral's candidate),
utility, category (a tag), dates (the freshness clock: last_reward_at, else
date, else created_at). Imported learnings are approved: a team's files are
its curated knowledge.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.text import slugify
from frontmatter.default_handlers import YAMLHandler

from knowledge.models import Learning
from workspace.models import Repository, Workspace

FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)?---[ \t]*(?:\n|\Z)", re.DOTALL)
HEADING = re.compile(r"^(#[ \t]+(?:Learning:[ \t]*)?)(.*)$", re.MULTILINE)
INLINE = re.compile(r"^\*\*([^*\n]+?):?\*\*:?[ \t]*(.*)$")
SEPARATOR = "\n---\n"
NATIVE_ID = re.compile(r"corral-(\d+)")
MATURITY_IN = {
    "provisional": Learning.Maturity.CANDIDATE,
    "candidate": Learning.Maturity.CANDIDATE,
    "established": Learning.Maturity.ESTABLISHED,
    "proven": Learning.Maturity.PROVEN,
    "validated": Learning.Maturity.PROVEN,
}
TITLE_MAX = Learning._meta.get_field("title").max_length or 200


class BrokenFile(Exception):
    def __init__(self, path: Path, line: int, reason: str):
        super().__init__(f"{path}:{line}: {reason}")


class ScalarsAsWritten(YAMLHandler):
    """YAML front matter with every scalar the string it was written as
    ("0.4050" stays "0.4050", a date stays its text), dumped back the same way."""

    def load(self, fm: str, **kwargs: object) -> Any:
        return yaml.load(fm, Loader=yaml.BaseLoader)  # noqa: S506 - BaseLoader builds no objects

    def export(self, metadata: dict[str, object], **kwargs: object) -> str:
        return yaml.dump(
            metadata,
            Dumper=PlainDumper,
            default_flow_style=False,
            allow_unicode=True,
            sort_keys=False,
        )


class PlainDumper(yaml.SafeDumper):
    pass


def plain_string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Tagged as YAML would read it unquoted, so "0.4050" is written 0.4050, as
    # it came, and quoted only where it must be.
    tag = dumper.resolve(yaml.ScalarNode, value, (True, False))
    return dumper.represent_scalar(tag, value)


PlainDumper.add_representer(str, plain_string)
HANDLER = ScalarsAsWritten()


@dataclass
class Part:
    """One learning of a file, and the text around it as it was written."""

    title: str
    body: str
    meta: dict[str, Any] = field(default_factory=dict)
    inline: dict[str, str] = field(default_factory=dict)
    layout: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        if self.layout["part"] == 0 and self.meta.get("id"):
            return str(self.meta["id"])
        return f"{self.layout['file']}#{self.inline.get('ID') or self.layout['part']}"


def parse(path: Path, name: str) -> list[Part]:
    """The learnings in one file (BrokenFile names the line that is wrong)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BrokenFile(path, 1, f"not UTF-8 text ({e.reason})") from None
    head, yaml_text, meta, content = split_front_matter(path, text)
    parts: list[str] = []
    for piece in content.split(SEPARATOR):
        if parts and not HEADING.search(piece):
            parts[-1] += SEPARATOR + piece  # a rule inside a learning's body
        else:
            parts.append(piece)
    line = head.count("\n") + 1
    found = []
    for n, piece in enumerate(parts):
        found.append(parse_part(path, name, n, piece, line))
        line += piece.count("\n") + SEPARATOR.count("\n")
    found[0].meta = meta
    found[0].layout["front_matter"] = head
    found[0].layout["yaml"] = yaml_text
    return found


def split_front_matter(path: Path, text: str) -> tuple[str, str, dict[str, Any], str]:
    """(the front matter block as written, its YAML, parsed, the rest)."""
    if not text.startswith("---"):
        return "", "", {}, text
    match = FRONT_MATTER.match(text)
    if not match:
        raise BrokenFile(path, 1, "the front matter opened with --- is never closed")
    yaml_text = match.group(1) or ""
    try:
        meta = HANDLER.load(yaml_text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise BrokenFile(path, line, f"front matter: {problem}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise BrokenFile(path, 2, "front matter must be key: value lines")
    return match.group(0), yaml_text, meta, text[match.end() :]


def parse_part(path: Path, name: str, n: int, text: str, line: int) -> Part:
    layout: dict[str, Any] = {"file": name, "part": n}
    heading = HEADING.search(text)
    if heading is None:
        layout.update(before="", heading=None, inline="")
        title = next((s.strip() for s in text.splitlines() if s.strip()), Path(name).stem)
        return Part(title[:TITLE_MAX], text, layout=layout)
    title = heading.group(2)
    if not title.strip():
        raise BrokenFile(path, line + text[: heading.start()].count("\n"), "an empty title")
    if len(title) > TITLE_MAX:
        at = line + text[: heading.start()].count("\n")
        raise BrokenFile(path, at, f"a title longer than {TITLE_MAX} characters")
    lines = text[heading.end() :].split("\n")
    i = 1
    while i < len(lines) and (not lines[i].strip() or INLINE.match(lines[i])):
        i += 1
    inline_text = "\n".join(lines[:i]) + ("\n" if i < len(lines) else "")
    inline = {}
    for raw in lines[1:i]:
        if found := INLINE.match(raw):
            inline[found.group(1).strip()] = found.group(2).strip()
    layout.update(before=text[: heading.start()], heading=heading.group(1), inline=inline_text)
    return Part(title, "\n".join(lines[i:]), inline=inline, layout=layout)


def files_in(path: Path) -> list[tuple[Path, str]]:
    """(file, name it is exported under) for a file or each *.md of a folder."""
    if path.is_dir():
        return [(p, p.relative_to(path).as_posix()) for p in sorted(path.rglob("*.md"))]
    return [(path, path.name)]


def read_all(path: Path) -> tuple[list[Part], list[str]]:
    """Every learning under `path`, and every broken file's message (path:line: why)."""
    parts: list[Part] = []
    broken = []
    for file, name in files_in(path):
        try:
            parts += parse(file, name)
        except BrokenFile as e:
            broken.append(str(e))
    return parts, broken


def import_parts(
    parts: Iterable[Part], workspace: Workspace, repository: Repository | None
) -> tuple[int, int]:
    """Create or update (by agentops id) a learning per part, all in one
    transaction; (created, updated)."""
    created = updated = 0
    with transaction.atomic():
        for part in parts:
            fields = learning_fields(part)
            same = already_here(part, workspace, repository)
            if same is None:
                Learning.objects.create(workspace=workspace, repository=repository, **fields)
                created += 1
            else:
                Learning.objects.filter(pk=same.pk).update(**fields)
                updated += 1
    return created, updated


def already_here(part: Part, workspace: Workspace, repository: Repository | None) -> Any:
    """The learning this part was imported as before, or exported from."""
    here = Learning.objects.filter(workspace=workspace, repository=repository)
    if exported := NATIVE_ID.fullmatch(part.key):
        return here.filter(pk=int(exported.group(1))).first()
    return here.filter(agentops__key=part.key).first()


def learning_fields(part: Part) -> dict[str, Any]:
    meta, inline = part.meta, part.inline
    category = inline.get("Category") or meta.get("category")
    tags = [str(t) for t in meta.get("tags", []) if isinstance(t, str)]
    if isinstance(category, str) and category and category not in tags:
        tags.append(category)
    return {
        "title": part.title,
        "body": part.body,
        "tags": tags,
        "status": Learning.Status.APPROVED,
        "maturity": MATURITY_IN.get(str(meta.get("maturity", "")), Learning.Maturity.CANDIDATE),
        "utility": number(meta.get("utility"), 0.5),
        "confirmed_at": when(meta) or timezone.now(),
        "agentops": {**part.layout, "key": part.key, "inline_fields": list(inline.items())},
        "sources": [{"kind": "agentops", "file": part.layout["file"], "at": now_iso()}],
    }


def number(value: Any, default: float) -> float:
    try:
        return min(1.0, max(0.0, float(value)))
    except (TypeError, ValueError):
        return default


def when(meta: dict[str, Any]) -> datetime | None:
    for key in ("last_reward_at", "date", "created_at", "created"):
        value = meta.get(key)
        if not isinstance(value, str):
            continue
        try:
            moment = parse_datetime(value)
            if moment is None and (day := parse_date(value[:10])):
                moment = datetime(day.year, day.month, day.day)
        except ValueError:
            continue
        if moment is not None:
            return moment if timezone.is_aware(moment) else timezone.make_aware(moment)
    return None


def now_iso() -> str:
    return timezone.now().isoformat()


# --- export -----------------------------------------------------------------------------------


def export_files(learnings: Iterable[Learning]) -> dict[str, str]:
    """{file name: text} for the learnings: imported ones back in their files,
    in their places; Corral's own each in a new file."""
    grouped: dict[str, list[Learning]] = {}
    for learning in learnings:
        name = learning.agentops.get("file") or native_name(learning)
        grouped.setdefault(name, []).append(learning)
    return {
        name: render_file(sorted(group, key=lambda x: x.agentops.get("part", 0)))
        for name, group in grouped.items()
    }


def native_name(learning: Learning) -> str:
    day = learning.created_at.date().isoformat()
    return f"{day}-{slugify(learning.title)[:60] or 'learning'}-corral-{learning.pk}.md"


def render_file(learnings: list[Learning]) -> str:
    first = learnings[0]
    head = front_matter(first)
    return head + SEPARATOR.join(render_part(learning) for learning in learnings)


def front_matter(learning: Learning) -> str:
    layout = learning.agentops
    if not layout:
        meta: dict[str, object] = {
            "id": f"corral-{learning.pk}",
            "type": "learning",
            "date": learning.created_at.date().isoformat(),
            "maturity": str(learning.maturity),
            "utility": f"{learning.utility:.4f}",
            "source": "corral",
        }
        return "---\n" + HANDLER.export(meta) + "---\n"
    if layout.get("part", 0) != 0 or not layout.get("front_matter"):
        return layout.get("front_matter", "")
    meta = dict(HANDLER.load(layout.get("yaml", "")) or {})
    changed = corral_changes(meta, learning)
    if not changed:
        return str(layout["front_matter"])
    meta.update(changed)
    return "---\n" + HANDLER.export(meta) + "---\n"


def corral_changes(meta: dict[str, object], learning: Learning) -> dict[str, str]:
    """The mapped keys whose value Corral has changed since the import."""
    changes = {}
    if abs(number(meta.get("utility"), 0.5) - learning.utility) > 1e-6:
        changes["utility"] = f"{learning.utility:.4f}"
    written = MATURITY_IN.get(str(meta.get("maturity", "")), Learning.Maturity.CANDIDATE)
    if written != learning.maturity:
        changes["maturity"] = str(learning.maturity)
    return changes


def render_part(learning: Learning) -> str:
    layout = learning.agentops
    if not layout:
        return f"\n# Learning: {learning.title}\n\n{learning.body.strip()}\n"
    if layout.get("heading") is None:
        return str(learning.body)
    return f"{layout['before']}{layout['heading']}{learning.title}{layout['inline']}{learning.body}"


def write(files: dict[str, str], output: Path) -> None:
    """Every file, or (on an error before the first write) none."""
    targets = [(output / name, text) for name, text in files.items()]
    for target, _ in targets:
        if output.resolve() not in target.resolve().parents:
            raise BrokenFile(target, 1, "a file name that leaves the output folder")
    for target, text in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
