"""Django settings for Corral. Everything an operator sets comes from the environment."""

import os
from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF

from workspace import config

BASE_DIR = Path(__file__).resolve().parent.parent

CORRAL_HOME = config.corral_home(BASE_DIR / ".corral")
SECRET_KEY = config.secret_key(CORRAL_HOME)
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
    # First: HTTP latency for /metrics counts the whole of every answer.
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
AXES_LOCKOUT_CALLABLE = "corral.views.locked_out"

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
# Where such a worker clones from: <CORRAL_GIT_URL>/<slug>.git (agents/git_http.py).
CORRAL_GIT_URL = config.http_url("CORRAL_GIT_URL", CORRAL_URL + "/git")
# Sessions: a log past this many characters is cut; a stopped agent gets this
# long between SIGTERM and SIGKILL; the scope watchdog looks this often.
SESSION_LOG_CAP_CHARS = config.env_int("CORRAL_SESSION_LOG_CAP_CHARS", default=2_000_000)
KILL_GRACE_SECONDS = config.env_int("CORRAL_KILL_GRACE_SECONDS", default=10)
WATCH_INTERVAL_SECONDS = float(config.env_int("CORRAL_WATCH_INTERVAL_MS", default=1000)) / 1000

# A claim's lease: a session not heard from for this long is lost.
LEASE_SECONDS = config.env_int("CORRAL_LEASE_SECONDS", default=300)
# The largest patch the API takes.
MAX_PATCH_BYTES = config.env_int("CORRAL_MAX_PATCH_BYTES", default=5_000_000)

# Room for the largest patch plus its JSON envelope; past it, a clear 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_PATCH_BYTES + 1_000_000

# How long a lead's per-repository lock outlives a lead that died holding it.
LEAD_LOCK_SECONDS = config.env_int("CORRAL_LEAD_LOCK_SECONDS", default=15)
# Lead workers `manage.py lead` keeps, serving every repository: how many land at once.
LEAD_WORKERS = config.env_int("CORRAL_LEAD_WORKERS", default=2)

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

# Problems (agents/problems.py): a running session whose agent printed nothing
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
