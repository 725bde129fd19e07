"""The sandbox around agents' code: real bubblewrap, real check commands and agents.

Corral's home here is a folder outside /tmp and readable by anyone (as a
careless install might leave it), so that only the sandbox's own hiding keeps
what is in it from the code under test, not the sandbox's private /tmp or
file modes.
"""

import ast
import os
import shlex
import shutil
import signal
import socket
import stat
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.urls import reverse

from agents.jobs.runner import run_session
from agents.models import Agent, GateResult, LogChunk, Submission
from agents.moves import lifecycle
from beads.models import Bead
from tests.factories import PROGRAMS, git, land, program_agent, run_lead
from tests.procs import Running, wait_until
from workspace import sandbox

pytestmark = pytest.mark.django_db(transaction=True)
OPEN = stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH  # 0755


@pytest.fixture(autouse=True)
def exposed_home(settings):
    """CORRAL_HOME, its repositories and sessions in a world-readable folder
    outside /tmp, with a secret key file holding SECRET_KEY."""
    home = Path(tempfile.mkdtemp(prefix="corral-sandbox-test-", dir="/var/tmp"))
    home.chmod(OPEN)
    (home / "secret_key").write_text(settings.SECRET_KEY)
    (home / "secret_key").chmod(0o644)
    settings.CORRAL_HOME = home
    settings.REPOS_DIR = home / "repos"
    settings.SESSIONS_DIR = home / "sessions"
    settings.KILL_GRACE_SECONDS = 1
    settings.WATCH_INTERVAL_SECONDS = 0.2
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def without_bwrap(settings, tmp_path):
    """bwrap cannot start: CORRAL_BWRAP names a program that is not there."""
    settings.BWRAP = str(tmp_path / "no-such-bwrap")
    assert not sandbox.available()
    return settings.BWRAP


def secrets_of_corral():
    """What must never show in a gate's output: the secret key, Redis's URL, the database."""
    secrets = {"SECRET_KEY": settings.SECRET_KEY, "REDIS_URL": settings.REDIS_URL}
    if connection.vendor == "sqlite":
        secrets["database"] = connection.settings_dict["NAME"]
    elif os.environ.get("DATABASE_URL"):
        secrets["DATABASE_URL"] = os.environ["DATABASE_URL"]
    return secrets


def check_result(sub):
    sub.refresh_from_db()
    return GateResult.objects.get(submission=sub, gate="check")


def checked(repo, agent, command, files):
    """Land `files` with `command` as the repository's check; the check's GateResult."""
    repo.check_command = command
    repo.save()
    _, sub = land(repo, agent, files)
    run_lead(repo)
    return sub, check_result(sub)


def attack(repo, agent):
    """The hostile check: tries Corral's secret key, environment, database and canonical repo."""
    first = git(repo.canonical_path, "rev-list", "--max-parents=0", repo.branch)
    args = [
        settings.CORRAL_HOME / "secret_key",
        connection.settings_dict["NAME"],
        repo.canonical_path,
        first,
    ]
    command = shlex.join(["python3", "attack.py", *map(str, args)])
    script = (PROGRAMS / "check_attack.py").read_text()
    return checked(repo, agent, command, {"attack.py": script})


def canonical_state(repo):
    """The branch and the files of the canonical repository, but its objects
    and the lead's own quarantine of objects not landed (gitops.quarantine)."""
    path = repo.canonical_path
    ours = {"objects", "corral-quarantine"}
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if not ours & set(p.parts))
    return git(path, "rev-parse", repo.branch), files


# The check gate


def test_a_hostile_check_reaches_none_of_corrals_secrets_nor_its_repository(repo, agent, rq_redis):
    before = canonical_state(repo)
    sub, result = attack(repo, agent)
    detail = result.detail
    assert "ATTACK DONE" in detail, detail  # it ran to the end
    assert result.passed is False and sub.status == "rejected"
    assert "secret key: denied" in detail
    assert "parent environ: GOT" in detail  # its parent is the sandbox's own: no secrets there
    assert "database: denied" in detail and "canonical: denied" in detail
    assert "write canonical: denied" in detail and "write refs: denied" in detail
    assert "update-ref: exit 0" not in detail
    assert canonical_state(repo) == before  # the branch never moved, nothing was written
    sub.bead.refresh_from_db()
    for name, secret in secrets_of_corral().items():
        for text in (detail, sub.bead.last_failure, sub.reason):
            assert secret not in text, f"{name} leaked"
    assert settings.SECRET_KEY[:12] not in detail
    # Nor their names: a leak the output's redaction caught would still be a leak.
    for name in ("SECRET_KEY=", "REDIS_URL=", "DATABASE_URL=", "CORRAL_HOME=", "secret key: GOT"):
        assert name not in detail, name


