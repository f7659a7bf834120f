"""crmseg settings: one module, every knob read from an environment variable.

The helpers below are strict: a value they cannot read stops start-up with
ImproperlyConfigured naming the variable, instead of silently falling back.
"""

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use one of 1/0, true/false, yes/no, on/off)")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def envlist(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_from_url(name: str, default: str) -> dict:
    """Turn DATABASE_URL (postgres://user:pass@host:port/db or sqlite:///path) into a DATABASES entry."""
    raw = os.environ.get(name) or default
    url = urlsplit(raw)
    if url.scheme in ("postgres", "postgresql", "pgsql"):
        dbname = unquote(url.path.lstrip("/"))
        if not dbname:
            raise ImproperlyConfigured(f"{name}={raw!r} names no database (postgres://user@host:5432/NAME)")
        options = {key: values[-1] for key, values in parse_qs(url.query).items()}
        # A backend notices within this many seconds that its client died (a killed worker) and
        # stops its statement, which releases the segment's lock: a dead refresh shows at once.
        check_seconds = envint("DATABASE_CLIENT_CHECK_SECONDS", 5, minimum=0)
        if check_seconds:
            check = f"-c client_connection_check_interval={check_seconds * 1000}"
            options["options"] = f"{options['options']} {check}" if options.get("options") else check
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": dbname,
            "USER": unquote(url.username or ""),
            "PASSWORD": unquote(url.password or ""),
            "HOST": url.hostname or "",
            "PORT": str(url.port or ""),
            "CONN_MAX_AGE": envint("DATABASE_CONN_MAX_AGE", 60, minimum=0),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    if url.scheme == "sqlite":
        path = unquote(url.path)
        if raw.startswith("sqlite:///") and not raw.startswith("sqlite:////"):
            path = str(BASE_DIR / path.lstrip("/"))
        if not path or path == "/":
            raise ImproperlyConfigured(f"{name}={raw!r} names no file (sqlite:///var/crmseg.sqlite3)")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            "OPTIONS": {
                # BEGIN IMMEDIATE: a transaction takes the write lock when it starts, so two
                # refreshes of one segment queue up instead of deadlocking on lock upgrade.
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "TEST": {"NAME": str(BASE_DIR / "var" / "test.sqlite3")},
        }
    raise ImproperlyConfigured(
        f"{name}={raw!r} has an unsupported scheme {url.scheme!r} (use postgres:// or sqlite:///)"
    )


