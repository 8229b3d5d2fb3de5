"""Settings for the runner control plane, read from environment variables only.

The defaults give the embedded setup: SQLite and a file-based Celery broker under
``var/``, and the bundled GitHub simulator. Production sets ``DATABASE_URL``,
``CELERY_BROKER_URL``, ``GITHUB_API_URL`` and credentials, ``SECRET_KEY`` and
``DEBUG=0``. A bad or missing value stops start-up with ``ImproperlyConfigured``
naming the variable.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from controlplane import broker
from controlplane.env import (
    envbool,
    envdatabase,
    envfloat,
    envint,
    envlist,
    envlogging,
    envsecret,
    envurl,
    envurllist,
)
from controlplane.names import Kind as NameKind
from controlplane.names import problem as github_name_problem

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.getenv("VAR_DIR", BASE_DIR / "var"))

DEBUG = envbool("DEBUG", True)

SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "embedded-development-key-not-for-production"  # noqa: S105

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")
SITE_URL = envurl("SITE_URL", "http://127.0.0.1:8000", schemes=("http", "https"))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "csp",
    "controlplane",
    "runners",
    "deploys",
    "rotations",
    "diagnostics",
    "inventory",
]

MIDDLEWARE = [
    # Answers runner heartbeats (the hottest path) before any other middleware runs.
    "runners.heartbeat.HeartbeatMiddleware",
    # First and last: request counts and latencies for /metrics cover every layer.
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "controlplane.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "controlplane.middleware.SessionLimitsMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

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
                "controlplane.context_processors.navigation",
                "controlplane.context_processors.background_jobs",
            ],
        },
    },
]

# Database -------------------------------------------------------------------

DATABASE_URL = os.getenv(
    "DATABASE_URL", f"sqlite:///{VAR_DIR / 'controlplane.sqlite3'}"
)
DATABASES = {"default": envdatabase("DATABASE_URL", DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Auth, sessions, security -----------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    # The admin role holds every model permission in the Django admin.
    "controlplane.roles.AdminRoleBackend",
]
# Throttles (controlplane.throttle). LOGIN_MAX_FAILURES_PER_ACCOUNT failed sign-ins
# for one username, or LOGIN_MAX_FAILURES_PER_ADDRESS from one client address, within
# LOGIN_FAILURE_WINDOW seconds lock that account or address for LOGIN_LOCKOUT_PERIOD
# seconds; TOKEN_MAX_FAILURES_PER_ADDRESS rejected API or heartbeat tokens (401s)
# from one address within TOKEN_FAILURE_WINDOW lock that address's wrong tokens out
# (429) for TOKEN_LOCKOUT_PERIOD.
LOGIN_MAX_FAILURES_PER_ACCOUNT = envint("LOGIN_MAX_FAILURES_PER_ACCOUNT", 5, minimum=1)
LOGIN_MAX_FAILURES_PER_ADDRESS = envint("LOGIN_MAX_FAILURES_PER_ADDRESS", 20, minimum=1)
LOGIN_FAILURE_WINDOW = envint("LOGIN_FAILURE_WINDOW", 15 * 60, minimum=1)
LOGIN_LOCKOUT_PERIOD = envint("LOGIN_LOCKOUT_PERIOD", 15 * 60, minimum=1)
TOKEN_MAX_FAILURES_PER_ADDRESS = envint("TOKEN_MAX_FAILURES_PER_ADDRESS", 30, minimum=1)
TOKEN_FAILURE_WINDOW = envint("TOKEN_FAILURE_WINDOW", 10 * 60, minimum=1)
TOKEN_LOCKOUT_PERIOD = envint("TOKEN_LOCKOUT_PERIOD", 15 * 60, minimum=1)
# How many reverse proxies in front of the app append to X-Forwarded-For. 0: the
# client's address is REMOTE_ADDR (a client can write any X-Forwarded-For it likes);
# N: the Nth address from the end of X-Forwarded-For, the one the outermost trusted
# proxy saw connect.
TRUSTED_PROXY_HOPS = envint("TRUSTED_PROXY_HOPS", 0)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# A session lives at most 12 hours and ends after 30 idle minutes
# (SessionLimitsMiddleware enforces both; the cookie age is the outer bound).
SESSION_COOKIE_AGE = 12 * 60 * 60
SESSION_IDLE_TIMEOUT = envint("SESSION_IDLE_TIMEOUT", 30 * 60, minimum=60)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
    # Behind a TLS-terminating proxy, which sets X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # /healthz, /readyz, /metrics and /sd/exporters: plain HTTP inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^(metrics|sd/exporters)$"]

# Content-Security-Policy (django-csp): every script, style, font and image is
# vendored and served by the app itself, so nothing else may load, run or frame it.
# No 'unsafe-inline': pages carry no inline scripts or style attributes (computed
# widths are set from data- attributes by static/js/app.js).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Internationalisation and time ------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Static files -------------------------------------------------------------------

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.getenv("STATIC_ROOT", BASE_DIR / "staticfiles"))
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

# REST API ---------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # knox tokens, with rejected tokens throttled per client address.
        "controlplane.throttle.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Default deny: every view names the role it needs; one that forgets gets admin-only.
    "DEFAULT_PERMISSION_CLASSES": ["controlplane.permissions.IsAdmin"],
    # DRF's defaults, with JSON refused (400) when nested too deep to parse safely.
    "DEFAULT_PARSER_CLASSES": [
        "controlplane.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "controlplane.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "controlplane.filters.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "controlplane.api.exception_handler",
}
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=envint("API_TOKEN_TTL_DAYS", 90, minimum=1)),
    "AUTO_REFRESH": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Runner control plane API",
    "DESCRIPTION": (
        "Self-hosted GitHub Actions runners: fleet health, production deploys with "
        "failover, and secrets rotation. Authenticate with `Authorization: Token <token>`."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["controlplane.permissions.IsViewer"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The API speaks JSON; form bodies are still parsed for old clients but not
    # offered, so generated clients and the schema tests use JSON.
    "PARSER_WHITELIST": ["controlplane.parsers.JSONParser"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        # Documents the 400/401/403/404 every endpoint can answer.
        "controlplane.api.add_error_responses",
    ],
    # Enums used by several fields: one component each, named after the choices.
    "ENUM_NAME_OVERRIDES": {
        "RunnerStateEnum": "runners.models.State",
        "RunnerReasonEnum": "runners.models.Reason",
        "DeployRunStateEnum": "deploys.models.DeployRun.State",
        "DeployRunReasonEnum": "deploys.models.DeployRun.Reason",
        "DeployAttemptStateEnum": "deploys.models.DeployAttempt.State",
        "SignalPolicyEnum": "runners.eligibility.SignalPolicy",
    },
}

# Celery -------------------------------------------------------------------------------

CELERY_BROKER_URL = envurl(
    "CELERY_BROKER_URL",
    "safefs://",
    schemes=("safefs", "filesystem", "redis", "rediss", "amqp", "amqps", "memory"),
)
if CELERY_BROKER_URL in {"safefs:", "filesystem:", "memory:"}:
    # envurl drops trailing slashes; kombu reads a bare "safefs:" as an AMQP host.
    CELERY_BROKER_URL += "//"
if CELERY_BROKER_URL.startswith(broker.SCHEMES):
    # controlplane.broker: kombu's filesystem transport made safe, under var/broker/.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = broker.embedded_options(
        VAR_DIR / "broker"
    )
else:
    # A message not acknowledged within the visibility timeout is delivered again.
    # It must exceed the longest task (hard limit below) plus the longest countdown
    # we schedule, or a slow task would run twice; one hour leaves a wide margin
    # while a lost message still comes back the same hour (the reconciler covers
    # the gap anyway).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    # Several control planes (or test runs) may share one Redis: each one's queues,
    # unacked sets and broadcast channels then live under its own prefix.
    if _broker_prefix := os.getenv("CELERY_BROKER_KEY_PREFIX", "").strip():
        CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = _broker_prefix
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 120
CELERY_TASK_TIME_LIMIT = 180
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "health"
CELERY_TASK_ROUTES = {"deploys.tasks.*": {"queue": "deploys"}}
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Every beat process runs; the one holding the "beat" lease sends the periodic tasks,
# the others stand by and take over when it lapses (controlplane/beat.py).
CELERY_BEAT_SCHEDULER = "controlplane.beat:LeaderScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
# How long the leading beat's lease lasts without renewal. It renews on every tick (at
# least every 5 s) and a standby tries every 5 s, so a dead leader is replaced within
# BEAT_LEASE_SECONDS + 5 s.
BEAT_LEASE_SECONDS = envint("BEAT_LEASE_SECONDS", 15, minimum=10)

# GitHub ---------------------------------------------------------------------------------

GITHUB_SIMULATOR_URL = "http://127.0.0.1:9100"
GITHUB_API_URL = envurl(
    "GITHUB_API_URL", GITHUB_SIMULATOR_URL, schemes=("http", "https")
)
GITHUB_TOKEN = envsecret("GITHUB_TOKEN")
GITHUB_APP_ID = os.getenv("GITHUB_APP_ID", "")
GITHUB_APP_INSTALLATION_ID = os.getenv("GITHUB_APP_INSTALLATION_ID", "")
GITHUB_APP_PRIVATE_KEY = envsecret("GITHUB_APP_PRIVATE_KEY")
if GITHUB_APP_ID or GITHUB_APP_INSTALLATION_ID or GITHUB_APP_PRIVATE_KEY:
    for _name, _value in (
        ("GITHUB_APP_ID", GITHUB_APP_ID),
        ("GITHUB_APP_INSTALLATION_ID", GITHUB_APP_INSTALLATION_ID),
        ("GITHUB_APP_PRIVATE_KEY_FILE", GITHUB_APP_PRIVATE_KEY),
    ):
        if not _value:
            raise ImproperlyConfigured(f"{_name} must be set to use GitHub App auth")
    for _name, _value in (
        ("GITHUB_APP_ID", GITHUB_APP_ID),
        ("GITHUB_APP_INSTALLATION_ID", GITHUB_APP_INSTALLATION_ID),
    ):
        if not _value.isdigit():
            raise ImproperlyConfigured(f"{_name} must be a number, got {_value!r}")
    if "PRIVATE KEY" not in GITHUB_APP_PRIVATE_KEY:
        raise ImproperlyConfigured(
            "GITHUB_APP_PRIVATE_KEY_FILE does not hold a PEM key"
        )
elif not GITHUB_TOKEN:
    if GITHUB_API_URL != GITHUB_SIMULATOR_URL:
        raise ImproperlyConfigured(
            "GITHUB_TOKEN (or GITHUB_APP_ID, GITHUB_APP_INSTALLATION_ID and "
            "GITHUB_APP_PRIVATE_KEY_FILE) must be set when GITHUB_API_URL is not the "
            "bundled simulator"
        )
    GITHUB_TOKEN = "githubsim-token"  # noqa: S105 - the simulator accepts any token

GITHUB_REPOSITORY = os.getenv("GITHUB_REPOSITORY", "acme/deploy")
if _name_problem := github_name_problem(NameKind.REPOSITORY, GITHUB_REPOSITORY):
    raise ImproperlyConfigured(f"GITHUB_REPOSITORY: {_name_problem}")
# Set to list runners at organization scope instead of the repository's.
GITHUB_ORGANIZATION = os.getenv("GITHUB_ORGANIZATION", "")
if GITHUB_ORGANIZATION and (
    _name_problem := github_name_problem(NameKind.ORGANIZATION, GITHUB_ORGANIZATION)
):
    raise ImproperlyConfigured(f"GITHUB_ORGANIZATION: {_name_problem}")
GITHUB_WEBHOOK_SECRET = envsecret("GITHUB_WEBHOOK_SECRET")
if not GITHUB_WEBHOOK_SECRET:
    if not DEBUG:
        raise ImproperlyConfigured(
            "GITHUB_WEBHOOK_SECRET must be set when DEBUG is off"
        )
    GITHUB_WEBHOOK_SECRET = "embedded-webhook-secret"  # noqa: S105
GITHUB_TIMEOUT = envfloat("GITHUB_TIMEOUT", 10.0, minimum=0.1)
GITHUB_MAX_RETRIES = envint("GITHUB_MAX_RETRIES", 4)
# Longest a single call may sleep for a rate limit before giving up and failing.
GITHUB_MAX_RATE_LIMIT_WAIT = envfloat("GITHUB_MAX_RATE_LIMIT_WAIT", 900.0)

# Deploys ---------------------------------------------------------------------------------

# Seconds between looks at a deploy in flight (GitHub polled as the fallback for
# missing webhooks; the reconciler beat runs every 2 s to honour it).
DEPLOY_POLL_INTERVAL = envfloat("DEPLOY_POLL_INTERVAL", 2.0, minimum=0.1)
# While webhooks for a run arrive (one within DEPLOY_WEBHOOK_QUIET_AFTER s), GitHub
# is polled DEPLOY_POLL_SLOWDOWN times less often; webhooks advance the deploy.
DEPLOY_POLL_SLOWDOWN = envfloat("DEPLOY_POLL_SLOWDOWN", 4.0, minimum=1.0)
DEPLOY_WEBHOOK_QUIET_AFTER = envfloat("DEPLOY_WEBHOOK_QUIET_AFTER", 120.0)
# Seconds a cancelled run may ignore the cancel before it is force-cancelled.
DEPLOY_FORCE_CANCEL_AFTER = envfloat("DEPLOY_FORCE_CANCEL_AFTER", 5.0)
# Seconds to keep looking for a dispatched run by its correlation token before the
# dispatch counts as never received (then a new attempt is made).
DEPLOY_DISPATCH_LOOKUP_GRACE = envfloat("DEPLOY_DISPATCH_LOOKUP_GRACE", 60.0)
# Seconds the reconciler leaves a run to the worker it enqueued before trying again.
DEPLOY_RECONCILE_LEASE = envfloat("DEPLOY_RECONCILE_LEASE", 30.0, minimum=1.0)

# Runner health ------------------------------------------------------------------------------

# Heartbeat every 10 s, stale after 18, swept every 5, 2 bad observations in a row: a dead
# host is unhealthy <= 18 + 2 x 5 = 28 s after its last heartbeat; one missed heartbeat is
# stale 2 s only, never seen by two sweeps. A runner holding a deploy beats every 2 s,
# stale after 6, checked every 1 s: unhealthy <= 6 + 2 x 1 = 8 s (runners.deploying).
HEARTBEAT_INTERVAL = envint("HEARTBEAT_INTERVAL", 10, minimum=1)
HEARTBEAT_STALE_AFTER = envint("HEARTBEAT_STALE_AFTER", 18, minimum=1)
HEALTH_SWEEP_INTERVAL = envint("HEALTH_SWEEP_INTERVAL", 5, minimum=1)
HEALTH_FALL_AFTER = envint("HEALTH_FALL_AFTER", 2, minimum=1)
HEALTH_RISE_AFTER = envint("HEALTH_RISE_AFTER", 3, minimum=1)
HEALTH_RETENTION_DAYS = envint("HEALTH_RETENTION_DAYS", 14, minimum=1)
HEARTBEAT_DEPLOY_INTERVAL = envint("HEARTBEAT_DEPLOY_INTERVAL", 2, minimum=1)
HEARTBEAT_DEPLOY_STALE_AFTER = envint("HEARTBEAT_DEPLOY_STALE_AFTER", 6, minimum=1)
HEALTH_DEPLOY_CHECK_INTERVAL = envint("HEALTH_DEPLOY_CHECK_INTERVAL", 1, minimum=1)
# A GitHub status or exporter reading older than this counts as no reading at all.
GITHUB_STATUS_STALE_AFTER = envint("GITHUB_STATUS_STALE_AFTER", 900, minimum=1)
EXPORTER_STALE_AFTER = envint("EXPORTER_STALE_AFTER", 180, minimum=1)
DISK_FREE_MIN_PERCENT = envfloat("DISK_FREE_MIN_PERCENT", 10.0)
LOAD_PER_CPU_MAX = envfloat("LOAD_PER_CPU_MAX", 2.0)

# Runner registry sync and exporter probe ---------------------------------------------

# Share of the token's hourly GitHub budget the runner sync may spend in steady state
# (its interval grows with the number of pages); never more often than the floor.
GITHUB_BUDGET_SHARE = envfloat("GITHUB_BUDGET_SHARE", 0.2, minimum=0.001, maximum=1)
RUNNER_SYNC_MIN_INTERVAL = envint("RUNNER_SYNC_MIN_INTERVAL", 15, minimum=1)
# Where each runner's Prometheus exporter answers, "{name}" standing for the runner's
# name (e.g. http://{name}:9100/metrics); set at sync time for runners with no URL
# of their own (an admin can set one per runner). Empty: no exporter probing.
RUNNER_EXPORTER_URL_TEMPLATE = os.getenv(
    "RUNNER_EXPORTER_URL_TEMPLATE",
    f"{GITHUB_SIMULATOR_URL}/_sim/exporter/{{name}}/metrics"
    if GITHUB_API_URL == GITHUB_SIMULATOR_URL
    else "",
)
if RUNNER_EXPORTER_URL_TEMPLATE and "{name}" not in RUNNER_EXPORTER_URL_TEMPLATE:
    raise ImproperlyConfigured(
        "RUNNER_EXPORTER_URL_TEMPLATE must contain {name}, got "
        f"{RUNNER_EXPORTER_URL_TEMPLATE!r}"
    )
EXPORTER_PROBE_INTERVAL = envint("EXPORTER_PROBE_INTERVAL", 60, minimum=5)
EXPORTER_PROBE_TIMEOUT = envfloat("EXPORTER_PROBE_TIMEOUT", 2.0, minimum=0.1)
EXPORTER_PROBE_CONCURRENCY = envint("EXPORTER_PROBE_CONCURRENCY", 32, minimum=1)

# Notifications ---------------------------------------------------------------------------
# Comma-separated webhook URLs: generic JSON receivers and Slack-compatible incoming
# webhooks. They carry credentials (a Slack hook's path is its token), so they are
# read like secrets (NAME or NAME_FILE) and never stored or logged.
NOTIFY_WEBHOOK_URLS = envurllist("NOTIFY_WEBHOOK_URLS")
NOTIFY_SLACK_WEBHOOK_URLS = envurllist("NOTIFY_SLACK_WEBHOOK_URLS")
NOTIFY_TIMEOUT = envfloat("NOTIFY_TIMEOUT", 5.0, minimum=0.1)
NOTIFY_MAX_ATTEMPTS = envint("NOTIFY_MAX_ATTEMPTS", 8, minimum=1)
# Delay before the second attempt; each further one waits twice as long (capped).
NOTIFY_RETRY_BASE = envfloat("NOTIFY_RETRY_BASE", 10.0, minimum=0.0)
NOTIFY_RETRY_MAX = envfloat("NOTIFY_RETRY_MAX", 3600.0, minimum=1.0)
# Events younger than this are left for the next scan, so a transaction that
# committed out of id order is never skipped by the high-water mark.
NOTIFY_SCAN_GRACE = envfloat("NOTIFY_SCAN_GRACE", 10.0, minimum=0.0)
# More runner transitions of one kind than this in one scan (a network blip, a
# datacenter down) are sent as one summary instead of a message per runner.
NOTIFY_RUNNER_STORM = envint("NOTIFY_RUNNER_STORM", 5, minimum=1)
NOTIFY_RETENTION_DAYS = envint("NOTIFY_RETENTION_DAYS", 30, minimum=1)
# Idempotency-Key records: a retry within this window replays the first request.
IDEMPOTENCY_KEY_RETENTION_HOURS = envint(
    "IDEMPOTENCY_KEY_RETENTION_HOURS", 7 * 24, minimum=24
)

# Webhook deliveries ------------------------------------------------------------------------
# Stored deliveries (the Webhooks page, the outcome metric, the redelivery check) are
# kept this long; more than GitHub's 3-day redelivery window, so a redelivery is never
# mistaken for an event we never saw.
WEBHOOK_RETENTION_DAYS = envint("WEBHOOK_RETENTION_DAYS", 7, minimum=4)
# The GitHub webhook whose delivery log is checked for missed deliveries: by id, or
# (0) found among the hooks by its URL, SITE_URL + /github/webhook. Its scope is the
# organization's when GITHUB_ORGANIZATION is set, else the repository's.
GITHUB_WEBHOOK_HOOK_ID = envint("GITHUB_WEBHOOK_HOOK_ID", 0)
GITHUB_WEBHOOK_SCOPE = os.getenv(
    "GITHUB_WEBHOOK_SCOPE", "organization" if GITHUB_ORGANIZATION else "repository"
)
if GITHUB_WEBHOOK_SCOPE not in ("repository", "organization"):
    raise ImproperlyConfigured(
        "GITHUB_WEBHOOK_SCOPE must be repository or organization, got "
        f"{GITHUB_WEBHOOK_SCOPE!r}"
    )
if GITHUB_WEBHOOK_SCOPE == "organization" and not GITHUB_ORGANIZATION:
    raise ImproperlyConfigured(
        "GITHUB_WEBHOOK_SCOPE=organization needs GITHUB_ORGANIZATION"
    )
# GitHub API requests one recovery pass (every 5 minutes) may make: delivery log pages
# and redeliveries. GitHub allows about 500 content-creating requests an hour
# (secondary limit), which 50 per pass stays near while a backlog lasts.
WEBHOOK_RECOVERY_MAX_REQUESTS = envint("WEBHOOK_RECOVERY_MAX_REQUESTS", 50, minimum=2)
# Redeliveries asked for one event before giving up on it (it then shows in the log).
WEBHOOK_REDELIVERY_MAX_ATTEMPTS = envint(
    "WEBHOOK_REDELIVERY_MAX_ATTEMPTS", 3, minimum=1
)

# Logging ---------------------------------------------------------------------------------

LOG_LEVEL, LOGGING = envlogging("LOG_LEVEL")
