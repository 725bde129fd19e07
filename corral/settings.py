"""Django settings for Corral. Everything an operator sets comes from the environment."""

import os
from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF

from workspace import config

BASE_DIR = Path(__file__).resolve().parent.parent

CORRAL_HOME = config.corral_home(BASE_DIR / ".corral")
SECRET_KEY = config.secret_key(CORRAL_HOME)
# Keys used before SECRET_KEY: they still open secrets stored encrypted
# (workspace/secrets.py) and sessions signed under them, until rotated away.
SECRET_KEY_FALLBACKS = config.old_secret_keys()
DEBUG = config.env_bool("DEBUG", default=False)
ALLOWED_HOSTS = config.allowed_hosts()
DATABASES = {"default": config.database(CORRAL_HOME)}
REDIS_URL = config.redis_url(CORRAL_HOME)

# Where canonical bare repositories and session clones live.
REPOS_DIR = CORRAL_HOME / "repos"
SESSIONS_DIR = CORRAL_HOME / "sessions"
# A session worker that cannot see REPOS_DIR (on another machine) keeps here
# its mirrors of the repositories, fetched over git over HTTP.
MIRRORS_DIR = CORRAL_HOME / "mirrors"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "django_rq",
    "ninja",  # its API docs page then uses its own static files, not a CDN
    "axes",
    "workspace",
    "beads",
    "agents",
    "knowledge",
    "corral",
]

