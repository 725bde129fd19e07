"""Read Corral's configuration from the environment.

Every reader raises ImproperlyConfigured with the variable's name in the
message, so a bad value stops start-up with a line an operator can act on.
"""

import ipaddress
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}
REDIS_SCHEMES = {"redis", "rediss", "unix"}


def bad(name: str, value: str, why: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={value!r} is not valid: {why}")


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise bad(name, raw, "use 1/0, true/false, yes/no or on/off")


def env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad(name, raw, "use a whole number") from None
    if value < minimum:
        raise bad(name, raw, f"use a number of at least {minimum}")
    return value


def corral_home(default: str | Path) -> Path:
    raw = os.environ.get("CORRAL_HOME") or str(default)
    home = Path(raw).expanduser().resolve()
    try:
        # Owner only: it holds the database, the secret key and every repository.
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise bad("CORRAL_HOME", raw, f"cannot create the folder ({e.strerror})") from None
    if not os.access(home, os.W_OK):
        raise bad("CORRAL_HOME", raw, "the folder is not writable")
    return home


def database(home: Path) -> dj_database_url.DBConfig:
    raw = os.environ.get("DATABASE_URL", "").strip()
    if not raw:
        private_files("CORRAL_HOME", str(home), home / "corral.sqlite3")
        return sqlite(home / "corral.sqlite3", test_name=home / "test.sqlite3")
    try:
        # Connections are kept a minute: a new one per request costs more than the query.
        config = dj_database_url.parse(raw, conn_max_age=60, conn_health_checks=True)
    except (ValueError, KeyError) as e:
        raise bad("DATABASE_URL", raw, str(e) or "unknown scheme") from None
    engine = config.get("ENGINE", "")
    if engine.endswith("sqlite3"):
        name = Path(config["NAME"])
        private_files("DATABASE_URL", raw, name)
        return sqlite(name, test_name=name.with_name("test-" + name.name))
    if not engine.endswith("postgresql"):
        raise bad("DATABASE_URL", raw, "Corral supports postgres:// and sqlite:// URLs")
    if not config.get("NAME"):
        raise bad("DATABASE_URL", raw, "the URL names no database")
    # JIT off: at fleet size the dashboard's counts (the hook page's ready beads,
    # 100,000 beads) cross the JIT's cost threshold, and compiling them took
    # ~25 ms of a ~100 ms query and saved less; Corral's statements are short.
    # Options the URL gives come after, so they win.
    options = config.setdefault("OPTIONS", {})
    options["options"] = f"-c jit=off {options.get('options', '')}".strip()
    # Django turns psycopg's prepared statements off; the hook's statements
    # (beads/hook.py, which bind on the server) are prepared per connection
    # after their first run. Django's own queries bind on the client and are
    # never prepared. (Behind PgBouncer, 1.21 or newer in transaction mode.)
    options.setdefault("prepare_threshold", 1)
    return config


def private_files(name: str, raw: str, database: Path) -> None:
    """The SQLite database made 0600 before Django opens it: SQLite gives its
    -wal and -shm files the database's mode. Those made before are tightened."""
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
    except OSError as e:
        raise bad(name, raw, f"cannot create the database {database} ({e.strerror})") from None
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        owner_only(path)


def owner_only(path: Path) -> None:
    """Take group and others' access away from a file of ours that has it."""
    try:
        st = path.stat()
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            path.chmod(0o600)
    except FileNotFoundError:
        pass


def sqlite(path: Path, test_name: Path) -> dj_database_url.DBConfig:
    # IMMEDIATE transactions take the write lock up front, so two writers
    # queue on the busy timeout instead of failing on a lock upgrade; WAL lets
    # readers go on while one writes. The test database is a file so that
    # worker processes and the live server see the same data as the tests.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path),
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        "TEST": {"NAME": str(test_name)},
    }


def redis_url(home: Path) -> str:
    """The Redis URL; unset means the embedded Redis that `manage.py up` starts."""
    raw = os.environ.get("REDIS_URL", "").strip()
    if not raw:
        return f"unix://{home / 'redis.sock'}"
    parsed = urlparse(raw)
    if parsed.scheme not in REDIS_SCHEMES:
        raise bad("REDIS_URL", raw, "use redis://host:port/db, rediss:// or unix:///path")
    if parsed.scheme == "unix" and not parsed.path:
        raise bad("REDIS_URL", raw, "a unix:// URL needs a socket path")
    if parsed.scheme != "unix" and not parsed.hostname:
        raise bad("REDIS_URL", raw, "the URL names no host")
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise bad("REDIS_URL", raw, "the port is not a number") from None
    return raw


