"""One settings module, driven by environment variables.

With none set, agentops runs its embedded default: SQLite under var/, Celery on the
filesystem broker transport, the in-process simulator as the model. DATABASE_URL, REDIS_URL,
DJANGO_SECRET_KEY, DJANGO_DEBUG and DJANGO_ALLOWED_HOSTS switch to production.
"""

import base64
import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("AGENTOPS_VAR_DIR", BASE_DIR / "var"))


def _stop(message):
    # A misconfigured production start must say exactly what is wrong, in one line,
    # rather than a traceback from deep inside Django.
    raise SystemExit(f"agentops: configuration error: {message}")


def _env_bool(name, default):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    _stop(f"{name} must be 0 or 1 (got {raw!r})")


def _env_int(name, default, *, minimum=0):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        _stop(f"{name} must be a whole number (got {raw!r})")
    if value < minimum:
        _stop(f"{name} must be at least {minimum} (got {value})")
    return value


DEBUG = _env_bool("DJANGO_DEBUG", True)
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "") or os.environ.get("CELERY_BROKER_URL", "")
EMBEDDED = not DATABASE_URL

if not DEBUG:
    for required in ("DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(required) and not (required == "REDIS_URL" and REDIS_URL):
            _stop(f"{required} is required when DJANGO_DEBUG=0")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    SECRET_KEY = "embedded-default-insecure-key-only-for-the-local-demo-0123456789abcdef"
elif not DEBUG and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    _stop("DJANGO_SECRET_KEY must be at least 50 characters with at least 5 distinct ones")

ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")
    if host.strip()
]
CSRF_TRUSTED_ORIGINS = [
    origin.strip()
    for origin in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",")
    if origin.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials",
    "csp",
    "django_celery_beat",
    "agentops.teams",
    "agentops.agents",
    "agentops.llm",
    "agentops.runs",
    "agentops.memory",
    "agentops.workflows",
    "agentops.outcomes",
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
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "agentops.teams.middleware.CurrentTeamMiddleware",
]

ROOT_URLCONF = "agentops.urls"
WSGI_APPLICATION = "agentops.wsgi.application"

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
                "csp.context_processors.nonce",
                "agentops.teams.context_processors.current_team",
            ],
        },
    }
]

WORKER_THREADS = _env_int("AGENTOPS_WORKER_CONCURRENCY", 8, minimum=1)

if EMBEDDED:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "agentops.sqlite3",
            "OPTIONS": {
                # The web server, the worker threads and beat share one file: wait for
                # locks instead of failing, and take the write lock up front.
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
else:
    parsed_db = urlparse(DATABASE_URL)
    if parsed_db.scheme not in {"postgres", "postgresql", "sqlite"}:
        _stop(f"DATABASE_URL must be a postgres:// URL (got scheme {parsed_db.scheme!r})")
    if parsed_db.scheme != "sqlite" and not parsed_db.path.strip("/"):
        _stop("DATABASE_URL must name a database, e.g. postgres://user@host:5432/agentops")
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Celery closes Django's connections around every task; a pool makes that a return
        # to the pool instead of a new PostgreSQL connection per step. Every worker thread
        # may be talking to the database at once (none holds a connection through a model
        # call), so by default the pool has room for all of them.
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 2,
            "max_size": _env_int("AGENTOPS_DB_POOL_MAX", max(20, WORKER_THREADS + 2), minimum=2),
            "timeout": 30,
        }
        # Django disables prepared statements (None); the run engine's precompiled
        # statements (agentops/fastsql.py) ask for them explicitly, and only they can use
        # them: the ORM's cursors bind parameters on the client. A pooler in front of
        # PostgreSQL must pass protocol-level prepared statements through (PgBouncer
        # 1.21+ with max_prepared_statements set).
        DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_URL and urlparse(REDIS_URL).scheme not in {"redis", "rediss"}:
    _stop(f"REDIS_URL must be a redis:// URL (got {urlparse(REDIS_URL).scheme!r})")

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "agentops",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
WHITENOISE_USE_FINDERS = DEBUG
if DEBUG:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# Content Security Policy: our own scripts and styles only, no inline script, no external
# images; htmx's indicator styles are turned off in the page so no inline style is needed.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = _env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # The container health check speaks plain HTTP from inside the container.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = _env_int("DJANGO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("AGENTOPS_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The HTTP client logs every model request at INFO; the call record already has it.
        "httpx2": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}

