"""The sandbox: bubblewrap (bwrap) around everything an agent wrote.

Two things run code that agents wrote: the check gate (a repository's check
command on a submitted patch) and sessions (an agent CLI in its clone). Both
start it through spawn(), which runs it under bubblewrap:

- the whole filesystem read-only, with what holds Corral's secrets hidden
  under empty tmpfs: CORRAL_HOME (database, secret key, canonical
  repositories, every session's clone), the folders of a SQLite database and
  of a Redis socket, the Corral user's home (and /root), /run (the sockets of
  local servers) and /tmp; Corral's code and Python stay readable;
- one folder read-write: the check's scratch checkout, or the session's clone;
- a private PID namespace with a fresh /proc (no other process's environment
  to read), fresh /dev, its own IPC and host name, no network unless allowed;
- no capabilities, as an unprivileged user (see identity()), with resource
  limits on each process (CPU seconds, data memory, file size, processes);
- only the environment it is given.

Where bwrap cannot start, spawn() refuses (Unavailable) unless the operator
allowed unsandboxed runs for a local single-user trial (CORRAL_UNSANDBOXED=1).
"""

import functools
import glob
import os
import pwd
import resource
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings

from workspace import processes

MB = 1024 * 1024
PROBE_TIMEOUT_S = 15.0
# Root-owned secrets outside the hidden folders: code running as root's uid
# (mapped to an unprivileged one, see identity()) could still read them.
ROOT_SECRETS = ("/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-")
ROOT_SECRET_GLOBS = ("/etc/ssh/ssh_host_*key",)

# The first program in the sandbox: it runs the command in a session of its
# own (no terminal to inject into, a group to signal) and passes SIGTERM and
# SIGHUP on to that group, so that a group stop reaches the command while bwrap,
# the group's leader outside, lives on until the command has wound down. `env
# --default-signal` undoes the SIGTERM that bwrap ignores (see _child_setup):
# a shell cannot trap a signal it was started ignoring.
INIT = r"""
forward() { kill -"$1" -- -"$child" 2>/dev/null || kill -"$1" "$child" 2>/dev/null; }
trap 'forward TERM' TERM
trap 'forward HUP' HUP
setsid "$@" &
child=$!
while :; do
  wait "$child"; code=$?
  kill -0 "$child" 2>/dev/null || exit "$code"
done
"""
INIT_ARGV = ["/usr/bin/env", "--default-signal=TERM", "/bin/sh", "-c", INIT, "corral-sandbox"]


class Unavailable(Exception):
    """bwrap cannot start here and unsandboxed runs are not allowed; says why."""


@dataclass(frozen=True)
class Policy:
    """What one sandboxed run may reach beyond Corral's code and the read-only system."""

    writable: Path  # the one folder it writes, and its working folder
    network: bool = False
    # Extra paths to read (a repository's check_read_paths); Corral's folders stay hidden.
    read_only: tuple[Path, ...] = ()
    # Read-only inside Corral's hidden folders: the object store a clone borrows.
    borrowed: tuple[Path, ...] = ()
    # Read-write in the Corral user's home: an agent CLI's own config and credentials.
    home_files: tuple[Path, ...] = ()
    # When Corral runs as root: run as SANDBOX_UID for real, the writable folder
    # handed to it (a check's throwaway checkout), rather than as root's uid
    # mapped to SANDBOX_UID in a user namespace (a session: see identity()).
    own_user: bool = False
    # Killed (SIGKILL) with whatever started it, should that die unable to stop it.
    die_with_parent: bool = False


@dataclass(frozen=True)
class Identity:
    """Who the sandboxed code is: uid and gid inside; `switch` when Corral must
    become that user before starting bwrap (then it is that user outside too)."""

    uid: int
    gid: int
    switch: bool


def identity(own_user: bool) -> Identity:
    """Corral as an ordinary user: that user, without capabilities. Corral as
    root: SANDBOX_UID, either for real (own_user: the process cap then holds and
    root's files are out of reach) or as root's uid mapped to it, which keeps
    the clone and the CLI's credentials, owned by root, usable."""
    if os.geteuid() != 0:
        return Identity(os.geteuid(), os.getegid(), switch=False)
    return Identity(settings.SANDBOX_UID, settings.SANDBOX_GID, switch=own_user)


# Detection


def problem() -> str | None:
    """Why bwrap cannot start here, or None. Tried once per configuration, then cached."""
    modes = (False, True) if os.geteuid() == 0 else (False,)
    for own_user in modes:
        ident = identity(own_user)
        why = _probe(str(settings.BWRAP), ident.uid, ident.gid, ident.switch)
        if why is not None:
            return why
    return None


def available() -> bool:
    return problem() is None


