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
utility, category (a tag), dates (confirmed_at: last_reward_at, else date,
else created_at), and when it last helped (the freshness clock: Corral's own
key `last_helped_at`, else last_reward_at when its last_reward was above 0)
and was last marked harmful (`last_hurt_at`, Corral's own). On export Corral
writes its two keys only when they differ from what the file says.
Imported learnings are candidates, as captured ones are, unless an admin
approves the import (`--approve`, audited): files from a repository are
text anyone with a commit wrote. Import reads only what lies
in the folder it is given: nothing is read through a symlink (files_in).
"""

import errno
import os
import re
import stat
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


def parse(path: Path, name: str, data: bytes) -> list[Part]:
    """The learnings in one file's bytes (BrokenFile names the line that is wrong)."""
    try:
        # Newlines as Path.read_text reads them, so a CRLF file imports as before.
        text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
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


# The folder's files may be anyone's (a repository's .agents/learnings): a
# link in it to CORRAL_HOME/secret_key would otherwise import the key. So the
# folder is walked from its own descriptor, every step opened without
# following a symlink: a name from a listing holds no "/" nor "..", and a
# link (to a file or a folder, whatever its name) is skipped, never read.
NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
MAX_DEPTH = 32  # folders within folders; deeper is skipped, not a RecursionError
SYMLINK = "a symlink (never followed)"


class Refused(Exception):
    """The path given cannot be imported at all; the message says why."""


@dataclass
class Found:
    """The *.md files read under a path (file, name it is exported under, its
    bytes), and each entry skipped ("path: skipped, why")."""

    files: list[tuple[Path, str, bytes]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def skip(self, path: Path, why: str) -> None:
        self.skipped.append(f"{path}: skipped, {why}")


def files_in(path: Path) -> Found:
    """The file given, or each *.md in the folder given and its folders, read
    without following a symlink anywhere; Refused if `path` itself is one."""
    if path.is_symlink():
        raise Refused(
            f"{path}: a symlink; give the file or folder itself (imports never follow one)"
        )
    try:
        fd = os.open(path, NOFOLLOW)
    except OSError as e:
        raise Refused(f"{path}: {e.strerror}") from None
    found = Found()
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            walk(fd, path, "", found, 0)
        elif why := unreadable(os.fstat(fd)):
            raise Refused(f"{path}: {why}")
        else:
            found.files.append((path, path.name, read_fd(fd)))
    finally:
        os.close(fd)
    return found


def walk(dir_fd: int, root: Path, prefix: str, found: Found, depth: int) -> None:
    """Every *.md under the folder open as `dir_fd` (at `root`/`prefix`), in name order."""
    with os.scandir(dir_fd) as listing:  # scandir works on a copy of the descriptor
        entries = sorted(listing, key=lambda e: e.name)
    for entry in entries:
        name = prefix + entry.name
        if entry.is_symlink():
            found.skip(root / name, SYMLINK)
        elif entry.is_dir(follow_symlinks=False):
            if depth >= MAX_DEPTH:
                found.skip(root / name, f"deeper than {MAX_DEPTH} folders")
            elif (sub := open_at(dir_fd, entry.name, root / name, found)) is not None:
                try:
                    walk(sub, root, name + "/", found, depth + 1)
                finally:
                    os.close(sub)
        elif entry.name.endswith(".md"):
            read_at(dir_fd, entry.name, root / name, name, found)


def open_at(dir_fd: int, name: str, path: Path, found: Found) -> int | None:
    """`name` in the folder, opened without following it if it became a symlink."""
    try:
        return os.open(name, NOFOLLOW, dir_fd=dir_fd)
    except OSError as e:
        found.skip(path, SYMLINK if e.errno == errno.ELOOP else e.strerror or str(e))
        return None


def read_at(dir_fd: int, name: str, path: Path, exported_as: str, found: Found) -> None:
    if (fd := open_at(dir_fd, name, path, found)) is None:
        return
    try:
        if why := unreadable(os.fstat(fd)):
            found.skip(path, why)
        else:
            found.files.append((path, exported_as, read_fd(fd)))
    finally:
        os.close(fd)


def unreadable(st: os.stat_result) -> str:
    """Why a file opened is not read ("" if it is): only a regular file is (a
    FIFO would block), and only one with no other name (a hard link may be a
    file outside the folder)."""
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_nlink > 1:
        return "a file with other hard links (it may be a file outside the folder)"
    return ""


def read_fd(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def read_all(path: Path) -> tuple[list[Part], list[str], list[str]]:
    """Every learning under `path`, every broken file's message (path:line: why),
    and every entry skipped (path: skipped, why); Refused if `path` is a symlink."""
    parts: list[Part] = []
    broken = []
    found = files_in(path)
    for file, name, data in found.files:
        try:
            parts += parse(file, name, data)
        except BrokenFile as e:
            broken.append(str(e))
    return parts, broken, found.skipped


def import_parts(
    parts: Iterable[Part],
    workspace: Workspace,
    repository: Repository | None,
    approve: bool = False,
) -> tuple[int, int, list[int]]:
    """Create or update (by agentops id) a learning per part, all in one
    transaction; (created, updated, their ids). New ones are candidates, or
    approved when an admin approves the import."""
    created = updated = 0
    ids = []
    with transaction.atomic():
        for part in parts:
            fields = learning_fields(part)
            same = already_here(part, workspace, repository)
            if same is None:
                status = Learning.Status.APPROVED if approve else Learning.Status.CANDIDATE
                made = Learning.objects.create(
                    workspace=workspace, repository=repository, status=status, **fields
                )
                ids.append(made.pk)
                created += 1
            else:
                Learning.objects.filter(pk=same.pk).update(**fields)
                review_again(same, fields, approve)
                ids.append(same.pk)
                updated += 1
    return created, updated, ids


def review_again(before: Learning, fields: dict[str, Any], approve: bool) -> None:
    """An import approved by an admin approves a candidate; one that is not,
    but changes what an approved learning says, makes it a candidate again
    (its new text is no one's approval). A retired learning stays retired."""
    if approve:
        before.approve()
    elif (before.title, before.body) != (fields["title"], fields["body"]):
        before.move("unapprove")


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
        "maturity": MATURITY_IN.get(str(meta.get("maturity", "")), Learning.Maturity.CANDIDATE),
        "utility": number(meta.get("utility"), 0.5),
        "confirmed_at": when(meta) or timezone.now(),
        "last_helped_at": helped_at(meta),
        "last_hurt_at": moment(meta.get("last_hurt_at")),
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
        if (found := moment(meta.get(key))) is not None:
            return found
    return None


def helped_at(meta: dict[str, Any]) -> datetime | None:
    """When the file says the learning last helped: Corral's key, else agentops'
    last reward if it was a reward (above 0; a 0 says it did not help)."""
    if "last_helped_at" in meta:
        return moment(meta["last_helped_at"])
    reward = meta.get("last_reward")
    if reward is not None and number(reward, 0.0) <= 0:
        return None
    return moment(meta.get("last_reward_at"))


def moment(value: Any) -> datetime | None:
    """A date or a date and time as written, aware; None if it is neither."""
    if not isinstance(value, str):
        return None
    try:
        found = parse_datetime(value)
        if found is None and (day := parse_date(value[:10])):
            found = datetime(day.year, day.month, day.day)
    except ValueError:
        return None
    if found is None:
        return None
    return found if timezone.is_aware(found) else timezone.make_aware(found)


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
            **evidence(learning),
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
    said = {"last_helped_at": helped_at(meta), "last_hurt_at": moment(meta.get("last_hurt_at"))}
    changes.update({k: v for k, v in evidence(learning).items() if moment(v) != said[k]})
    return changes


def evidence(learning: Learning) -> dict[str, str]:
    """Corral's keys for when it last helped and was last marked harmful, if ever."""
    keys = {"last_helped_at": learning.last_helped_at, "last_hurt_at": learning.last_hurt_at}
    return {key: at.isoformat() for key, at in keys.items() if at is not None}


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