def test_a_check_sees_only_its_own_processes(repo, agent, rq_redis):
    script = (
        "import os\n"
        "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "print('pids', pids)\n"
        "print('uid', os.getuid())\n"
    )
    _, result = checked(repo, agent, "python3 ps.py", {"ps.py": script})
    assert result.passed, result.detail
    pids = ast.literal_eval(result.detail.split("pids ", 1)[1].splitlines()[0])
    assert pids[0] == 1 and len(pids) <= 6, pids  # bwrap's init, the shell, setsid'd python
    assert f"uid {os.geteuid() or settings.SANDBOX_UID}" in result.detail  # not root


def test_corral_code_is_readable_and_its_default_home_hidden(repo, agent, rq_redis):
    marker = settings.BASE_DIR / ".corral" / f"sandbox-test-{uuid.uuid4().hex}"
    marker.parent.mkdir(exist_ok=True)
    marker.write_text("corral's own\n")
    marker.chmod(0o644)
    try:
        script = (
            "import sys\n"
            "print(open(sys.argv[1]).readline().strip())\n"
            "try:\n    print(open(sys.argv[2]).read())\n"
            "except OSError as e:\n    print('hidden', type(e).__name__)\n"
        )
        readme = settings.BASE_DIR / "README.md"
        command = shlex.join(["python3", "read.py", str(readme), str(marker)])
        _, result = checked(repo, agent, command, {"read.py": script})
    finally:
        marker.unlink()
    assert result.passed, result.detail
    assert "# Corral" in result.detail
    assert "hidden FileNotFoundError" in result.detail and "corral's own" not in result.detail


CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5).close()\n"
    "    print('connected')\n"
    "except OSError as e:\n"
    "    print('no connection:', type(e).__name__)\n"
)


@pytest.mark.parametrize("network", [False, True])
def test_a_check_reaches_the_network_only_when_the_repository_allows_it(
    repo, agent, rq_redis, network
):
    repo.check_network = network
    repo.save()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        _, result = checked(repo, agent, f"python3 connect.py {port}", {"connect.py": CONNECT})
    assert result.passed, result.detail
    assert ("connected" in result.detail) is network, result.detail
    assert ("no connection: ConnectionRefusedError" in result.detail) is not network


def test_a_repositorys_read_paths_are_readable_in_the_check(repo, agent, rq_redis, monkeypatch):
    home = Path(tempfile.mkdtemp(prefix="corral-home-", dir="/var/tmp"))
    monkeypatch.setenv("HOME", str(home))  # hidden in the sandbox, as Corral's user's home
    toolchain = home / ".toolchain"
    try:
        home.chmod(OPEN)
        toolchain.mkdir(mode=OPEN)
        (toolchain / "version").write_text("toolchain 1.2\n")
        (toolchain / "version").chmod(0o644)
        script = "import sys\nprint(open(sys.argv[1]).read())\n"
        command = f"python3 read.py {toolchain / 'version'}"
        _, hidden = checked(repo, agent, command, {"read.py": script})
        repo.check_read_paths = [str(toolchain)]
        repo.save()
        _, shown = checked(repo, agent, command, {"read2.py": "", "read.py": script})
    finally:
        shutil.rmtree(home)
    assert hidden.passed is False and "toolchain 1.2" not in hidden.detail
    assert shown.passed and "toolchain 1.2" in shown.detail, shown.detail


def test_a_fork_bomb_in_a_check_is_stopped(repo, agent, rq_redis, settings):
    settings.SANDBOX_PROCS = 64
    script = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(10000):\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "    print('forked', n)\n"
        "except OSError as e:\n"
        "    print('fork stopped after', n, e.strerror)\n"
    )
    _, result = checked(repo, agent, "python3 bomb.py", {"bomb.py": script})
    assert "fork stopped after" in result.detail, result.detail
    forked = int(result.detail.split("fork stopped after ", 1)[1].split()[0])
    assert forked < 64