# Celery. Tasks carry ids only; PostgreSQL rows are the truth of every run.
CELERY_TASK_SOFT_TIME_LIMIT = _env_int("AGENTOPS_TASK_SOFT_TIME_LIMIT", 300, minimum=1)
CELERY_TASK_TIME_LIMIT = _env_int("AGENTOPS_TASK_TIME_LIMIT", 360, minimum=2)
if CELERY_TASK_TIME_LIMIT <= CELERY_TASK_SOFT_TIME_LIMIT:
    _stop("AGENTOPS_TASK_TIME_LIMIT must be above AGENTOPS_TASK_SOFT_TIME_LIMIT")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_POOL = "threads"
CELERY_WORKER_CONCURRENCY = WORKER_THREADS
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
# One queue name per deployment by default; `manage.py bench overhead` gives its own worker a
# private queue so a running production worker never takes the benchmark's steps.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("AGENTOPS_CELERY_QUEUE", "") or "celery"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # A message not acknowledged within this window is redelivered; it must outlast the
    # hard time limit or a long step would run twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 300}
else:
    BROKER_DIR = VAR_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "visibility_timeout": CELERY_TASK_TIME_LIMIT + 300,
    }

# The run engine. A step is claimed with a deadline; past it the sweeper assumes the worker
# died and re-queues the step. The deadline must outlast the hard time limit, or a slow but
# live step would be handed to a second worker (its late result is then discarded).
AGENTOPS_STEP_DEADLINE_S = _env_int(
    "AGENTOPS_STEP_DEADLINE_S", CELERY_TASK_TIME_LIMIT + 30, minimum=1
)
# Each claim counts as an attempt; past this many the step and its run fail.
AGENTOPS_STEP_MAX_ATTEMPTS = _env_int("AGENTOPS_STEP_MAX_ATTEMPTS", 5, minimum=1)
# How many times the outcome loop asks the grader for a well-formed grade of one output.
AGENTOPS_GRADER_ATTEMPTS = _env_int("AGENTOPS_GRADER_ATTEMPTS", 3, minimum=1)
# A queued step whose message was lost (a broker restarted without persistence) is sent
# again after this long; a duplicate message is harmless because claiming is conditional.
AGENTOPS_STEP_REQUEUE_AFTER_S = _env_int("AGENTOPS_STEP_REQUEUE_AFTER_S", 120, minimum=1)
AGENTOPS_SWEEP_INTERVAL_S = _env_int("AGENTOPS_SWEEP_INTERVAL_S", 30, minimum=1)
# A worker whose step queues its thread's next step claims that step itself instead of
# sending it through the broker (no message, no wait for another worker), for this long
# after its task began; then the next step goes through the broker again, so one long run
# does not keep a worker from the others' steps. 0 sends every step through the broker.
AGENTOPS_STEP_KEEP_S = _env_int("AGENTOPS_STEP_KEEP_S", 30, minimum=0)

# Dreams: how much session text one model call reads, how many sessions one dream reads at
# most, how many failed attempts in a row end it, when a silent running dream counts as
# lost, and how often beat checks for lost and scheduled dreams.
AGENTOPS_DREAM_CHUNK_CHARS = _env_int("AGENTOPS_DREAM_CHUNK_CHARS", 24_000, minimum=1000)
AGENTOPS_DREAM_MAX_SESSIONS = _env_int("AGENTOPS_DREAM_MAX_SESSIONS", 500, minimum=1)
AGENTOPS_DREAM_MAX_ATTEMPTS = _env_int("AGENTOPS_DREAM_MAX_ATTEMPTS", 6, minimum=1)
AGENTOPS_DREAM_STALE_S = _env_int("AGENTOPS_DREAM_STALE_S", CELERY_TASK_TIME_LIMIT + 60, minimum=1)
AGENTOPS_DREAM_TICK_S = _env_int("AGENTOPS_DREAM_TICK_S", 60, minimum=1)

