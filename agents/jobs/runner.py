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
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from django.conf import settings
from django.utils import timezone

from agents import presets, queues
from agents.jobs import heartbeat, limit_reader, resume, salvage, usage_reader
from agents.jobs.clone_files import (
    read_agent_file,
    read_learnings,
    read_text,
    write_agent_file,
)
from agents.models import ReviewComment, Session, StateError, WorkerBeat, review_pack_text, usage
from agents.moves import lifecycle, shutdown
from agents.reports import budgets
from knowledge import inject
from workspace import gitops, processes, sandbox, scrub
from workspace.secrets import SecretUnreadable

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
    # Beating before the session names this worker: reconcile() finds a
    # session whose worker stopped beating, and loses it.
    with heartbeat.Heartbeat(worker_name(), WorkerBeat.Kind.SESSION):
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


class RateLimited(Stop):
    """The agent's CLI hit a rate limit or quota: the session ends paused until its reset."""

    def __init__(self, limit: limit_reader.RateLimit) -> None:
        until = f"{timezone.localtime(limit.resets_at):%Y-%m-%d %H:%M %Z}"
        super().__init__(Session.Status.PAUSED, f"Rate limited until {until}: {limit.message}")
        self.resets_at = limit.resets_at


class WorkerStopping(Stop):
    """The worker was told to stop and the shutdown grace ran out: the work is
    salvaged and the bead goes back with no attempt counted."""

    def __init__(self) -> None:
        grace = settings.SHUTDOWN_GRACE_SECONDS
        super().__init__(
            Session.Status.LOST,
            f"Its worker {worker_name()} was stopped, and the agent did not finish "
            f"within the {grace} s shutdown grace.",
        )


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
        self.usage = usage_reader.UsageReader(
            model=usage_reader.model_from_argv(self.agent.command)
        )
        self.usage_changed = False
        self.limits = limit_reader.LimitReader(presets.rate_limits(self.agent.preset))
        self.rate_limit: limit_reader.RateLimit | None = None
        self.source = self.repository.canonical_path  # see prepare()
        self.token = ""
        self.resume = resume.Resume()
        self.conversation = resume.ConversationReader(self.agent.preset)

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
        self.log = LogWriter(
            self.session, self.proc.stdout, on_text=self.read_output, secrets=self.secrets()
        )
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
        if stop is None and (limit := self.rate_limit or self.limits.finish()):
            stop = RateLimited(limit)  # it said so as it exited: whatever it left is not done
        if isinstance(stop, OverBudget):
            self.keep(stop.status, stop.reason)
            lifecycle.stop_over_budget(self.session, stop.reason, stop.of_bead)
            return  # the clone stays for a person to look at, as at a time limit
        if isinstance(stop, RateLimited):
            return self.end(stop.status, stop.reason, resets_at=stop.resets_at)
        if isinstance(stop, WorkerStopping):
            self.keep(stop.status, stop.reason)
            shutdown.worker_stopped(self.session, stop.reason)
            return
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
        # The work of the bead's last session that stopped short, before the agent runs.
        self.resume = resume.start(self.session, self.workdir, self.source)
        self.index = self.session_index()
        budget = self.agent.context_budget_chars
        review = review_pack_text(ReviewComment.pending_for(self.session.bead_id))
        context = inject.render_context(
            self.session, budget, resume=self.resume.text, source=self.source, review=review
        )
        pack = self.workdir / ".agents"
        # The pack is Corral's: whatever a commit put there (a folder, a symlink
        # out of the clone, from before the paths gate refused them) goes first.
        remove(pack)
        (pack / "learnings").mkdir(parents=True)
        write_agent_file(self.workdir, (".agents", "context.md"), context)
        write_agent_file(
            self.workdir, (".agents", "bead.json"), json.dumps(self.bead_json(), indent=2)
        )
        if self.resume.patch:
            write_agent_file(self.workdir, (".agents", resume.PATCH_FILE), self.resume.patch)
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
        template = self.agent.command
        if self.resume.conversation:
            resumed = presets.resume_argv(self.agent.preset, template, self.resume.conversation)
            template = resumed or template
        argv = render_argv(template, context_path, self.workdir, self.bead.id)
        policy = sandbox.Policy(
            self.workdir,
            network=True,  # the CLI talks to its model's API, and to Corral's
            read_only=presets.home_programs(self.agent.preset),
            # The clone is `git clone --shared`: its history is the canonical objects.
            borrowed=(self.source.resolve() / "objects",),
            home_files=presets.home_files(self.agent.preset),
            # Killed with this runner: a runner that died can neither watch the
            # agent nor collect its work, and reconcile() loses its session.
            die_with_parent=True,
        )
        # In the sandbox, bwrap leading its own process group: one signal stops
        # everything it starts.
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
        try:
            agent_env = self.agent.env
        except SecretUnreadable as e:  # this worker's SECRET_KEY is not the one that sealed it
            raise OSError(str(e)) from None
        env.update({str(k): str(v) for k, v in agent_env.items()})
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
                if self.rate_limit is not None:
                    raise RateLimited(self.rate_limit)
                if (by := queues.wind_down_by()) is not None and now >= by:
                    raise WorkerStopping()
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

    def secrets(self) -> list[str]:
        """What the agent holds that its log must never show: its session token
        (good from anywhere while the session lives) and its agent's env secrets."""
        return [self.token, *scrub.env_secrets(self.agent.env)]

    def read_output(self, text: str) -> None:
        """The CLI's own usage records, as they stream by (budgets read them
        live), its rate limit messages (the watch then stops it), and the id of
        its conversation, for a later session to resume."""
        if self.usage.feed(text):
            self.save_usage()
        if self.rate_limit is None:
            self.rate_limit = self.limits.feed(text)
        if found := self.conversation.feed(text):
            Session.objects.filter(pk=self.session.pk).update(cli_session=found)

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
            if self.index.nested:
                self.session.append_log(left_out(self.index.nested))
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
            lifecycle.hand_in(self.session, patch, summary, read_learnings(self.workdir))
        except StateError as e:
            log.warning("session %s could not hand in: %s", self.session.pk, e)
            self.session.refresh_from_db(fields=["status", "error"])
            self.keep(self.session.status, self.session.error or str(e))  # ended elsewhere
            return
        # The patch and context are kept in the database; the clone is not needed.
        shutil.rmtree(self.workdir, ignore_errors=True)

    def end(self, status: str, reason: str, resets_at: datetime | None = None) -> None:
        """End badly, or paused by a rate limit until `resets_at`: the agent's
        work is salvaged first, so that the next session finds it once the
        bead goes back; the clone stays for a person to look at."""
        if self.proc is None:
            shutil.rmtree(self.workdir, ignore_errors=True)  # nothing ran: nothing to keep
        else:
            self.keep(status, reason)
        if status == Session.Status.PAUSED and resets_at is not None:
            lifecycle.pause(self.session, reason, resets_at)
        elif status in Session.ENDINGS:
            lifecycle.end(self.session, status, reason)

    def keep(self, status: str, reason: str) -> None:
        """Salvage what the agent did (agents/jobs/salvage.py): never the reason a session fails."""
        if status not in Session.ENDINGS and status != Session.Status.PAUSED:
            return
        try:
            salvage.keep(self.session, status, reason, self.workdir, self.source)
        except Exception:  # the ending must still be written
            log.exception("session %s: salvage failed", self.session.pk)


