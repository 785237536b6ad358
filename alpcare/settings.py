"""alpcare settings: one module, configured from the environment, safe by default."""

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: bool = False) -> bool:
    """A yes/no switch; any other word stops the start-up, naming the variable: read as "no",
    "enabled" or "required" would switch a safeguard (HTTPS, staff two-factor) off unseen."""
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: say 1, true, yes or on; or 0, false, no or off")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = envbool("DJANGO_DEBUG", False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "").strip()
# Django's own measure of a usable key (check --deploy's W009, which gunicorn never runs).
if not DEBUG and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    raise RuntimeError(
        "DJANGO_SECRET_KEY must be set to a random value of at least 50 characters (or "
        "DJANGO_DEBUG=1 for local development)."
    )


def _development_key(path: Path) -> str:
    """Debug without DJANGO_SECRET_KEY: one key for every process of this checkout, made once
    and kept (git-ignored, owner-only). `make run` seeds in one process and serves in others:
    with a key per process, the recovery codes it printed (kept as digests keyed on the
    secret key) never worked in the server, nor a session after an autoreload."""
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    key = "dev-" + secrets.token_urlsafe(50)
    draft = path.with_name(f"{path.name}.{os.getpid()}")
    draft.write_text(key, encoding="ascii")
    draft.chmod(0o600)
    try:
        os.link(draft, path)  # never over a key another process made meanwhile
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
    finally:
        draft.unlink()
    return key


if not SECRET_KEY:
    SECRET_KEY = _development_key(BASE_DIR / ".dev-secret-key")


def _run_hosts() -> str:
    """In debug, the names `make run HOST=… PORT=…` is reached by (ALPCARE_RUN_ADDR): its own
    host, or any when it listens on every interface (0.0.0.0 or ::)."""
    host = os.environ.get("ALPCARE_RUN_ADDR", "").rpartition(":")[0].strip("[]")
    if host in ("0.0.0.0", "::"):
        return "*"
    return ",".join(dict.fromkeys(["127.0.0.1", "localhost", *([host] if host else [])]))


ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", _run_hosts() if DEBUG else "")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS")

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
    "crispy_forms",
    "crispy_bootstrap5",
    "simple_history",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",
    "ninja",
    "django_tasks",
    "django_tasks_db",
    "pathways",
]