def test_a_huge_file_and_a_huge_allocation_in_a_check_are_stopped(repo, agent, rq_redis, settings):
    settings.SANDBOX_FILE_MB = 1
    settings.SANDBOX_MEMORY_MB = 256
    script = (
        "try:\n"
        "    with open('big.bin', 'wb') as f:\n"
        "        f.write(b'x' * 5_000_000)\n"
        "    print('wrote 5 MB')\n"
        "except OSError as e:\n"
        "    print('write stopped:', e.strerror)\n"
        "try:\n"
        "    block = bytearray(1024 * 1024 * 1024)\n"
        "    print('allocated 1 GB')\n"
        "except MemoryError:\n"
        "    print('allocation stopped')\n"
    )
    _, result = checked(repo, agent, "python3 big.py", {"big.py": script})
    assert result.passed, result.detail
    assert "write stopped: File too large" in result.detail
    assert "allocation stopped" in result.detail


def test_a_check_stopped_at_its_timeout_leaves_nothing_running(repo, agent, rq_redis):
    marker = f"corral-timeout-{uuid.uuid4().hex}"
    repo.check_timeout_s = 1
    repo.save()
    command = f'python3 -c "import time; time.sleep(60)" {marker}'
    _, result = checked(repo, agent, command, {"a.txt": "1\n"})
    assert "Timed out after 1s" in result.detail
    wait_until(lambda: not running_with(marker), timeout=10, what="the check to be gone")


@pytest.mark.slow
def test_a_lead_worker_killed_mid_check_leaves_no_check_running(
    repo, agent, rq_redis, subprocess_env, exposed_home
):
    marker = f"corral-orphan-{uuid.uuid4().hex}"
    repo.check_command = f'python3 -c "import time; time.sleep(120)" {marker}'
    repo.save()
    land(repo, agent, {"a.txt": "1\n"})
    env = dict(subprocess_env, CORRAL_HOME=str(exposed_home))  # where this test's repos are
    worker = Running(["manage.py", "leadworker", repo.slug], env)
    try:
        wait_until(lambda: running_with(marker), timeout=60, what="the check to start")
        assert len(running_with(marker)) >= 2  # bwrap and the check itself
        os.kill(worker.proc.pid, signal.SIGKILL)
        worker.wait(10)
        wait_until(lambda: not running_with(marker), timeout=10, what="the check to die")
    finally:
        worker.kill_group()
        for pid in running_with(marker):
            os.kill(pid, signal.SIGKILL)
    assert Submission.objects.get().status == "checking"  # reconcile's to requeue


