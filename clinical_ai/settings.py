"""One settings module, driven by the environment.

Defaults run on one machine with no server: SQLite under ``var/`` and Celery's filesystem transport.
``DATABASE_URL`` and ``CELERY_BROKER_URL`` switch to PostgreSQL and Redis/RabbitMQ. Outside DEBUG there is
no default secret key and no default encryption key: start-up refuses (fail closed).
"""

from __future__ import annotations

import contextlib
import zoneinfo as _zoneinfo
from pathlib import Path

import dj_database_url
import django_stubs_ext

from clinical_ai.core.crypto import KeyRing, KeyRingError, generate_key_spec
from clinical_ai.core.env import (
    ConfigurationError,
    env_bool,
    env_int,
    env_int_map,
    env_list,
    env_secret,
    env_str,
)

# Lets the typed generics of django-stubs (ModelAdmin[Model], QuerySet[Model]) be used at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CLINICAL_AI_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", default=False)


def _dev_secret(name: str, make: str) -> str:
    """In DEBUG only: a per-checkout secret kept under var/ so restarts can read what they wrote."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / f"dev-{name}"
    if not path.exists():
        path.write_text(make, encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


SECRET_KEY = env_secret("SECRET_KEY")
_encryption_spec = env_secret("CLINICAL_AI_ENCRYPTION_KEYS")
if DEBUG:
    import secrets

    SECRET_KEY = SECRET_KEY or _dev_secret("secret-key", secrets.token_urlsafe(50))
    _encryption_spec = _encryption_spec or _dev_secret("encryption-keys", generate_key_spec("dev1"))
if not SECRET_KEY:
    raise ConfigurationError("SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off")
if not _encryption_spec:
    raise ConfigurationError(
        "CLINICAL_AI_ENCRYPTION_KEYS (or CLINICAL_AI_ENCRYPTION_KEYS_FILE) must be set when DEBUG is off; "
        "generate one with: python manage.py generate_keys"
    )
# De-identification keys. The pseudonym key (keyed-HMAC pseudonyms and per-patient date shifts) and the
# vault's public key are needed wherever de-identification runs; the vault's private key only where
# re-identification is allowed: the web app, never the workers.
PSEUDONYM_KEY = env_secret("CLINICAL_AI_PSEUDONYM_KEY")
VAULT_PUBLIC_KEY = env_secret("CLINICAL_AI_VAULT_PUBLIC_KEY")
VAULT_PRIVATE_KEY = env_secret("CLINICAL_AI_VAULT_PRIVATE_KEY")
if DEBUG:
    import secrets as _secrets

    from clinical_ai.vault.crypto import generate_vault_keys

    PSEUDONYM_KEY = PSEUDONYM_KEY or _dev_secret("pseudonym-key", _secrets.token_urlsafe(32))
    if not VAULT_PUBLIC_KEY:
        _vault_private, _vault_public = generate_vault_keys()
        VAULT_PRIVATE_KEY = _dev_secret("vault-private-key", _vault_private)
        VAULT_PUBLIC_KEY = _dev_secret("vault-public-key", _vault_public)
for _name, _value in (
    ("CLINICAL_AI_PSEUDONYM_KEY", PSEUDONYM_KEY),
    ("CLINICAL_AI_VAULT_PUBLIC_KEY", VAULT_PUBLIC_KEY),
):
    if not _value:
        raise ConfigurationError(f"{_name} (or {_name}_FILE) must be set when DEBUG is off")
if len(PSEUDONYM_KEY) < 32:
    raise ConfigurationError("CLINICAL_AI_PSEUDONYM_KEY must be at least 32 characters")

try:
    ENCRYPTION_KEYRING = KeyRing.parse(_encryption_spec)
except KeyRingError as exc:
    raise ConfigurationError(f"CLINICAL_AI_ENCRYPTION_KEYS: {exc}") from exc

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
# The public base URL of this service, e.g. https://cds.hospital.example; the SMART token endpoint's
# audience is derived from it. Empty: derived from each request.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "js_lib_htmx",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "clinical_ai.core",
    "clinical_ai.accounts",
    "clinical_ai.audit",
    "clinical_ai.intake",
    "clinical_ai.deid",
    "clinical_ai.inference",
    "clinical_ai.review",
    "clinical_ai.monitoring",
    "integrations.smart",
    "integrations.fhir",
    "integrations.cds_hooks",
    "integrations.bulk",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "clinical_ai.core.middleware.ContentSecurityPolicyMiddleware",
    "clinical_ai.core.middleware.RequestIdMiddleware",
    "clinical_ai.core.middleware.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # Idle and absolute time-outs per role: before anything else looks at who is signed in.
    "clinical_ai.accounts.sessions.SessionTimeoutMiddleware",
    # Sessions signed in by the hospital's identity provider: its groups re-read every OIDC_RECHECK_SECONDS.
    "clinical_ai.accounts.sso.middleware.SsoRecheckMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "clinical_ai.urls"
WSGI_APPLICATION = "clinical_ai.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

_default_sqlite = VAR_DIR / "clinical_ai.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{_default_sqlite}",
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
        # With persistent connections, test each one before a request reuses it: after a database restart
        # the first request gets a fresh connection instead of an error.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # IMMEDIATE transactions take the write lock at BEGIN, so the web process and the worker queue on the
    # lock instead of failing a read-then-write transaction with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# The time zone a new site (Organization) starts with; each site's own is set in the admin. Clinicians see
# patients' times in their site's zone. An IANA name, checked here: a typo fails at start-up.
SITE_TIME_ZONE = env_str("CLINICAL_AI_SITE_TIME_ZONE", "Europe/London")
try:
    _zoneinfo.ZoneInfo(SITE_TIME_ZONE)
except (_zoneinfo.ZoneInfoNotFoundError, ValueError) as _error:
    raise ConfigurationError(
        f"CLINICAL_AI_SITE_TIME_ZONE {SITE_TIME_ZONE!r} is not an IANA time zone"
    ) from _error

STATIC_URL = "static/"
# `manage.py collectstatic` fills it for production (served by WhiteNoise); DEBUG serves from the apps.
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
with contextlib.suppress(OSError):  # a read-only image: collectstatic (or the operator) made it already
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Security headers and cookies: strict outside DEBUG. TLS is terminated by the reverse proxy, which sets
# X-Forwarded-Proto.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# The session cookie's lifetime (default 8 hours, not Django's two weeks), renewed whenever the session is
# saved: with the time-outs below, every activity saves it, so they decide when a session ends.
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
# Idle and absolute time-outs per role, enforced by clinical_ai.accounts.sessions.SessionTimeoutMiddleware
# (the strictest of a person's roles applies; "default" is for accounts without a role). A ward PC is
# shared and left signed in: a clinician is signed out after 30 minutes without activity and at the end of
# a 12-hour shift; auditors and admins, whose pages show more and change more, sooner. The cookie's age is
# renewed with activity, so keep SESSION_COOKIE_AGE above every idle limit.
_SESSION_ROLES = ("clinician", "auditor", "admin", "default")
SESSION_IDLE_SECONDS = env_int_map(
    "CLINICAL_AI_SESSION_IDLE_SECONDS",
    {"clinician": 30 * 60, "auditor": 15 * 60, "admin": 15 * 60, "default": 15 * 60},
    keys=_SESSION_ROLES,
)
SESSION_ABSOLUTE_SECONDS = env_int_map(
    "CLINICAL_AI_SESSION_ABSOLUTE_SECONDS",
    {"clinician": 12 * 3600, "auditor": 8 * 3600, "admin": 4 * 3600, "default": 8 * 3600},
    keys=_SESSION_ROLES,
)
# Sent on HTML responses by clinical_ai.core.middleware.ContentSecurityPolicyMiddleware ("" sends none).
# Scripts only from our static files (htmx); the templates' styles are inline <style> blocks.
CONTENT_SECURITY_POLICY = env_str(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
)
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)

# --- FHIR intake limits -----------------------------------------------------------------------------------
FHIR_MAX_BODY_BYTES = env_int("FHIR_MAX_BODY_BYTES", 20 * 1024 * 1024)
FHIR_MAX_BUNDLE_ENTRIES = env_int("FHIR_MAX_BUNDLE_ENTRIES", 20_000)
FHIR_MAX_NESTING_DEPTH = env_int("FHIR_MAX_NESTING_DEPTH", 64)
# Django's own cap on request bodies; ours is checked first with a FHIR error, so keep Django's above it.
DATA_UPLOAD_MAX_MEMORY_SIZE = FHIR_MAX_BODY_BYTES + 1024 * 1024

# --- Audit -------------------------------------------------------------------------------------------------
# Events older than this are deleted by `manage.py audit_purge`. At least 183 days: the EU AI Act
# (Art. 19, 26(6)) requires logs of high-risk AI systems to be kept for six months or more.
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 183)
if AUDIT_RETENTION_DAYS < 183:
    raise ConfigurationError(
        "AUDIT_RETENTION_DAYS must be at least 183 days (six months, EU AI Act Art. 19/26(6))"
    )
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "/"

# Lockout after repeated wrong passwords (clinical_ai.accounts.lockout; counted in the database, so shared by
# every process). After LOGIN_MAX_FAILURES wrong sign-ins for one username within LOGIN_FAILURE_WINDOW_SECONDS,
# sign-in with that username is refused for LOGIN_LOCKOUT_SECONDS, even with the right password. The same per
# client address with LOGIN_IP_MAX_FAILURES (0: off; behind a reverse proxy REMOTE_ADDR is the proxy, so keep
# it off there). Wrong e-signature passwords at sign-off lock that user's signing the same way.
LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 900)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900)
LOGIN_IP_MAX_FAILURES = env_int("LOGIN_IP_MAX_FAILURES", 0)
SIGNATURE_MAX_FAILURES = env_int("SIGNATURE_MAX_FAILURES", 5)
SIGNATURE_FAILURE_WINDOW_SECONDS = env_int("SIGNATURE_FAILURE_WINDOW_SECONDS", 900)
SIGNATURE_LOCKOUT_SECONDS = env_int("SIGNATURE_LOCKOUT_SECONDS", 900)

# --- De-identification -----------------------------------------------------------------------------------
# The configuration the pipeline applies before models see anything: a shipped name or a path.
DEID_CONFIG = env_str("DEID_CONFIG", "inference")

# --- SMART Backend Services ------------------------------------------------------------------------------
SMART_ACCESS_TOKEN_LIFETIME_SECONDS = env_int("SMART_ACCESS_TOKEN_LIFETIME_SECONDS", 300)
# A client assertion may be valid for at most this long (SMART: no more than five minutes).
SMART_ASSERTION_MAX_LIFETIME_SECONDS = env_int("SMART_ASSERTION_MAX_LIFETIME_SECONDS", 300)
SMART_CLOCK_SKEW_SECONDS = env_int("SMART_CLOCK_SKEW_SECONDS", 60)
SMART_JWKS_CACHE_SECONDS = env_int("SMART_JWKS_CACHE_SECONDS", 300)
SMART_JWKS_FETCH_TIMEOUT_SECONDS = env_int("SMART_JWKS_FETCH_TIMEOUT_SECONDS", 5)

# --- Celery ------------------------------------------------------------------------------------------------
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        # Broadcast (pidbox) exchanges; kombu's default is a "control" folder in the working directory.
        "control_folder": str(_broker_dir / "control"),
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Longer than the hard time limit, so Redis does not hand a running task to a second worker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}

# Job rows in the database are the results; no result backend holds payloads.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_BROKER_CONNECTION_TIMEOUT = env_int("CELERY_BROKER_CONNECTION_TIMEOUT", 2)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing happens inside a request after commit: fail fast when the broker is down, the sweep re-sends.
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_TASK_DEFAULT_QUEUE = "deid"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Ingest jobs not picked up after this long are dispatched again by the sweep; a claim held longer than the
# lease (a worker that died) can be taken over.
INTAKE_REDISPATCH_AFTER_SECONDS = env_int("INTAKE_REDISPATCH_AFTER_SECONDS", 120)
INTAKE_CLAIM_LEASE_SECONDS = env_int("INTAKE_CLAIM_LEASE_SECONDS", CELERY_TASK_TIME_LIMIT + 30)
INTAKE_SWEEP_INTERVAL_SECONDS = env_int("INTAKE_SWEEP_INTERVAL_SECONDS", 30)
INTAKE_MAX_ATTEMPTS = env_int("INTAKE_MAX_ATTEMPTS", 5)
# A bulk batch fed by a file (manage.py ingest_ndjson) or an NDJSON POST that has received nothing for this
# long was abandoned by its sender (the command killed, the web process gone): the sweep cancels it, so its
# staged lines are dropped and the same lines sent again are taken. Pulled exports end their own batches.
INTAKE_BATCH_IDLE_SECONDS = env_int("INTAKE_BATCH_IDLE_SECONDS", 3600)
# Run by `celery beat` (or `worker --beat` on one machine); `manage.py intake_sweep` does the same from cron.
CELERY_BEAT_SCHEDULE = {
    "intake-sweep": {
        "task": "clinical_ai.intake.sweep",
        "schedule": float(INTAKE_SWEEP_INTERVAL_SECONDS),
        "options": {"expires": float(INTAKE_SWEEP_INTERVAL_SECONDS)},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Presidio logs every recognizer it loads at INFO; its warnings still come through.
        "presidio-analyzer": {"level": "WARNING"},
        "presidio-anonymizer": {"level": "WARNING"},
    },
}
# A queued message older than this is dropped by the worker; the sweep sends the job again.
INTAKE_TASK_EXPIRES_SECONDS = env_int("INTAKE_TASK_EXPIRES_SECONDS", 3600)

# Users with one of these roles must enrol a TOTP second factor (default: optional for everyone).
OTP_REQUIRED_ROLES = tuple(env_list("CLINICAL_AI_OTP_REQUIRED_ROLES"))
OTP_TOTP_ISSUER = "clinical-ai"

# Single sign-on with the hospital's OpenID Connect provider (Entra ID, Okta, Keycloak, ADFS...): off while
# CLINICAL_AI_OIDC_ISSUER is empty. The gateway is a confidential client (code flow with PKCE); roles and
# sites come from the groups claim through GroupRole rows (manage.py staff_group_role), re-read at every
# sign-in and every OIDC_RECHECK_SECONDS of a session. See docs/operations.md.
OIDC_ISSUER = env_str("CLINICAL_AI_OIDC_ISSUER").rstrip("/")
OIDC_CLIENT_ID = env_str("CLINICAL_AI_OIDC_CLIENT_ID")
OIDC_CLIENT_SECRET = env_secret("CLINICAL_AI_OIDC_CLIENT_SECRET")
OIDC_SCOPE = env_str("CLINICAL_AI_OIDC_SCOPE", "openid profile email groups")
OIDC_GROUPS_CLAIM = env_str("CLINICAL_AI_OIDC_GROUPS_CLAIM", "groups")
OIDC_USERNAME_CLAIM = env_str("CLINICAL_AI_OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_RECHECK_SECONDS = env_int("CLINICAL_AI_OIDC_RECHECK_SECONDS", 300)
# Hosts the provider's endpoints may be on besides the issuer's own (its discovery document names them).
OIDC_EXTRA_HOSTS = tuple(env_list("CLINICAL_AI_OIDC_EXTRA_HOSTS"))
# What the sign-in button says: "Sign in with <label>".
OIDC_PROVIDER_LABEL = env_str("CLINICAL_AI_OIDC_PROVIDER_LABEL", "your hospital login")
# Local passwords (break-glass admin accounts, the demo). Off: only single sign-on signs anyone in.
LOCAL_LOGIN_ENABLED = env_bool("CLINICAL_AI_LOCAL_LOGIN", True)

# Inference. Model manifests are read from the shipped fixtures/models and from each folder named in
# CLINICAL_AI_MODEL_DIRS (separated by ":"); see docs/models.md.
INFERENCE_MODEL_DIRS = [BASE_DIR / "fixtures" / "models"] + [
    Path(p) for p in env_str("CLINICAL_AI_MODEL_DIRS", "").split(":") if p.strip()
]
# A worker runs the runs of one job and model as one batch; the embedding batch size is the model's own.
INFERENCE_DEVICE = env_str("CLINICAL_AI_INFERENCE_DEVICE", "")  # "" picks cuda when present, else cpu
INFERENCE_MAX_INPUT_RESOURCES = env_int("CLINICAL_AI_INFERENCE_MAX_INPUT_RESOURCES", 5000)
INFERENCE_CLAIM_LEASE_SECONDS = env_int("INFERENCE_CLAIM_LEASE_SECONDS", CELERY_TASK_TIME_LIMIT + 30)
INFERENCE_REDISPATCH_AFTER_SECONDS = env_int("INFERENCE_REDISPATCH_AFTER_SECONDS", 120)
INFERENCE_MAX_ATTEMPTS = env_int("INFERENCE_MAX_ATTEMPTS", 5)
INFERENCE_TASK_EXPIRES_SECONDS = env_int("INFERENCE_TASK_EXPIRES_SECONDS", 3600)
CELERY_BEAT_SCHEDULE["inference-sweep"] = {
    "task": "clinical_ai.inference.sweep",
    "schedule": float(INTAKE_SWEEP_INTERVAL_SECONDS),
    "options": {"expires": float(INTAKE_SWEEP_INTERVAL_SECONDS)},
}

# Results pushed back to an EHR's FHIR server when a decision is signed (per EHR client: push_fhir_base_url).
FHIR_PUSH_PRIVATE_KEY = env_secret("CLINICAL_AI_FHIR_PUSH_PRIVATE_KEY")
FHIR_PUSH_KEY_ID = env_str("CLINICAL_AI_FHIR_PUSH_KEY_ID")
FHIR_PUSH_BEARER_TOKEN = env_secret("CLINICAL_AI_FHIR_PUSH_BEARER_TOKEN")
FHIR_PUSH_MAX_ATTEMPTS = env_int("CLINICAL_AI_FHIR_PUSH_MAX_ATTEMPTS", 8)
CELERY_BEAT_SCHEDULE["fhir-push-sweep"] = {
    "task": "integrations.fhir.push_sweep",
    "schedule": float(INTAKE_SWEEP_INTERVAL_SECONDS),
    "options": {"expires": float(INTAKE_SWEEP_INTERVAL_SECONDS)},
}

# Bulk Data pulls from registered EHR sources (integrations.bulk; docs/bulk-data.md). An export task runs at
# most BULK_TASK_BUDGET_SECONDS, then goes back to the bulk queue and resumes where its row says; a claim not
# renewed for BULK_EXPORT_LEASE_SECONDS (its worker died) is taken over after the sweep sends it again.
# Room is left under the soft time limit for one slow read (BULK_HTTP_TIMEOUT_SECONDS) and the finishing step.
BULK_TASK_BUDGET_SECONDS = env_int("BULK_TASK_BUDGET_SECONDS", max(30, CELERY_TASK_SOFT_TIME_LIMIT - 90))
BULK_EXPORT_LEASE_SECONDS = env_int("BULK_EXPORT_LEASE_SECONDS", 120)
BULK_EXPORT_REDISPATCH_AFTER_SECONDS = env_int("BULK_EXPORT_REDISPATCH_AFTER_SECONDS", 600)
BULK_EXPORT_TASK_EXPIRES_SECONDS = env_int("BULK_EXPORT_TASK_EXPIRES_SECONDS", 3600)
BULK_EXPORT_MAX_ATTEMPTS = env_int("BULK_EXPORT_MAX_ATTEMPTS", 200)
# One NDJSON file: streamed, never whole in memory; refused past this size or this long a download.
BULK_MAX_FILE_BYTES = env_int("BULK_MAX_FILE_BYTES", 2 * 1024**3)
BULK_MAX_LINE_BYTES = env_int("BULK_MAX_LINE_BYTES", 16 * 1024**2)
BULK_DOWNLOAD_SECONDS = env_int("BULK_DOWNLOAD_SECONDS", 3600)
BULK_HTTP_TIMEOUT_SECONDS = env_int("BULK_HTTP_TIMEOUT_SECONDS", 30)
# Give up waiting for the EHR to prepare the files after this long; never wait longer than
# BULK_RETRY_MAX_SECONDS between two polls or retries, whatever Retry-After says.
BULK_POLL_MAX_SECONDS = env_int("BULK_POLL_MAX_SECONDS", 6 * 3600)
BULK_RETRY_MAX_SECONDS = env_int("BULK_RETRY_MAX_SECONDS", 300)
# 429s, 5xx and time-outs in a row before an export fails with the reason.
BULK_MAX_TRANSIENT_RETRIES = env_int("BULK_MAX_TRANSIENT_RETRIES", 8)
# How often beat looks for sources due a scheduled pull (each source has its own interval in minutes).
BULK_SCHEDULE_INTERVAL_SECONDS = env_int("BULK_SCHEDULE_INTERVAL_SECONDS", 60)
CELERY_BEAT_SCHEDULE["bulk-schedule"] = {
    "task": "integrations.bulk.schedule",
    "schedule": float(BULK_SCHEDULE_INTERVAL_SECONDS),
    "options": {"expires": float(BULK_SCHEDULE_INTERVAL_SECONDS)},
}
CELERY_BEAT_SCHEDULE["bulk-sweep"] = {
    "task": "integrations.bulk.sweep",
    "schedule": float(INTAKE_SWEEP_INTERVAL_SECONDS),
    "options": {"expires": float(INTAKE_SWEEP_INTERVAL_SECONDS)},
}

# CDS Hooks 2.0 (integrations.cds_hooks; docs/cds-hooks.md). The EHR's JWT must name as ``aud`` the endpoint it
# calls under CDS_HOOKS_BASE_URL (default: PUBLIC_BASE_URL + "/cds-services", else derived from the request).
CDS_HOOKS_BASE_URL = env_str("CDS_HOOKS_BASE_URL").rstrip("/")
# How long a service call waits for models to run on new data before answering with what is ready.
CDS_HOOKS_MODEL_BUDGET_MS = env_int("CDS_HOOKS_MODEL_BUDGET_MS", 400)
CDS_HOOKS_JWT_MAX_LIFETIME_SECONDS = env_int("CDS_HOOKS_JWT_MAX_LIFETIME_SECONDS", 300)
CDS_HOOKS_CLOCK_SKEW_SECONDS = env_int("CDS_HOOKS_CLOCK_SKEW_SECONDS", 60)
CDS_HOOKS_JWKS_CACHE_SECONDS = env_int("CDS_HOOKS_JWKS_CACHE_SECONDS", 300)
CDS_HOOKS_JWKS_FETCH_TIMEOUT_SECONDS = env_int("CDS_HOOKS_JWKS_FETCH_TIMEOUT_SECONDS", 2)
CDS_HOOKS_FHIR_FETCH_TIMEOUT_SECONDS = env_int("CDS_HOOKS_FHIR_FETCH_TIMEOUT_SECONDS", 2)
# Paged reads from the fhirServer (Bundle.link next; docs/cds-hooks.md): pages and resources per search, and
# the time for all reads of one hook call together, prefetch and patient refresh (each request still within
# the timeout above).
CDS_FETCH_MAX_PAGES = env_int("CDS_FETCH_MAX_PAGES", 10)
CDS_FETCH_MAX_RESOURCES = env_int("CDS_FETCH_MAX_RESOURCES", 2000)
CDS_FETCH_MAX_SECONDS = env_int("CDS_FETCH_MAX_SECONDS", 4)
CDS_HOOKS_MAX_BODY_BYTES = env_int("CDS_HOOKS_MAX_BODY_BYTES", 5 * 1024 * 1024)
CDS_HOOKS_MAX_CARDS = env_int("CDS_HOOKS_MAX_CARDS", 10)
# Origins allowed to call from a browser (CORS); "*" for any: calls carry a JWT, never cookies.
CDS_HOOKS_CORS_ALLOWED_ORIGINS = env_list("CDS_HOOKS_CORS_ALLOWED_ORIGINS", ["*"])

# Post-market monitoring (clinical_ai.monitoring; docs/monitoring.md): input drift against a reference window
# fixed at enablement, and clinicians' decisions per version and subgroup, computed by a periodic job.
MONITORING_COMPUTE_INTERVAL_SECONDS = env_int("MONITORING_COMPUTE_INTERVAL_SECONDS", 3600)
MONITORING_REFERENCE_DAYS = env_int("MONITORING_REFERENCE_DAYS", 14)
MONITORING_WINDOW_DAYS = env_int("MONITORING_WINDOW_DAYS", 14)
MONITORING_MIN_RUNS = env_int("MONITORING_MIN_RUNS", 30)
MONITORING_PSI_WARNING = float(env_str("MONITORING_PSI_WARNING", "0.1"))
MONITORING_PSI_ALERT = float(env_str("MONITORING_PSI_ALERT", "0.25"))
MONITORING_OUTCOME_WINDOW_DAYS = env_int("MONITORING_OUTCOME_WINDOW_DAYS", 90)
MONITORING_OUTCOME_WEEKS = env_int("MONITORING_OUTCOME_WEEKS", 26)
MONITORING_SUBGROUP_MIN_DECIDED = env_int("MONITORING_SUBGROUP_MIN_DECIDED", 20)
MONITORING_SUBGROUP_ALPHA = float(env_str("MONITORING_SUBGROUP_ALPHA", "0.05"))
CELERY_BEAT_SCHEDULE["monitoring-compute"] = {
    "task": "clinical_ai.monitoring.compute",
    "schedule": float(MONITORING_COMPUTE_INTERVAL_SECONDS),
    "options": {"expires": float(MONITORING_COMPUTE_INTERVAL_SECONDS)},
}
