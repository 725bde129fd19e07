"""The session job: clone, context pack, run, watch, collect.

One run of one agent on one bead, in a private clone, with a hard time
limit, a scope watchdog, change caps and a live log. The agent runs in its
own process group so that stopping it stops everything it started.
"""

import codecs
import json
import logging
import os
import queue
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from django.conf import settings
from django.utils import timezone

from agents import budgets, flow, presets, queues, usage
from agents.models import Session, StateError
from knowledge import inject
from workspace import gitops, processes, sandbox

log = logging.getLogger(__name__)

INSTRUCTION = (
    "Read .agents/context.md and do the work it describes. Change only paths within its "
    "scope. Before you finish, write a short handoff to .agents/handoff.md: what you did "
    "and what is left."
)
# What an agent's process inherits from ours; the rest (API keys…) comes from
# the agent's own env. Corral's secrets (database, Redis, SECRET_KEY) never do.
INHERITED_ENV = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "TERM"]
FLUSH_SECONDS = 0.3
FLUSH_CHARS = 16_000
# How often a running session looks at the day's budgets, which other sessions
# spend too (its own usage is checked as soon as it moves).
BUDGET_CHECK_SECONDS = 5.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_session(session_id: UUID | str) -> None:
    """Run one claimed session to its end. Safe to run twice: the second does nothing."""
    session = (
        Session.objects.select_related("agent", "bead__repository").filter(pk=session_id).first()
    )
    if session is None or session.status not in (Session.Status.CLAIMED, Session.Status.QUEUED):
        return
    if not session.start(worker=worker_name()):
        return
    try:
        Run(session).execute()
    finally:
        queues.enqueue_dispatch()  # a slot is free again


def render_argv(template: list[str], context_path: Path, workdir: Path, bead_id: str) -> list[str]:
    values = {
        "{prompt}": INSTRUCTION,
        "{context}": str(context_path),
        "{workdir}": str(workdir),
        "{bead}": bead_id,
        "{python}": sys.executable,
    }
    argv = []
    for arg in template:
        for key, value in values.items():
            arg = arg.replace(key, value)
        argv.append(arg)
    return argv