def remove(path: Path) -> None:
    """Remove a file, a symlink (never what it points at) or a folder."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


class LogWriter:
    """Reads the agent's output in a thread; writes it as LogChunks in small
    batches, up to the session's cap, saying where it was cut. Secrets are
    scrubbed before a chunk is written, a line at a time (one cut by a read
    or a batch's end is scrubbed whole)."""

    def __init__(
        self,
        session: Session,
        stream: IO[bytes],
        on_text: Callable[[str], None] = lambda text: None,
        secrets: Iterable[str] = (),
    ) -> None:
        self.session = session
        self.on_text = on_text  # sees all the output, also past the log's cap
        self.scrubber = scrub.Stream(secrets, lines=True)
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
        self.flush(last=True)

    def flush(self, last: bool = False) -> None:
        text = self.scrubber.feed("".join(self.buffer))
        if last:
            text += self.scrubber.finish()
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


def left_out(folders: list[str]) -> str:
    """The log's note of the folders the patch leaves out (gitops.SessionIndex)."""
    listed = ", ".join(folders[:10]) + (
        f" and {len(folders) - 10} more" if len(folders) > 10 else ""
    )
    return (
        f"\n[corral] Left out {listed}: a folder holding a .git of its own is another "
        "repository, which Corral does not read.\n"
    )