@functools.lru_cache(maxsize=16)
def _probe(bwrap: str, uid: int, gid: int, switch: bool) -> str | None:
    ident = Identity(uid, gid, switch)
    argv = [bwrap, *namespaces(ident, network=False), "--ro-bind", "/", "/"]
    argv += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--", "/bin/true"]
    try:
        done = subprocess.run(
            argv,
            env={"PATH": "/usr/bin:/bin"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            preexec_fn=_child_setup([], ident, die_with_parent=True),
        )
    except OSError as e:
        return f"cannot start {bwrap}: {e.strerror}"
    except subprocess.TimeoutExpired:
        return f"{bwrap} did not finish a trial run in {PROBE_TIMEOUT_S:.0f}s"
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        return f"{bwrap} failed a trial run: {lines[-1] if lines else done.returncode}"
    return None


# Running


def spawn(
    argv: Sequence[str],
    policy: Policy,
    *,
    env: dict[str, str],
    stdin: processes.Redirect = None,
    stdout: processes.Redirect = None,
    stderr: processes.Redirect = None,
) -> subprocess.Popen[bytes]:
    """Start argv in the sandbox, in policy.writable, with exactly `env`.

    bwrap leads the process group (processes.spawn), so stop() and kill_group()
    work as for any child: a SIGTERM to the group reaches the command (see
    INIT); a SIGKILL to it ends bwrap's init in the PID namespace, and with it
    everything in the namespace, whatever group it made. Raises Unavailable when
    bwrap cannot start and unsandboxed runs are not allowed; OSError when the
    program cannot be started at all.
    """
    why = problem()
    if why is not None:
        if not settings.UNSANDBOXED:
            raise Unavailable(why)
        return unsandboxed(argv, policy, env=env, stdin=stdin, stdout=stdout, stderr=stderr)
    ident = identity(policy.own_user)
    if ident.switch:
        hand_over(policy.writable, ident)
    # The environment goes to bwrap as its own, not as --setenv arguments: a
    # session's token in an argv would be on show to every user of the machine.
    return processes.spawn(
        command(argv, policy, ident),
        cwd=policy.writable,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        die_with_parent=policy.die_with_parent,
        preexec=_child_setup(limits(), ident, policy.die_with_parent, ignore_term=True),
    )


def unsandboxed(
    argv: Sequence[str],
    policy: Policy,
    *,
    env: dict[str, str],
    stdin: processes.Redirect = None,
    stdout: processes.Redirect = None,
    stderr: processes.Redirect = None,
) -> subprocess.Popen[bytes]:
    """The CORRAL_UNSANDBOXED=1 trial: argv as Corral's own user, with the limits only."""
    return processes.spawn(
        argv,
        cwd=policy.writable,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        die_with_parent=policy.die_with_parent,
        preexec=_child_setup(limits(), None, policy.die_with_parent),
    )


def command(argv: Sequence[str], policy: Policy, ident: Identity) -> list[str]:
    """The bwrap command line that runs argv under `policy`."""
    return [
        str(settings.BWRAP),
        *namespaces(ident, network=policy.network),
        *(["--die-with-parent"] if policy.die_with_parent else []),
        *mounts(policy, ident),
        "--chdir",
        str(policy.writable),
        "--",
        *INIT_ARGV,
        *argv,
    ]


def namespaces(ident: Identity, network: bool) -> list[str]:
    args = ["--unshare-user", "--uid", str(ident.uid), "--gid", str(ident.gid)]
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--hostname", "sandbox"]
    return args if network else [*args, "--unshare-net"]


def mounts(policy: Policy, ident: Identity) -> list[str]:
    """Mount options in order; a later mount covers an earlier one at or above it.

    bwrap started as another user (ident.switch) must reach what it mounts: a
    folder that user cannot reach is out of its reach in the sandbox too.
    """
    can_read = reachable_by(ident, stat.S_IRUSR) if ident.switch else os.path.exists
    can_cover = reachable_by(ident, 0) if ident.switch else os.path.exists
    args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for path in existing(["/tmp", "/run", *homes()], can_cover):
        args += tmpfs(path)
    for path in existing(readable(policy), can_read):
        args += ["--ro-bind", path, path]
    for path in existing(corral_folders(), can_cover):
        args += tmpfs(path)
    if os.geteuid() == 0 and not ident.switch:
        for path in existing(root_secrets(), os.path.exists):
            args += ["--ro-bind", "/dev/null", path]
    for path in existing(policy.borrowed, can_read):
        args += ["--ro-bind", path, path]
    args += ["--bind", str(policy.writable), str(policy.writable)]
    hidden = corral_folders()
    for path in existing(policy.home_files, os.path.exists):
        if not any(is_within(path, folder) for folder in hidden):  # never Corral's own files
            args += ["--bind", path, path]
    return args


def tmpfs(path: str) -> list[str]:
    size = ["--size", str(settings.SANDBOX_TMP_MB * MB)] if settings.SANDBOX_TMP_MB else []
    return [*size, "--tmpfs", path]


# What is hidden and what stays readable


def homes() -> list[str]:
    """The Corral user's home (it holds the operator's keys and tokens), and /root."""
    found = {os.environ.get("HOME", ""), "/root"}
    try:
        found.add(pwd.getpwuid(os.geteuid()).pw_dir)
    except KeyError:
        pass
    return sorted(home for home in found if home and os.path.abspath(home) != "/")


def corral_folders() -> list[str]:
    """Where Corral keeps what no agent may read: its home (secret key, SQLite
    database, canonical repositories, session clones), its repository and
    session folders wherever they are, a SQLite database's and a Redis socket's folders."""
    folders = [settings.CORRAL_HOME, settings.REPOS_DIR, settings.SESSIONS_DIR]
    folders.append(Path(settings.BASE_DIR) / ".corral")  # the default home, if another is set
    for db in settings.DATABASES.values():
        if str(db.get("ENGINE", "")).endswith("sqlite3"):
            names = [db.get("NAME"), (db.get("TEST") or {}).get("NAME")]
            folders += [Path(str(name)).parent for name in names if name]
    redis = urlparse(str(settings.REDIS_URL))
    if redis.scheme == "unix" and redis.path:
        folders.append(Path(redis.path).parent)
    return unique(str(Path(folder).resolve()) for folder in folders)


def readable(policy: Policy) -> list[str]:
    """Corral's code and Python, the operator's extra read paths, the policy's,
    and the resolver's file should /etc/resolv.conf point into /run."""
    paths: list[str | Path] = [settings.BASE_DIR, sys.prefix, sys.base_prefix]
    paths += [*settings.SANDBOX_READ_PATHS, *policy.read_only]
    resolv = os.path.realpath("/etc/resolv.conf")
    if resolv.startswith("/run/"):
        paths.append(resolv)
    # Not resolved: a symlink (a CLI's launcher) is bound where it is, as what it points at.
    return unique(os.path.abspath(path) for path in paths if os.path.isabs(path))


def root_secrets() -> list[str]:
    return [*ROOT_SECRETS, *(p for pattern in ROOT_SECRET_GLOBS for p in glob.glob(pattern))]


def existing(paths: Iterable[str | Path], can_reach: Callable[[str], bool]) -> list[str]:
    return [str(path) for path in paths if can_reach(str(path))]


def unique(paths: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(paths))


def is_within(path: str | Path, folder: str | Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def reachable_by(ident: Identity, access: int) -> Callable[[str], bool]:
    """A test of whether that user gets to a path (searching every folder above
    it) and has `access` (an owner bit such as stat.S_IRUSR, or 0) on it."""

    def can_reach(path: str) -> bool:
        try:
            st = os.stat(path)
            above = [os.stat(parent) for parent in Path(path).parents]
        except OSError:
            return False
        searchable = all(permits(parent, ident, stat.S_IXUSR) for parent in above)
        return searchable and (not access or permits(st, ident, access))

    return can_reach


def permits(st: os.stat_result, ident: Identity, owner_bit: int) -> bool:
    """Whether mode bits give ident the access owner_bit names (S_IRUSR, S_IXUSR)."""
    if st.st_uid == ident.uid:
        return bool(st.st_mode & owner_bit)
    if st.st_gid == ident.gid:
        return bool(st.st_mode & (owner_bit >> 3))
    return bool(st.st_mode & (owner_bit >> 6))


def hand_over(folder: Path, ident: Identity) -> None:
    """Give a throwaway folder to the sandbox's user, so that it may write there."""
    os.chown(folder, ident.uid, ident.gid)
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            os.chown(os.path.join(root, name), ident.uid, ident.gid, follow_symlinks=False)


# Limits, and the child's last steps before bwrap


def limits() -> list[tuple[int, int]]:
    """(resource, value) per limit set; 0 in a setting means no limit.

    Memory is RLIMIT_DATA (what a process allocates), not RLIMIT_AS: Node's
    WebAssembly and the JVM reserve far more address space than they use.
    """
    wanted = [
        (resource.RLIMIT_CPU, settings.SANDBOX_CPU_SECONDS),
        (resource.RLIMIT_DATA, settings.SANDBOX_MEMORY_MB * MB),
        (resource.RLIMIT_FSIZE, settings.SANDBOX_FILE_MB * MB),
        (resource.RLIMIT_NPROC, settings.SANDBOX_PROCS),
        (resource.RLIMIT_CORE, 0),
    ]
    chosen = []
    for which, value in wanted:
        if value or which == resource.RLIMIT_CORE:
            hard = resource.getrlimit(which)[1]
            chosen.append((which, value if hard == resource.RLIM_INFINITY else min(value, hard)))
    return chosen


def _child_setup(
    rlimits: list[tuple[int, int]],
    ident: Identity | None,
    die_with_parent: bool,
    ignore_term: bool = False,
) -> Callable[[], None]:
    """What the child does after fork, before exec (all computed beforehand).

    The limits first, while root may still set them; then the user switch,
    which also clears any parent-death signal, so that one is set last: SIGKILL,
    as bwrap ignores SIGTERM (ignore_term) to outlive a group SIGTERM.
    """
    switch = ident if ident is not None and ident.switch else None

    def setup() -> None:
        for which, value in rlimits:
            resource.setrlimit(which, (value, value))
        if switch is not None:
            os.setgroups([])
            os.setgid(switch.gid)
            os.setuid(switch.uid)
        if ignore_term:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if die_with_parent and processes.LIBC is not None:
            processes.LIBC.prctl(processes.PR_SET_PDEATHSIG, signal.SIGKILL)

    return setup