def http_url(name: str, default: str) -> str:
    raw = os.environ.get(name, "").strip() or default
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise bad(name, raw, "use an http:// or https:// URL")
    return raw.rstrip("/")


def secret_key(home: Path) -> str:
    """SECRET_KEY from the environment, else one generated once and kept in CORRAL_HOME.
    Set but empty counts as unset (docker compose passes `${SECRET_KEY:-}` so)."""
    raw = os.environ.get("SECRET_KEY")
    if raw:
        if len(raw) < 32:
            raise bad("SECRET_KEY", "…", "use at least 32 characters")
        return raw
    path = home / "secret_key"
    if not path.exists():
        write_private(path, secrets.token_urlsafe(50))
    owner_only(path)
    return path.read_text().strip()


def write_private(path: Path, text: str) -> None:
    """Write `path` 0600 from its first byte, all at once: a process starting
    beside this one reads either no file or the whole key, and if both write,
    the first one's key is the one both keep."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    with os.fdopen(fd, "w") as f:
        f.write(text)
    try:
        os.link(tmp, path)  # fails if another process got there first
    except FileExistsError:
        pass
    except OSError:  # a filesystem without hard links: rename, the last writer wins
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def allowed_hosts() -> list[str]:
    raw = os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
    hosts = [h.strip() for h in raw.split(",") if h.strip()]
    if not hosts:
        raise bad("ALLOWED_HOSTS", raw, "name at least one host, or * for any")
    if any(" " in h or "/" in h for h in hosts):
        raise bad("ALLOWED_HOSTS", raw, "give host names separated by commas")
    return hosts


# The sandbox (bubblewrap) that checks and sessions run in (workspace/sandbox.py).


def bwrap(default: str = "/usr/bin/bwrap") -> str:
    """CORRAL_BWRAP, bubblewrap's absolute path; unset, bwrap on PATH. Whether it
    starts is found out when it is first needed: a check is then refused with why."""
    raw = os.environ.get("CORRAL_BWRAP", "").strip()
    if not raw:
        return shutil.which("bwrap") or default
    if not os.path.isabs(raw):
        raise bad("CORRAL_BWRAP", raw, "give bubblewrap's absolute path, e.g. /usr/bin/bwrap")
    return raw


def sandbox_limit(name: str, default: int) -> int:
    """A per-process limit in the sandbox; 0 means none."""
    return env_int(name, default, minimum=0)


def absolute_paths(name: str) -> list[Path]:
    """A colon-separated list of absolute paths (~ allowed), like PATH."""
    raw = os.environ.get(name, "")
    paths = [os.path.expanduser(part.strip()) for part in raw.split(":") if part.strip()]
    relative = [path for path in paths if not os.path.isabs(path)]
    if relative:
        raise bad(name, raw, f"{relative[0]!r} is not an absolute path")
    return [Path(path) for path in paths]


def networks(name: str) -> list[str]:
    """A comma-separated list of addresses or networks (CIDR), e.g. 10.0.0.0/8,127.0.0.1."""
    raw = os.environ.get(name, "")
    found = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            found.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise bad(name, raw, f"{part!r} is not an address or a network") from None
    return found


def old_secret_keys(name: str = "CORRAL_SECRET_KEYS_OLD") -> list[str]:
    """Secret keys used before SECRET_KEY, comma-separated: they still open the
    secrets and sessions they sealed or signed, until `manage.py reencrypt_secrets`."""
    raw = os.environ.get(name, "")
    keys = [key.strip() for key in raw.split(",") if key.strip()]
    if any(len(key) < 32 for key in keys):
        raise bad(name, "…", "each key has at least 32 characters; separate them with commas")
    return keys


def trusted_proxies(name: str = "CORRAL_TRUSTED_PROXIES") -> list[str]:
    """The reverse proxies' addresses or networks: only a request from one of
    them has its X-Forwarded-For believed (workspace/audit.py client_ip)."""
    return networks(name)