# Pages that list things show this many rows at a time.
PAGE_SIZE = 25

# The model layer (agentops.llm). A team's API key is stored encrypted with Fernet; several
# comma-separated keys let you rotate: the first encrypts, all of them decrypt.
AGENTOPS_FERNET_KEY = os.environ.get("AGENTOPS_FERNET_KEY", "")
if not AGENTOPS_FERNET_KEY:
    if not DEBUG:
        _stop(
            "AGENTOPS_FERNET_KEY is required when DJANGO_DEBUG=0; generate one with: python -c "
            '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
        )
    AGENTOPS_FERNET_KEY = base64.urlsafe_b64encode(
        hashlib.sha256(b"agentops-fernet:" + SECRET_KEY.encode()).digest()
    ).decode()
for _fernet_key in AGENTOPS_FERNET_KEY.split(","):
    try:
        Fernet(_fernet_key.strip().encode())
    except ValueError:
        _stop("AGENTOPS_FERNET_KEY must be 32 url-safe base64-encoded bytes (a Fernet key)")
# Without a team key this key is used; without either, the in-process simulator answers.
# ANTHROPIC_BASE_URL points the SDK elsewhere, e.g. at `manage.py simulator`.
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL", "")
AGENTOPS_MODEL_TIMEOUT_S = _env_int("AGENTOPS_MODEL_TIMEOUT_S", 120, minimum=1)
# How long a call may wait for rate budget before its step fails, and how many seconds of
# each per-minute budget may be spent at once (60 = a full minute, as Anthropic's buckets).
AGENTOPS_RATE_MAX_WAIT_S = _env_int("AGENTOPS_RATE_MAX_WAIT_S", 120, minimum=0)
# A run step whose call waits this long or longer for the rate limit says so on its run page.
AGENTOPS_RATE_WAIT_NOTICE_S = _env_int("AGENTOPS_RATE_WAIT_NOTICE_S", 2, minimum=0)
AGENTOPS_RATE_BURST_S = _env_int("AGENTOPS_RATE_BURST_S", 60, minimum=1)
# The API charges a request when it arrives, our limiter when it admits it: our buckets run
# this much less far ahead of the clock, so that a request that leaves at once cannot reach
# the API before the refill owed to one admitted earlier that left slowly (worker threads
# contend for the CPU between admission and sending).
AGENTOPS_RATE_SEND_MARGIN_MS = _env_int("AGENTOPS_RATE_SEND_MARGIN_MS", 500, minimum=0)
# Limits for a model no team has configured: requests, input and output tokens per minute.
AGENTOPS_RATE_DEFAULT_RPM = _env_int("AGENTOPS_RATE_DEFAULT_RPM", 50, minimum=1)
AGENTOPS_RATE_DEFAULT_ITPM = _env_int("AGENTOPS_RATE_DEFAULT_ITPM", 30000, minimum=1)
AGENTOPS_RATE_DEFAULT_OTPM = _env_int("AGENTOPS_RATE_DEFAULT_OTPM", 8000, minimum=1)
AGENTOPS_RETRY_MAX_DELAY_S = _env_int("AGENTOPS_RETRY_MAX_DELAY_S", 60, minimum=1)

# Limits of the tools agents call (agentops.agents.tools).
AGENTOPS_TOOL_HTTP_TIMEOUT_S = float(_env_int("AGENTOPS_TOOL_HTTP_TIMEOUT_S", 10, minimum=1))
AGENTOPS_TOOL_MAX_RESPONSE_BYTES = _env_int(
    "AGENTOPS_TOOL_MAX_RESPONSE_BYTES", 200_000, minimum=1024
)