class Stop(Exception):
    """The watch ends the agent early: status and reason."""

    def __init__(self, status: str, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(reason)


class OverBudget(Stop):
    """A budget is spent; `of_bead`: the bead's own (it is then blocked)."""

    def __init__(self, reason: str, of_bead: bool) -> None:
        super().__init__(Session.Status.FAILED, reason)
        self.of_bead = of_bead


class Run:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.agent = session.agent
        self.bead = session.bead
        self.repository = session.bead.repository
        self.workdir = settings.SESSIONS_DIR / str(session.pk)
        self.limit_s = session.time_limit_s()
        self.proc: subprocess.Popen[bytes] | None = None
        self.index: gitops.SessionIndex | None = None
        self.usage = usage.UsageReader(model=usage.model_from_argv(self.agent.command))
        self.usage_changed = False
        self.source = self.repository.canonical_path  # see prepare()
        self.token = ""

    # The steps, in order.

    def execute(self) -> None:
        try:
            self.prepare()
            self.launch()
        except (gitops.GitError, OSError) as e:
            if self.index is not None:
                self.index.close()
            return self.end(Session.Status.FAILED, f"Could not start the session: {e}")
        # Launched: the process, its output pipe and the index are there.
        assert self.proc is not None and self.proc.stdout is not None and self.index is not None
        self.log = LogWriter(self.session, self.proc.stdout, on_text=self.read_usage)
        try:
            stop = self.watch()
        finally:
            self.log.close()
            if self.usage.finish():
                self.save_usage()
            processes.kill_group(self.proc.pid)  # whatever the agent left running
            self.index.close()
        self.session.exit_code = self.proc.returncode
        Session.objects.filter(pk=self.session.pk).update(exit_code=self.proc.returncode)
        if isinstance(stop, OverBudget):
            flow.stop_over_budget(self.session, stop.reason, stop.of_bead)
            return  # the clone stays for a person to look at, as at a time limit
        if stop is not None:
            return self.end(stop.status, stop.reason)
        if self.proc.returncode != 0:
            return self.end(
                Session.Status.FAILED, f"The agent exited with code {self.proc.returncode}."
            )
        self.collect()

    def prepare(self) -> None:
        self.workdir.parent.mkdir(parents=True, exist_ok=True)
        self.token = self.session.issue_token()
        self.source = self.source_repository()
        gitops.clone_for_session(self.source, self.workdir, self.session.base_sha)
        self.index = self.session_index()
        context = inject.render_context(self.session, self.agent.context_budget_chars)
        pack = self.workdir / ".agents"
        # The pack is Corral's: whatever a commit put there (a folder, a symlink
        # out of the clone, from before the paths gate refused them) goes first.
        remove(pack)
        (pack / "learnings").mkdir(parents=True)
        (pack / "context.md").write_text(context)
        (pack / "bead.json").write_text(json.dumps(self.bead_json(), indent=2))
        self.session.record_context(str(self.workdir), context)

    def source_repository(self) -> Path:
        """What the session is cloned from: the canonical repository when this
        worker sees it, else this worker's mirror of it, fetched over git over
        HTTP (a worker on another machine: nothing of the canonical folder)."""
        canonical = self.repository.canonical_path
        if gitops.can_read_repository(canonical):
            return canonical
        url = f"{settings.CORRAL_GIT_URL}/{self.repository.slug}.git"
        path = settings.MIRRORS_DIR / f"{self.repository.slug}.git"
        return gitops.mirror(url, path, self.token, self.session.base_sha)

    def session_index(self) -> gitops.SessionIndex:
        """Reads the clone without its .git (the agent's: its config could run programs)."""
        return gitops.SessionIndex(self.workdir, self.session.base_sha, objects_from=self.source)

    def bead_json(self) -> dict[str, Any]:
        bead = self.bead
        return {
            "id": bead.id,
            "repo": self.repository.slug,
            "title": bead.title,
            "description": bead.description,
            "acceptance_criteria": bead.acceptance_criteria,
            "scope": bead.scope,
            "labels": bead.labels,
            "priority": bead.priority,
            "session": str(self.session.pk),
            "base_sha": self.session.base_sha,
            "time_limit_s": self.limit_s,
        }

    def launch(self) -> None:
        if not self.agent.command:
            raise OSError(f"the agent {self.agent} has no command")
        context_path = self.workdir / ".agents" / "context.md"
        argv = render_argv(self.agent.command, context_path, self.workdir, self.bead.id)
        policy = sandbox.Policy(
            self.workdir,
            network=True,  # the CLI talks to its model's API, and to Corral's
            read_only=presets.home_programs(self.agent.preset),
            # The clone is `git clone --shared`: its history is the canonical objects.
            borrowed=(self.source.resolve() / "objects",),
            home_files=presets.home_files(self.agent.preset),
        )
        # In the sandbox, bwrap leading its own process group: one signal stops
        # everything it starts. Not killed with this worker: like any agent, it
        # is stopped by the runner, or by reconcile() once its lease runs out.
        try:
            self.proc = sandbox.spawn(
                argv,
                policy,
                env=self.environment(context_path),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        except sandbox.Unavailable as e:
            raise OSError(
                f"refused to run the agent without a sandbox ({e}): install bubblewrap, "
                "or set CORRAL_UNSANDBOXED=1 for a local single-user trial"
            ) from None
        self.started = time.monotonic()
        Session.objects.filter(pk=self.session.pk).update(pid=self.proc.pid)

    def environment(self, context_path: Path) -> dict[str, str]:
        env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
        if sandbox.available():
            env["TMPDIR"] = "/tmp"  # the sandbox's own; Corral's may be a hidden folder
        env.update({str(k): str(v) for k, v in self.agent.env.items()})
        env.update(
            CORRAL_URL=settings.CORRAL_URL,
            CORRAL_TOKEN=self.token,
            CORRAL_SESSION=str(self.session.pk),
            CORRAL_BEAD=self.bead.id,
            CORRAL_CONTEXT=str(context_path),
        )
        return env

    def watch(self) -> Stop | None:
        """Pump the log until the agent exits; return a Stop if it had to be stopped."""
        assert self.proc is not None  # launched
        next_look = next_beat = next_budget = time.monotonic()
        beat_every = settings.LEASE_SECONDS / 3
        while self.proc.poll() is None:
            self.log.pump(0.1)
            now = time.monotonic()
            try:
                if now - self.started >= self.limit_s:
                    raise Stop(
                        Session.Status.TIMED_OUT, f"Stopped at the time limit of {self.limit_s}s."
                    )
                if now >= next_look:
                    self.look()
                    next_look = now + settings.WATCH_INTERVAL_SECONDS
                if now >= next_beat:
                    self.beat()
                    next_beat = now + beat_every
                if now >= next_budget or self.usage_changed:
                    self.check_budgets()
                    next_budget = now + BUDGET_CHECK_SECONDS
            except Stop as stop:
                self.terminate()
                return stop
        # Children it left behind would hold the log pipe open.
        processes.kill_group(self.proc.pid)
        self.log.drain()
        return None

    def read_usage(self, text: str) -> None:
        """The CLI's own usage records, as they stream by (budgets read them live)."""
        if self.usage.feed(text):
            self.save_usage()

    def save_usage(self) -> None:
        for (channel, model), total in self.usage.totals.items():
            usage.TokenUsage.put(self.session.pk, channel, model, total)
        self.usage_changed = True

    def check_budgets(self) -> None:
        """Its own usage moved, or others' may have (a day's budget is shared)."""
        self.usage_changed = False
        spent = budgets.spent_for(self.bead.pk, self.repository.pk, self.agent.pk)
        if spent is not None:
            raise OverBudget(*spent)

    def look(self) -> None:
        """The watchdog: still wanted? What has the agent changed, against its scope and caps?"""
        if not Session.objects.filter(pk=self.session.pk, status__in=Session.LIVE).exists():
            self.session.refresh_from_db(fields=["status", "error"])
            raise Stop(self.session.status, self.session.error or "The session ended elsewhere.")
        assert self.index is not None  # prepared
        self.index.refresh()
        changes = self.index.numstat()
        files = sorted(changes)
        if files != self.session.changed_files:
            self.session.changed_files = files
            Session.objects.filter(pk=self.session.pk).update(changed_files=files)
        self.check_limits(changes)

    def check_limits(self, changes: dict[str, int]) -> None:
        if not self.bead.scope and self.repository.allow_unscoped:
            outside: list[str] = []
        else:
            outside = self.bead.paths_outside_scope(sorted(changes))
        if outside:
            listed = ", ".join(outside[:10])
            raise Stop(
                Session.Status.OUT_OF_SCOPE, f"Wrote outside its scope {self.bead.scope}: {listed}"
            )
        files, lines = len(changes), sum(changes.values())
        if files > self.agent.max_changed_files:
            raise Stop(
                Session.Status.FAILED,
                f"Changed {files} files, over the cap of {self.agent.max_changed_files}.",
            )
        if lines > self.agent.max_changed_lines:
            raise Stop(
                Session.Status.FAILED,
                f"Changed {lines} lines, over the cap of {self.agent.max_changed_lines}.",
            )

    def beat(self) -> None:
        until = timezone.now() + timedelta(seconds=settings.LEASE_SECONDS)
        if not self.session.extend_lease(until):
            self.session.refresh_from_db(fields=["status", "error"])
            raise Stop(self.session.status, self.session.error or "The session ended elsewhere.")

    def terminate(self) -> None:
        """SIGTERM to the whole group, SIGKILL after the grace period; the log
        keeps flowing while the agent winds down."""
        assert self.proc is not None  # launched
        processes.stop(self.proc, settings.KILL_GRACE_SECONDS, on_wait=self.log.pump)
        self.log.drain()

    def collect(self) -> None:
        """A clean exit: the final look, then the patch goes to the lead."""
        assert self.index is not None  # prepared (and closed) before the agent ran
        try:
            self.index = self.session_index()
            self.look()
            patch = self.index.patch()
        except Stop as stop:
            return self.end(stop.status, stop.reason)
        except gitops.GitError as e:
            return self.end(Session.Status.FAILED, f"Could not read the agent's changes: {e}")
        finally:
            self.index.close()
        if not patch.strip():
            return self.end(Session.Status.FAILED, "The agent changed nothing.")
        summary = read_text(read_agent_file(self.workdir, ".agents", "handoff.md"))
        try:
            flow.hand_in(self.session, patch, summary, read_learnings(self.workdir))
        except StateError as e:
            log.warning("session %s could not hand in: %s", self.session.pk, e)
            return
        # The patch and context are kept in the database; the clone is not needed.
        shutil.rmtree(self.workdir, ignore_errors=True)

    def end(self, status: str, reason: str) -> None:
        """End badly; the clone stays for a person to look at, the bead goes back."""
        if status in Session.ENDINGS:
            flow.end(self.session, status, reason)
        if self.proc is None:
            shutil.rmtree(self.workdir, ignore_errors=True)  # nothing ran: nothing to keep


def remove(path: Path) -> None:
    """Remove a file, a symlink (never what it points at) or a folder."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def read_learnings(workdir: Path) -> list[dict[str, Any]]:
    """The agent's .agents/learnings/*.md: `# Title`, then the body."""
    learnings = []
    for name in sorted(list_agent_folder(workdir, ".agents", "learnings")):
        if not name.endswith(".md"):
            continue
        text = read_text(read_agent_file(workdir, ".agents", "learnings", name)).strip()
        if not text:
            continue
        first, _, rest = text.partition("\n")
        title = first.lstrip("# ").strip()[:200] or name.removesuffix(".md")
        learnings.append({"title": title, "body": rest.strip() or first})
    return learnings


def read_text(data: bytes) -> str:
    """A file the agent left (a handoff, a learning), without control characters:
    it may hold anything, and a NUL cannot even be stored (PostgreSQL)."""
    return gitops.without_controls(data.decode(errors="replace"))


# The agent's files are read by Corral, outside the sandbox: every step is
# opened without following a symlink, so a handoff linked to a host file (the
# secret key, another clone) reads as nothing, and only regular files are read
# (a FIFO would hang the runner).
NOFOLLOW = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_within(workdir: Path, parts: tuple[str, ...], flags: int) -> int:
    fd = os.open(workdir, NOFOLLOW | os.O_DIRECTORY)
    try:
        for n, part in enumerate(parts):
            last = n == len(parts) - 1
            step = flags if last else NOFOLLOW | os.O_DIRECTORY
            next_fd = os.open(part, step, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except OSError:
        os.close(fd)
        raise
    return fd


def read_agent_file(workdir: Path, *parts: str, limit: int = 100_000) -> bytes:
    """Up to `limit` bytes of a regular file inside the clone; b"" for anything else."""
    try:
        fd = open_within(workdir, parts, NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, limit)
    finally:
        os.close(fd)


def list_agent_folder(workdir: Path, *parts: str) -> list[str]:
    """The names in a folder inside the clone, reached without following symlinks."""
    try:
        fd = open_within(workdir, parts, NOFOLLOW | os.O_DIRECTORY)
    except OSError:
        return []
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


class LogWriter:
    """Reads the agent's output in a thread; writes it as LogChunks in small
    batches, up to the session's cap, saying where it was cut."""

    def __init__(
        self,
        session: Session,
        stream: IO[bytes],
        on_text: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.session = session
        self.on_text = on_text  # sees all the output, also past the log's cap
        self.chunks: queue.Queue[bytes | None] = queue.Queue()
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.buffer: list[str] = []
        self.written, self.cut = 0, False
        self.last_flush = time.monotonic()
        self.reader = threading.Thread(target=self.read, args=(stream,), daemon=True)
        self.reader.start()

    def read(self, stream: IO[bytes]) -> None:
        for data in iter(lambda: os.read(stream.fileno(), 65536), b""):
            self.chunks.put(data)
        self.chunks.put(None)

    def pump(self, timeout: float) -> None:
        try:
            data = self.chunks.get(timeout=timeout)
            while data is not None:
                text = self.decoder.decode(data)
                self.buffer.append(text)
                self.on_text(text)
                data = self.chunks.get_nowait()
        except queue.Empty:
            pass
        pending = sum(map(len, self.buffer))
        if pending >= FLUSH_CHARS or (
            pending and time.monotonic() - self.last_flush >= FLUSH_SECONDS
        ):
            self.flush()

    def drain(self) -> None:
        self.reader.join(timeout=5)
        self.pump(0)
        self.buffer.append(self.decoder.decode(b"", final=True))
        self.flush()

    def flush(self) -> None:
        text = "".join(self.buffer)
        self.buffer, self.last_flush = [], time.monotonic()
        if not text or self.cut:
            return
        room = settings.SESSION_LOG_CAP_CHARS - self.written
        if len(text) > room:
            text = text[:room] + f"\n[log cut: over {settings.SESSION_LOG_CAP_CHARS} characters]\n"
            self.cut = True
        self.session.append_log(text)
        self.written += len(text)

    def close(self) -> None:
        if self.reader.is_alive():
            self.reader.join(timeout=5)