MIDDLEWARE = [
    # Before all: /healthz and /readyz answer probes at any Host, with no login.
    "corral.health.HealthMiddleware",
    # Then: HTTP latency for /metrics counts the whole of every answer.
    "corral.metrics.HttpLatencyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The audit trail's entries learn who and from where (workspace/audit.py).
    "workspace.audit.RequestMiddleware",
    # No role, no pages; the admin site for admins only (workspace/roles.py).
    "workspace.roles.RoleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as axes asks: it turns a locked-out login into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "corral.urls"
WSGI_APPLICATION = "corral.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "corral.context_processors.sandbox_state",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes): this many failed logins in a row for one
# username from one address lock that pair out for the cool-off time, even
# with the right password; a successful login clears the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = config.env_int("CORRAL_LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=config.env_int("CORRAL_LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "corral.pages.overview.locked_out"
# Behind reverse proxies, the client is the right-most X-Forwarded-For address
# that is not one of them; without CORRAL_TRUSTED_PROXIES the header is ignored.
TRUSTED_PROXIES = config.trusted_proxies()
AXES_CLIENT_IP_CALLABLE = "workspace.audit.client_ip"

# Cookies: never read by scripts, not sent on cross-site posts; over HTTPS
# (CORRAL_HTTPS=1, behind a proxy that terminates TLS and sets
# X-Forwarded-Proto) only sent over HTTPS, and browsers told to keep to it.
HTTPS = config.env_bool("CORRAL_HTTPS", default=False)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = config.env_int("CORRAL_HSTS_SECONDS", default=31_536_000, minimum=0)

# Content Security Policy (django-csp): scripts and styles only from Corral's
# own static files, no inline script, no eval (htmx needs none: no hx-on here).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = CORRAL_HOME / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns about a missing one
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the apps' static folders: `make run` needs no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Where agents that Corral runs reach its API.
CORRAL_URL = config.http_url("CORRAL_URL", "http://127.0.0.1:8000")
# Where such a worker clones from: <CORRAL_GIT_URL>/<slug>.git (agents/api/git_http.py).
CORRAL_GIT_URL = config.http_url("CORRAL_GIT_URL", CORRAL_URL + "/git")
# Sessions: a log past this many characters is cut; a stopped agent gets this
# long between SIGTERM and SIGKILL; the scope watchdog looks this often.
SESSION_LOG_CAP_CHARS = config.env_int("CORRAL_SESSION_LOG_CAP_CHARS", default=2_000_000)
KILL_GRACE_SECONDS = config.env_int("CORRAL_KILL_GRACE_SECONDS", default=10)
WATCH_INTERVAL_SECONDS = float(config.env_int("CORRAL_WATCH_INTERVAL_MS", default=1000)) / 1000

# A session worker told to stop (SIGTERM) lets the session in hand run this
# long, then stops its agent (KILL_GRACE_SECONDS) and salvages its work.
SHUTDOWN_GRACE_SECONDS = config.env_int("CORRAL_SHUTDOWN_GRACE_SECONDS", default=15, minimum=0)
# Sessions dispatch keeps queued or running at once; 0: as many as the session
# workers listening. Set where workers are started for the queue (KEDA).
SESSION_SLOTS = config.env_int("CORRAL_SESSION_SLOTS", default=0, minimum=0)

# A claim's lease: a session not heard from for this long is lost.
LEASE_SECONDS = config.env_int("CORRAL_LEASE_SECONDS", default=300)
# Rate limits: an agent's CLI that names no reset time waits this long; an
# agent paused more often than this in a day waits for a person to resume it.
RATE_LIMIT_WAIT_SECONDS = config.env_int("CORRAL_RATE_LIMIT_WAIT_SECONDS", default=3600)
PAUSES_PER_DAY = config.env_int("CORRAL_PAUSES_PER_DAY", default=5, minimum=0)
# A session or lead worker whose heartbeat is older than this is dead: its
# session is lost and its lead jobs run again. It beats every quarter of it.
WORKER_DEAD_SECONDS = config.env_int("CORRAL_WORKER_DEAD_SECONDS", default=20, minimum=2)
# The largest patch the API takes.
MAX_PATCH_BYTES = config.env_int("CORRAL_MAX_PATCH_BYTES", default=5_000_000)

# Room for the largest patch plus its JSON envelope; past it, a clear 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_PATCH_BYTES + 1_000_000
# The data memory (MB) of each git process Corral runs on what agents wrote
# (patches, clones); 0: none. A clone or fetch from an upstream goes without.
GIT_MEMORY_MB = config.env_int("CORRAL_GIT_MEMORY_MB", default=1024, minimum=0)

# How long a lead's per-repository lock outlives a lead that died holding it.
LEAD_LOCK_SECONDS = config.env_int("CORRAL_LEAD_LOCK_SECONDS", default=15)
# How often (seconds) the lead fetches each upstream it pushes to, besides
# before each train and on a push webhook.
UPSTREAM_FETCH_SECONDS = config.env_int("CORRAL_UPSTREAM_FETCH_SECONDS", default=30)
# Lead workers `manage.py lead` keeps, serving every repository: how many land at once.
LEAD_WORKERS = config.env_int("CORRAL_LEAD_WORKERS", default=2)
# Salvages (the work of sessions that ended without handing in): once a bead
# lands, its newest this many are kept and the older ones pruned.
SALVAGE_KEEP = config.env_int("CORRAL_SALVAGE_KEEP", default=3, minimum=0)
# Pull-request mode: how often the lead supervisor asks the forges about open requests.
FORGE_POLL_SECONDS = config.env_int("CORRAL_FORGE_POLL_SECONDS", default=30, minimum=1)
# Back-pressure: a repository with more submissions awaiting a person than this
# (its own review_limit, if set) gets no new sessions. 0: no limit.
REVIEW_LIMIT = config.env_int("CORRAL_REVIEW_LIMIT", default=6, minimum=0)
# A claim waits this long for SQLite's write lock, then answers 503 with Retry-After.
CLAIM_LOCK_SECONDS = config.env_int("CORRAL_CLAIM_LOCK_SECONDS", default=2, minimum=1)

# The sandbox (bubblewrap) that check commands and agent sessions run in. Where
# bwrap cannot start, both are refused unless CORRAL_UNSANDBOXED=1 allows
# running them as Corral's own user (a local single-user trial; every page says so).
BWRAP = config.bwrap()
UNSANDBOXED = config.env_bool("CORRAL_UNSANDBOXED", default=False)
# Limits on each sandboxed process (0: none): CPU seconds, data memory (not
# address space), the size of one file, processes of its user; each tmpfs's size.
SANDBOX_CPU_SECONDS = config.sandbox_limit("CORRAL_SANDBOX_CPU_SECONDS", 3600)
SANDBOX_MEMORY_MB = config.sandbox_limit("CORRAL_SANDBOX_MEMORY_MB", 4096)
SANDBOX_FILE_MB = config.sandbox_limit("CORRAL_SANDBOX_FILE_MB", 1024)
SANDBOX_PROCS = config.sandbox_limit("CORRAL_SANDBOX_PROCS", 512)
SANDBOX_TMP_MB = config.sandbox_limit("CORRAL_SANDBOX_TMP_MB", 1024)
# Who sandboxed code is when Corral runs as root (nobody by default).
SANDBOX_UID = config.env_int("CORRAL_SANDBOX_UID", default=65534)
SANDBOX_GID = config.env_int("CORRAL_SANDBOX_GID", default=65534)
# Extra read-only paths for every sandbox, e.g. an agent CLI installed in the home.
SANDBOX_READ_PATHS = config.absolute_paths("CORRAL_SANDBOX_READ_PATHS")

# Problems (agents/reports/problems.py): a running session whose agent printed nothing
# and sent no heartbeat for this long is stalled; a repository whose lead queue
# has not moved for this long is stuck; a bead refused this many times churns.
STALL_SECONDS = config.env_int("CORRAL_STALL_SECONDS", default=600)
STUCK_SECONDS = config.env_int("CORRAL_STUCK_SECONDS", default=900)
CHURN_REFUSALS = config.env_int("CORRAL_CHURN_REFUSALS", default=3)

# Webhooks: the waits before each retry of a failed delivery; after the last, it fails.
WEBHOOK_BACKOFF_SECONDS = [10, 60, 300, 1800, 7200]

# /metrics (Prometheus): open to a bearer token, or to these addresses; to
# nobody when neither is set.
METRICS_TOKEN = os.environ.get("CORRAL_METRICS_TOKEN", "")
METRICS_ALLOW = config.networks("CORRAL_METRICS_ALLOW")

# The job class runs jobs enqueued under their old paths too; the worker's
# work horse dies with it, and with the horse the agent it runs.
RQ = {"JOB_CLASS": "agents.queues.Job", "WORKER_CLASS": "agents.queues.Worker"}
RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600} for name in ("default", "sessions")}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # axes tells every start and login; failed logins and lock-outs are warnings.
        "axes": {"level": "WARNING"},
    },
}

# The most tokens one usage report (`POST sessions/{id}/usage`) may bring, of
# any kind and of input + output + cache writes together (what budgets count):
# a bigger one is refused (422), so a lie cannot spend a repository's day.
USAGE_REPORT_MAX_TOKENS = config.env_int("CORRAL_USAGE_REPORT_MAX_TOKENS", default=50_000_000)

# Webhooks go only to public addresses: loopback, link-local, private and other
# non-global destinations are refused (when saved, and at each send) unless this is on.
WEBHOOK_ALLOW_PRIVATE = config.env_bool("CORRAL_WEBHOOK_ALLOW_PRIVATE", default=False)