MIDDLEWARE = [
    "pathways.middleware.ApiJsonErrorsMiddleware",
    # Outside every layer that builds a response of its own (the HTTPS redirect, a static file
    # whitenoise serves, the trailing-slash redirect, the end of a session, htmx's whole-page
    # redirect): each response carries these headers.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "pathways.middleware.NoStoreForAuthenticatedMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "pathways.middleware.HtmxRedirectMiddleware",
    "pathways.middleware.AdminYearLookupMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "pathways.middleware.SessionLifetimeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "pathways.twofactor.TwoFactorMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "alpcare.urls"
WSGI_APPLICATION = "alpcare.wsgi.application"

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
            ],
        },
    }
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=envint("DJANGO_DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the task worker and the scheduler share the file: take the write lock
    # when a transaction starts (no deadlock on upgrade), let readers run beside one writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Sessions: 30 minutes idle, 12 hours at most (enforced by SessionLifetimeMiddleware).
SESSION_IDLE_TIMEOUT = timedelta(minutes=envint("ALPCARE_SESSION_IDLE_MINUTES", 30))
SESSION_ABSOLUTE_TIMEOUT = timedelta(hours=envint("ALPCARE_SESSION_MAX_HOURS", 12))
SESSION_COOKIE_AGE = int(SESSION_ABSOLUTE_TIMEOUT.total_seconds())
# Messages ("Saved <name> (MRN …)") stay on the server with the session, never in a cookie
# (signed, not encrypted: readable from the browser's cookie jar; OWASP ASVS V8.2.2).
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True

# Login throttling (pathways.login_throttle): lock a (username, address) pair after 5 failures
# and an address after 20 failures across usernames (password spraying), for 15 minutes.
# Never per username alone, which would let anyone lock a named clinician out.
AXES_HANDLER = "pathways.login_throttle.AddressAndAccountHandler"
AXES_FAILURE_LIMIT = envint("ALPCARE_LOGIN_FAILURE_LIMIT", 5)
ALPCARE_LOGIN_ADDRESS_FAILURE_LIMIT = envint("ALPCARE_LOGIN_ADDRESS_FAILURE_LIMIT", 20)
AXES_COOLOFF_TIME = timedelta(minutes=envint("ALPCARE_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# History is for reading: data changes go through the clinical screens and the rule workflow.
SIMPLE_HISTORY_REVERT_DISABLED = True
SIMPLE_HISTORY_EDIT = False
# The client address (pathways.login_throttle.client_address): REMOTE_ADDR, or with N trusted
# reverse proxies in front the address the outermost one appended to X-Forwarded-For. Behind a
# load balancer, set it: otherwise every client shares the balancer's address.
ALPCARE_PROXY_COUNT = envint("ALPCARE_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "pathways.login_throttle.client_address"

# Two-factor (pathways.twofactor, django-otp): TOTP with recovery codes. Anyone enrolled is
# asked for a code after their password; staff (who can open the admin: rule editors,
# publishers, administrators) must enrol when this is on, which it is unless DEBUG.
ALPCARE_REQUIRE_STAFF_2FA = envbool("ALPCARE_REQUIRE_STAFF_2FA", not DEBUG)
OTP_TOTP_ISSUER = os.environ.get("ALPCARE_OTP_ISSUER", "alpcare")
# The admin never shows a device's secret (TOTP key, its QR code, unused recovery codes): an
# administrator only deletes a lost device; the codes are shown once, at enrolment.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# Browser features no page uses are switched off for every response.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "screen-wake-lock",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
}

# HTTPS: on unless DEBUG; behind a TLS-terminating proxy set DJANGO_SECURE_PROXY_SSL_HEADER=1.
HTTPS = envbool("DJANGO_HTTPS", not DEBUG)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and envbool("DJANGO_SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", 31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS and envbool("DJANGO_HSTS_PRELOAD", True)
if envbool("DJANGO_SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Load balancers probe the backends over plain HTTP: the health probes answer it, no redirect.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^healthz/queue$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# No inline script without a nonce; htmx's inline indicator style is disabled in base.html.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

LANGUAGE_CODE = "en-gb"
TIME_ZONE = os.environ.get("ALPCARE_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
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

# Background work: durable tasks in the database (django-tasks + django-tasks-db), run by
# `manage.py db_worker`; `manage.py scheduler` enqueues the daily re-assessment and re-queues
# the tasks of a worker that died (the database backend has no lease of its own).
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default"],
    }
}
# Patients re-assessed per task (each in its own transaction).
ALPCARE_REASSESS_CHUNK_SIZE = envint("ALPCARE_REASSESS_CHUNK_SIZE", 200)
# When the scheduler enqueues the daily re-assessment (local time, ALPCARE_TIME_ZONE). Midnight:
# until it re-dates them, follow-ups due on the assessment date (spec §5) read as overdue on
# the worklist, which shows the follow-ups stored at the last assessment.
ALPCARE_DAILY_REASSESS_AT = os.environ.get("ALPCARE_DAILY_REASSESS_AT", "00:00").strip()
if not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?", ALPCARE_DAILY_REASSESS_AT):
    # Refused at start-up: read at each scheduler pass, it failed every pass and no daily run
    # was ever started.
    raise ImproperlyConfigured(
        f"ALPCARE_DAILY_REASSESS_AT must be a local time HH:MM, not {ALPCARE_DAILY_REASSESS_AT!r}"
    )
# A running task writes a heartbeat this often; one silent for ALPCARE_TASK_STALE_SECONDS is
# taken to be lost with its worker and re-queued (at most ALPCARE_TASK_MAX_ATTEMPTS runs).
ALPCARE_TASK_HEARTBEAT_SECONDS = envint("ALPCARE_TASK_HEARTBEAT_SECONDS", 10)
ALPCARE_TASK_STALE_SECONDS = envint("ALPCARE_TASK_STALE_SECONDS", 120)
ALPCARE_TASK_MAX_ATTEMPTS = envint("ALPCARE_TASK_MAX_ATTEMPTS", 3)
# /healthz/queue answers 503 when the oldest waiting task has waited longer than this.
ALPCARE_QUEUE_MAX_WAIT_SECONDS = envint("ALPCARE_QUEUE_MAX_WAIT_SECONDS", 600)

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
}
