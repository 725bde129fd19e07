"""Django settings for Corral. Everything an operator sets comes from the environment."""

from pathlib import Path

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
    "workspace",
    "beads",
    "agents",
    "knowledge",
    "corral",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
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

RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600} for name in ("default", "sessions")}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