def running_with(marker):
    """Live processes on this machine whose command line holds marker."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes() and not zombie(cmdline.parent):
                found.append(int(cmdline.parent.name))
        except (OSError, ValueError):
            continue
    return found


def zombie(proc_dir):
    return (proc_dir / "stat").read_text().rpartition(")")[2].split()[0] == "Z"


# Sessions


def test_an_agent_reaches_neither_corrals_home_nor_other_sessions(repo, rq_redis):
    other = settings.SESSIONS_DIR / str(uuid.uuid4())
    other.mkdir(parents=True)
    other.chmod(OPEN)
    (other / "notes.txt").write_text("another session's work\n")
    secret_key = settings.CORRAL_HOME / "secret_key"
    agent = program_agent(
        "snooper",
        str(secret_key),
        str(settings.CORRAL_HOME),
        str(settings.SESSIONS_DIR),
        str(other / "notes.txt"),
        str(repo.canonical_path / "refs" / "heads" / repo.branch),
        connection.settings_dict["NAME"],
    )
    bead = Bead.objects.create(repository=repo, title="Snoop", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    run_session(session.pk)
    session.refresh_from_db()
    log = "".join(LogChunk.objects.filter(session=session).values_list("text", flat=True))
    assert "SNOOPED" in log, log + session.error
    assert session.status == "failed" and not Submission.objects.exists()
    assert "read #0: denied" in log  # the secret key
    assert "list #1: GOT ['repos', 'sessions']" in log  # CORRAL_HOME: mount points only
    assert f"list #2: GOT {[str(session.pk)]!r}" in log  # the sessions: its own only
    assert "read #3: denied" in log and "another session's work" not in log
    assert "read #4: denied" in log  # the canonical branch's ref
    assert "read #5: denied" in log  # the database
    for name, secret in secrets_of_corral().items():
        assert secret not in log, f"{name} leaked"


def test_an_agents_git_works_in_its_clone(repo, rq_redis):
    script = (
        "import subprocess\n"
        "print(subprocess.run(['git', 'log', '--oneline'], capture_output=True, text=True)"
        ".stdout)\n"
        "open('src/new.py', 'w').write('x = 1\\n')\n"
    )
    script_path = Path(tempfile.mkdtemp(prefix="corral-agent-", dir="/var/tmp")) / "gitlog.py"
    try:
        script_path.parent.chmod(OPEN)
        script_path.write_text(script)
        agent = program_agent("editor")  # any name: its command is set next
        agent.command = [sys.executable, str(script_path)]
        agent.save()
        bead = Bead.objects.create(repository=repo, title="Log", scope=["src/**"])
        session = lifecycle.claim(agent, bead=bead)
        session.queue()
        run_session(session.pk)
    finally:
        shutil.rmtree(script_path.parent)
    session.refresh_from_db()
    log = "".join(LogChunk.objects.filter(session=session).values_list("text", flat=True))
    assert session.status == "submitted", log + session.error
    assert "commit 2" in log and "commit 1" in log  # the history, borrowed read-only


def test_a_presets_cli_files_in_the_home_are_bound_and_nothing_else_is(
    repo, rq_redis, monkeypatch, tmp_path
):
    home = Path(tempfile.mkdtemp(prefix="corral-home-", dir="/var/tmp"))
    try:
        (home / ".codex").mkdir()
        # Not shaped like a secret: the log would show a token as [redacted].
        (home / ".codex" / "auth.json").write_text('{"account": "codex-login"}\n')
        (home / ".ssh").mkdir()
        (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY\n")
        monkeypatch.setenv("HOME", str(home))
        script = (
            "import os, pathlib\n"
            "home = pathlib.Path(os.environ['HOME'])\n"
            "print('home has', sorted(os.listdir(home)))\n"
            "print('auth', (home / '.codex' / 'auth.json').read_text().strip())\n"
            "(home / '.codex' / 'history.jsonl').write_text('seen\\n')\n"
        )
        agent = program_agent("editor")
        agent.preset = "codex"
        agent.command = [sys.executable, "-c", script]
        agent.save()
        bead = Bead.objects.create(repository=repo, title="Codex", scope=["src/**"])
        session = lifecycle.claim(agent, bead=bead)
        session.queue()
        run_session(session.pk)
        session.refresh_from_db()
        log = "".join(LogChunk.objects.filter(session=session).values_list("text", flat=True))
        assert "home has ['.codex']" in log, log + session.error
        assert 'auth {"account": "codex-login"}' in log
        assert (home / ".codex" / "history.jsonl").read_text() == "seen\n"  # read-write
        assert "PRIVATE KEY" not in log
    finally:
        shutil.rmtree(home)


CLAUDE = """#!/bin/sh
echo "claude ran: $1"
cat "$HOME/.claude.json"
echo '{"seen": true}' > "$HOME/.claude/state.json"
mkdir -p src && echo "x = 1" > src/claude.py
"""


def test_claude_codes_native_install_and_login_in_the_home_work(repo, rq_redis, monkeypatch):
    home = Path(tempfile.mkdtemp(prefix="corral-home-", dir="/var/tmp"))
    try:
        versions = home / ".local" / "share" / "claude" / "versions"
        versions.mkdir(parents=True)
        (versions / "9.9.9").write_text(CLAUDE)
        (versions / "9.9.9").chmod(0o755)
        (home / ".local" / "bin").mkdir()
        (home / ".local" / "bin" / "claude").symlink_to(versions / "9.9.9")
        (home / ".claude").mkdir()
        (home / ".claude.json").write_text('{"account": "logged in"}\n')
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("PATH", f"{home / '.local' / 'bin'}:{os.environ['PATH']}")
        agent = Agent.objects.create(name="claude", preset="claude-code")
        bead = Bead.objects.create(repository=repo, title="Claude", scope=["src/**"])
        session = lifecycle.claim(agent, bead=bead)
        session.queue()
        run_session(session.pk)
        session.refresh_from_db()
        log = "".join(LogChunk.objects.filter(session=session).values_list("text", flat=True))
        assert session.status == "submitted", log + session.error
        assert "claude ran: -p" in log and '{"account": "logged in"}' in log
        assert (home / ".claude" / "state.json").read_text() == '{"seen": true}\n'
    finally:
        shutil.rmtree(home)


# Where bwrap cannot start


def test_without_bwrap_checks_and_sessions_are_refused_and_pages_say_so(
    repo, agent, rq_redis, without_bwrap, logged_in, settings
):
    settings.UNSANDBOXED = False
    sub, result = attack(repo, agent)
    assert result.passed is False and sub.status == "failed"
    assert "Refused to run the check outside a sandbox" in result.detail
    assert without_bwrap in result.detail and "ATTACK DONE" not in result.detail
    session_agent = program_agent("editor", "src/feature.py=FEATURE = 1")
    bead = Bead.objects.create(repository=repo, title="Edit", scope=["src/**"])
    session = lifecycle.claim(session_agent, bead=bead)
    session.queue()
    run_session(session.pk)
    session.refresh_from_db()
    assert session.status == "failed" and "without a sandbox" in session.error
    assert not LogChunk.objects.filter(session=session).exists()  # the agent never ran
    page = logged_in.get(reverse("overview")).content.decode()
    assert 'id="sandbox-banner"' in page and "Checks and agent sessions are refused" in page


def test_the_unsandboxed_trial_runs_with_a_warning_on_every_page(
    repo, agent, rq_redis, without_bwrap, logged_in, settings
):
    settings.UNSANDBOXED = True
    session_agent = program_agent("editor", "src/feature.py=FEATURE = 1")
    bead = Bead.objects.create(repository=repo, title="Edit", scope=["src/**"])
    session = lifecycle.claim(session_agent, bead=bead)
    session.queue()
    run_session(session.pk)
    session.refresh_from_db()
    assert session.status == "submitted", session.error
    # What the sandbox keeps from a check: here the same script reads the key file
    # (what shows of it is up to the output's redaction, not the sandbox), and
    # writes into the canonical repository (so this comes last).
    _, result = attack(repo, agent)
    assert "Ran outside the sandbox (CORRAL_UNSANDBOXED=1)" in result.detail
    assert "ATTACK DONE" in result.detail and "secret key: GOT" in result.detail
    assert "write refs: GOT 'written'" in result.detail
    for url in (reverse("overview"), reverse("hook"), reverse("login")):
        page = logged_in.get(url).content.decode()
        assert 'id="sandbox-banner"' in page and "Unsandboxed:" in page, url


def test_with_bwrap_no_banner(logged_in):
    assert sandbox.available()
    assert 'id="sandbox-banner"' not in logged_in.get(reverse("overview")).content.decode()


# The mount plan


def test_corrals_folders_are_hidden_after_its_code_is_exposed_and_the_clone_last(settings):
    settings.CORRAL_HOME = settings.BASE_DIR / ".corral"
    clone = settings.SESSIONS_DIR / "abc"
    clone.mkdir(parents=True)
    policy = sandbox.Policy(clone, network=True)
    argv = sandbox.command(["true"], policy, sandbox.identity(own_user=False))
    mounts = [(argv[i], argv[i + 1]) for i, a in enumerate(argv) if a in ("--tmpfs", "--ro-bind")]
    order = [target for _, target in mounts]
    db_folder = str(Path(connection.settings_dict["NAME"]).parent)
    for hidden in (str(settings.CORRAL_HOME), str(settings.SESSIONS_DIR), "/tmp", "/run"):
        assert ("--tmpfs", hidden) in mounts, hidden
    if connection.vendor == "sqlite":
        assert ("--tmpfs", db_folder) in mounts
    code = order.index(str(settings.BASE_DIR))
    assert order.index(str(settings.CORRAL_HOME)) > code  # inside BASE_DIR, hidden after it
    assert argv.index("--bind") > max(argv.index(a) for a in argv if a == "--tmpfs")
    assert "--unshare-net" not in argv and "--unshare-pid" in argv
    assert "--die-with-parent" not in argv  # a session outlives a killed worker, as before
    check = sandbox.command(
        ["true"], sandbox.Policy(clone, die_with_parent=True), sandbox.identity(True)
    )
    assert "--unshare-net" in check and "--die-with-parent" in check