def debug_secret_key(path: Path) -> str:
    """A random key made on first use and kept in `path` (debug only).

    Every process of a debug run must sign alike: runserver, qcluster and management commands
    (django-q2 signs queued tasks with SECRET_KEY, and a worker refuses tasks signed otherwise).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as key_file:
            key_file.write(secrets.token_urlsafe(50))
    key = path.read_text().strip()
    if not key:
        raise ImproperlyConfigured(f"SECRET_KEY is unset and {path} is empty; delete it or set SECRET_KEY")
    return key


DEBUG = envbool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = debug_secret_key(BASE_DIR / "var" / "dev-secret-key")

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
try:
    ZoneInfo(TIME_ZONE)
except (ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(f"TIME_ZONE={TIME_ZONE!r} is not a known IANA time zone") from None
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "axes",
    "contacts",
    "predictions",
    "segments",
    "activation",
    "api",
    "crmseg_site",
    "devtools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from STATIC_ROOT (after collectstatic) in any server, gunicorn included; with
    # DEBUG it reads them from the apps' folders instead, as runserver does.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Inside the session and auth middleware: only the view's own writes pin a browser to the primary.
    "crmseg_site.replicas.ReadYourWritesMiddleware",
    "crmseg_site.access.AdminAccessMiddleware",
    "api.middleware.EmptyQueryParamsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "crmseg_site.urls"
WSGI_APPLICATION = "crmseg_site.wsgi.application"

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

DATABASES = {"default": database_from_url("DATABASE_URL", "sqlite:///var/crmseg.sqlite3")}
# A streaming replica of the primary for the read-heavy work (crmseg_site/replicas.py): the
# `replica` alias, its router and middleware. Unset: one database, nothing routed.
# REPLICA_MAX_LAG_SECONDS: a replica further behind is skipped (logged); REPLICA_CHECK_SECONDS:
# how long a process trusts its last look at the replica's lag.
DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL", "")
REPLICA_MAX_LAG_SECONDS = envint("REPLICA_MAX_LAG_SECONDS", 30, minimum=0)
REPLICA_CHECK_SECONDS = envint("REPLICA_CHECK_SECONDS", 5, minimum=0)
DATABASE_ROUTERS = []
if DATABASE_REPLICA_URL:
    _replica = database_from_url("DATABASE_REPLICA_URL", "")
    if _replica["ENGINE"] != "django.db.backends.postgresql" or DATABASES["default"]["ENGINE"] != _replica["ENGINE"]:
        raise ImproperlyConfigured("DATABASE_REPLICA_URL needs PostgreSQL, for it and for DATABASE_URL")
    # A replica that does not answer is skipped after this long, not waited for.
    _timeout = envint("REPLICA_CONNECT_TIMEOUT_SECONDS", 2, minimum=1)
    _replica["OPTIONS"].setdefault("connect_timeout", str(_timeout))
    # Tests: the test database made on the primary reaches the replica by replication, under the
    # same name; nothing is created, flushed or dropped through this alias.
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES["replica"] = _replica
    DATABASE_ROUTERS = ["crmseg_site.replicas.ReplicaRouter"]
# Activity retention (contacts/retention.py): the months of activities kept before this one (UTC);
# older months' partitions are dropped each night once the measures that read them are computed.
# 0 keeps everything. PostgreSQL only: SQLite's one table has no months to drop.
ACTIVITY_RETENTION_MONTHS = envint("ACTIVITY_RETENTION_MONTHS", 0, minimum=0)
if ACTIVITY_RETENTION_MONTHS and DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "ACTIVITY_RETENTION_MONTHS needs PostgreSQL (monthly partitions of the activity table); unset it for SQLite"
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Login throttling (django-axes, AccessAttempt rows in the database, so every web process agrees):
# after LOGIN_FAILURE_LIMIT wrong passwords for one account, or from one address, that account or
# address is locked for LOGIN_LOCKOUT_MINUTES after its last failure, on /login/ and the admin
# alike. A success does not wipe the count (it would let anyone with an account clear an address).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_LOCKOUT_CALLABLE = "crmseg_site.access.locked_out"
# Behind N reverse proxies the client's address is the N-th from the right in X-Forwarded-For.
LOGIN_PROXY_COUNT = envint("LOGIN_PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "crmseg_site.access.client_address"
AXES_VERBOSE = False  # no banner on every command; lock-outs are still logged as warnings

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "var" / "static"))
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "var" / "media"))
MEDIA_URL = "media/"

# Email (owner notifications from automations).
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = envint("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "crmseg@localhost")

# Production hardening: on unless DEBUG; each can be turned off behind a TLS-terminating proxy.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if envbool("SECURE_PROXY_SSL_HEADER", False) else None
X_FRAME_OPTIONS = "DENY"
# HSTS preloading commits the whole registrable domain in every browser's built-in list; that is
# the domain owner's decision (SECURE_HSTS_PRELOAD=1), not this app's, so its deploy check is off.
# models.W040: SQLite ignores the INCLUDE columns of Activity's covering (kind, occurred_at) index
# and keeps it as a plain one; PostgreSQL, where the index-only scans matter, builds it in full.
SILENCED_SYSTEM_CHECKS = ["security.W021", "models.W040"]

# Background work (django-q2). ORM broker by default; Redis when REDIS_URL is set.
REDIS_URL = os.environ.get("REDIS_URL", "")
Q_CLUSTER = {
    "name": os.environ.get("Q_CLUSTER_NAME", "crmseg"),
    "workers": envint("Q_WORKERS", 2, minimum=1),
    # A refresh must finish inside `timeout`; `retry` stays above it so a slow task
    # is never handed to a second worker while the first still runs it.
    "timeout": (Q_TIMEOUT := envint("Q_TIMEOUT", 900, minimum=1)),
    "retry": (Q_RETRY := envint("Q_RETRY", 1200, minimum=2)),
    "max_attempts": envint("Q_MAX_ATTEMPTS", 3, minimum=1),
    "catch_up": False,
    "save_limit": envint("Q_SAVE_LIMIT", 1000, minimum=0),
    "label": "Background tasks",
}
if Q_RETRY <= Q_TIMEOUT:
    raise ImproperlyConfigured(f"Q_RETRY={Q_RETRY} must be greater than Q_TIMEOUT={Q_TIMEOUT}")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://")
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# The cache holds API throttling counters: with Redis they are shared by every web process, as a
# per-key rate limit must be; the embedded default keeps them in the one process.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Runs that show (crmseg_site/liveness.py): a full segment refresh, an export run, a claimed batch
# of automation runs and the catch-up after writes record on their row when they started and which
# worker runs them, and renew a heartbeat every RUN_HEARTBEAT_SECONDS while they run. A run whose
# database session is gone (PostgreSQL), or whose heartbeat is older than RUN_DEAD_AFTER_SECONDS
# while its process is gone, is failed with the reason by a watchdog task (twice every
# RUN_WATCH_MINUTES) and retried after RUN_RETRY_BACKOFF_SECONDS, doubling up to
# RUN_RETRY_MAX_BACKOFF_SECONDS, RUN_RETRY_MAX_ATTEMPTS times in a row. A claimed automation batch
# whose heartbeat is older than AUTOMATION_CLAIM_LEASE_SECONDS is claimed again by another worker.
RUN_HEARTBEAT_SECONDS = envint("RUN_HEARTBEAT_SECONDS", 10, minimum=1)
RUN_DEAD_AFTER_SECONDS = envint("RUN_DEAD_AFTER_SECONDS", 30, minimum=2)
RUN_WATCH_MINUTES = envint("RUN_WATCH_MINUTES", 1, minimum=1)
RUN_RETRY_BACKOFF_SECONDS = envint("RUN_RETRY_BACKOFF_SECONDS", 60, minimum=0)
RUN_RETRY_MAX_BACKOFF_SECONDS = envint("RUN_RETRY_MAX_BACKOFF_SECONDS", 1800, minimum=0)
RUN_RETRY_MAX_ATTEMPTS = envint("RUN_RETRY_MAX_ATTEMPTS", 5, minimum=0)
AUTOMATION_CLAIM_LEASE_SECONDS = envint("AUTOMATION_CLAIM_LEASE_SECONDS", 60, minimum=2)

# Segment freshness: how often the scheduled sweep refreshes every segment (minutes).
SEGMENT_REFRESH_INTERVAL_MINUTES = envint("SEGMENT_REFRESH_INTERVAL_MINUTES", 60, minimum=1)
# Enqueue refresh_contacts after writes through the project's own write paths.
SEGMENT_REFRESH_ON_WRITE = envbool("SEGMENT_REFRESH_ON_WRITE", True)
# Contact metrics: nightly full recompute at this hour (project time zone), and a recompute of
# just the touched contacts after writes through the project's own write paths.
METRICS_NIGHTLY_HOUR = envint("METRICS_NIGHTLY_HOUR", 2, minimum=0)
METRICS_RECOMPUTE_ON_WRITE = envbool("METRICS_RECOMPUTE_ON_WRITE", True)
# Propensity models (predictions/): the daily scoring (and retraining of models due) at this hour,
# and re-scoring of contacts touched by writes.
PREDICTIONS_DAILY_HOUR = envint("PREDICTIONS_DAILY_HOUR", 3, minimum=0)
PREDICTIONS_SCORE_ON_WRITE = envbool("PREDICTIONS_SCORE_ON_WRITE", True)
# The daily scoring reads the behavioural measures of the nightly metrics run instead of recomputing
# them when that run is at most this many hours old and still current (predictions/stored_measures.py);
# 0: always recompute.
PREDICTIONS_STORED_MEASURES_MAX_HOURS = envint("PREDICTIONS_STORED_MEASURES_MAX_HOURS", 24, minimum=0)
# A training task may run this long; a version still "running" past it belongs to a worker that
# stopped, and no longer blocks the next training of its model.
PREDICTIONS_TRAIN_TIMEOUT_SECONDS = envint("PREDICTIONS_TRAIN_TIMEOUT_SECONDS", 3600, minimum=60)
# An incremental metrics run for more than this share of the contacts runs as a full run instead,
# which then costs less (contacts/metrics/compute.py; figures from bench_metrics --touched).
METRICS_INCREMENTAL_MAX_PERCENT = envint("METRICS_INCREMENTAL_MAX_PERCENT", 5, minimum=0)
# Catching up after writes (contacts/catch_up.py): the contacts writes changed wait as rows; one
# catch-up task at a time takes all of them (metrics and scores first, then one scoped refresh of
# their segments), then goes round for what arrived meanwhile at most once per CATCH_UP_INTERVAL_MS,
# for up to CATCH_UP_MAX_SECONDS, and ends (queueing the next if any wait). The running task holds a
# lease with its worker, session and heartbeat (the RUN_* settings above): a dead one is failed by the
# watchdog, its contacts wait again, and it is retried with back-off. CATCH_UP_LEASE_SECONDS: a task
# silent this long (no heartbeat) whose process is not known alive is dead whatever its session says
# (a pooler's session outlives its worker), and a write queues another task beside one silent as long.
CATCH_UP_INTERVAL_MS = envint("CATCH_UP_INTERVAL_MS", 1000, minimum=0)
CATCH_UP_MAX_SECONDS = envint("CATCH_UP_MAX_SECONDS", 60, minimum=1)
CATCH_UP_LEASE_SECONDS = envint("CATCH_UP_LEASE_SECONDS", 120, minimum=2)
# Silences that mean death must outlast the heartbeat that breaks them.
for _name in ("RUN_DEAD_AFTER_SECONDS", "AUTOMATION_CLAIM_LEASE_SECONDS", "CATCH_UP_LEASE_SECONDS"):
    if globals()[_name] <= RUN_HEARTBEAT_SECONDS:
        raise ImproperlyConfigured(f"{_name} must be greater than RUN_HEARTBEAT_SECONDS={RUN_HEARTBEAT_SECONDS}")
# Segments re-read more changed contacts than this share of all contacts with a full refresh of
# every segment (segments.tasks.refresh_changed), which then costs less than the scoped one.
SEGMENT_SCOPED_MAX_PERCENT = envint("SEGMENT_SCOPED_MAX_PERCENT", 10, minimum=0)

# Segment governance (segments/governance/): the daily job's hour (project time zone) and the
# thresholds of its reminders and health flags.
GOVERNANCE_DAILY_HOUR = envint("GOVERNANCE_DAILY_HOUR", 6, minimum=0)
GOVERNANCE_REMIND_AHEAD_DAYS = envint("GOVERNANCE_REMIND_AHEAD_DAYS", 7, minimum=0)
GOVERNANCE_ESCALATE_AFTER_DAYS = envint("GOVERNANCE_ESCALATE_AFTER_DAYS", 14, minimum=1)
GOVERNANCE_EMPTY_DAYS = envint("GOVERNANCE_EMPTY_DAYS", 30, minimum=1)
GOVERNANCE_SWING_DAYS = envint("GOVERNANCE_SWING_DAYS", 7, minimum=1)
GOVERNANCE_SWING_PERCENT = envint("GOVERNANCE_SWING_PERCENT", 50, minimum=1)
GOVERNANCE_UNUSED_DAYS = envint("GOVERNANCE_UNUSED_DAYS", 90, minimum=1)
GOVERNANCE_FILL_PERCENT = envint("GOVERNANCE_FILL_PERCENT", 20, minimum=1)
GOVERNANCE_DUPLICATE_PERCENT = envint("GOVERNANCE_DUPLICATE_PERCENT", 90, minimum=1)
GOVERNANCE_PRIMARY_MIN = envint("GOVERNANCE_PRIMARY_MIN", 8, minimum=0)
GOVERNANCE_PRIMARY_MAX = envint("GOVERNANCE_PRIMARY_MAX", 12, minimum=1)
# Criteria coverage (segments/coverage.py): a criterion whose best field is filled for at least
# this share of contacts exists; below it, it needs enrichment.
COVERAGE_EXISTS_PERCENT = envint("COVERAGE_EXISTS_PERCENT", 80, minimum=1)
# List hygiene (contacts/hygiene.py): a contact known for longer than this with no engagement in
# it is inactive (the sunset policy).
HYGIENE_INACTIVE_DAYS = envint("HYGIENE_INACTIVE_DAYS", 365, minimum=1)
# A soft bounce (mailbox full, server busy) is passing; this many in the last this many days make
# the address unreachable until they age out. One hard bounce is enough.
HYGIENE_SOFT_BOUNCE_LIMIT = envint("HYGIENE_SOFT_BOUNCE_LIMIT", 3, minimum=1)
HYGIENE_SOFT_BOUNCE_DAYS = envint("HYGIENE_SOFT_BOUNCE_DAYS", 30, minimum=1)

# Activation (destinations and exports). Minimum audience sizes per destination kind; a
# destination may override its own. Meta and LinkedIn refuse smaller audiences themselves.
ACTIVATION_MIN_AUDIENCE_SIZE = {
    "csv": envint("ACTIVATION_MIN_AUDIENCE_CSV", 1, minimum=0),
    "google_customer_match": envint("ACTIVATION_MIN_AUDIENCE_GOOGLE", 100, minimum=0),
    "meta_custom_audience": envint("ACTIVATION_MIN_AUDIENCE_META", 100, minimum=0),
    "linkedin_matched_audience": envint("ACTIVATION_MIN_AUDIENCE_LINKEDIN", 300, minimum=0),
    "webhook": envint("ACTIVATION_MIN_AUDIENCE_WEBHOOK", 1, minimum=0),
    "direct_mail": envint("ACTIVATION_MIN_AUDIENCE_DIRECT_MAIL", 1, minimum=0),
}
# Rows fetched per round trip while streaming an export (bounded memory).
ACTIVATION_EXPORT_CHUNK_SIZE = envint("ACTIVATION_EXPORT_CHUNK_SIZE", 2000, minimum=1)
# Skipped contacts listed by name in a run's report (all of them are counted).
ACTIVATION_REPORT_MAX_ROWS = envint("ACTIVATION_REPORT_MAX_ROWS", 1000, minimum=0)
ACTIVATION_WEBHOOK_TIMEOUT_SECONDS = envint("ACTIVATION_WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
ACTIVATION_WEBHOOK_MAX_ATTEMPTS = envint("ACTIVATION_WEBHOOK_MAX_ATTEMPTS", 5, minimum=1)
ACTIVATION_WEBHOOK_BACKOFF_SECONDS = envint("ACTIVATION_WEBHOOK_BACKOFF_MS", 1000, minimum=0) / 1000
ACTIVATION_WEBHOOK_MAX_BACKOFF_SECONDS = envint("ACTIVATION_WEBHOOK_MAX_BACKOFF_MS", 60000, minimum=0) / 1000

# File imports (contacts/imports.py): uploads are kept under IMPORT_DIR with their error files;
# larger files are refused before anything is stored. Uploads stream to disk (file uploads are
# not held in memory past FILE_UPLOAD_MAX_MEMORY_SIZE, Django's default 2.5 MB).
IMPORT_DIR = Path(os.environ.get("IMPORT_DIR", BASE_DIR / "var" / "imports"))
IMPORT_MAX_BYTES = envint("IMPORT_MAX_BYTES", 1024 * 1024 * 1024, minimum=1024)

# Integration API (api/): JSON only, API keys first (a request without credentials gets 401),
# then the session for signed-in staff and sales users.
API_THROTTLE_RATE = os.environ.get("API_THROTTLE_RATE", "600/min")
if API_THROTTLE_RATE and not re.fullmatch(r"\d+/(s|sec|second|m|min|minute|h|hour|d|day)", API_THROTTLE_RATE):
    raise ImproperlyConfigured(f"API_THROTTLE_RATE={API_THROTTLE_RATE!r} is not a rate like 600/min (empty: off)")
# Largest request body read into memory. 10 MiB holds a 10,000-row bulk call at about 1 KB a row
# (a realistic 10,000-contact batch is 3.8 MB); larger bodies answer 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 10 * 1024 * 1024, minimum=1024)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "api.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# /api/schema/ and /api/docs/: open to everyone in development, else signed-in users and API keys.
API_DOCS_PUBLIC = envbool("API_DOCS_PUBLIC", DEBUG)
SPECTACULAR_SETTINGS = {
    "TITLE": "crmseg API",
    "DESCRIPTION": "Contacts, companies, activities, segments, activations and personalization. "
    "Send `Authorization: Bearer <api key>`. Every error is "
    '`{"error": {"code", "message", "field", "details"}}`.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "api.schema.tighten_components"],
    # A review's kind, a segment's kind and status appear in several components (reviews, policies, segments,
    # governance rows): one name each.
    "ENUM_NAME_OVERRIDES": {
        "ReviewKindEnum": "segments.models.ReviewKind",
        "SegmentKindEnum": "segments.models.SegmentKind",
        "SegmentStatusEnum": "segments.models.SegmentStatus",
        "ExperimentMetricEnum": "activation.experiment_models.Metric",
        "ExperimentArmEnum": "activation.experiment_models.Arm",
    },
    "SWAGGER_UI_DIST": "SIDECAR",  # served from drf-spectacular-sidecar's static files, no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
