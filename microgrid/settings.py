"""Settings, read from environment variables.

The defaults are embedded (SQLite in var/, a Celery broker on the local
filesystem) so that a fresh machine runs the product with nothing else
installed. Production sets DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY and
DEBUG=false.
"""

from pathlib import Path

from celery.schedules import crontab

from microgrid.env import database_from_url, env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("MICROGRID_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("SECRET_KEY must be set when DEBUG is false")
    SECRET_KEY = "dev-only-insecure-key-never-used-in-production-0123456789abcdef"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "microgrid.common.apps.SupportAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "axes",
    "microgrid.common",
    "microgrid.topology",
    "microgrid.limits",
    "microgrid.telemetry",
    "microgrid.capabilities",
    "microgrid.envelopes",
    "balancing",
    "dispatch",
    "stations",
    "microgrid.fleet",
    "legacy_circuit",
    "simulator",
    # Tooling, not product: carries `manage.py bench` (benchmarks, fleet harness).
    "benchtools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "microgrid.common.middleware.RequestSizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "microgrid.common.access.AccessRefusalMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "microgrid.urls"
WSGI_APPLICATION = "microgrid.wsgi.application"

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
                "microgrid.common.context_processors.roles",
            ],
        },
    },
]

_database_url = env_str("DATABASE_URL")
if _database_url:
    DATABASES = {"default": database_from_url(_database_url)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(VAR_DIR / "microgrid.sqlite3")),
            # The web server and the Celery worker share one file: wait for
            # locks instead of failing, and take the write lock up front so
            # that two writers never deadlock on a lock upgrade.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env_str("SQLITE_TEST_PATH") or None

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/manage/microgrids/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Brute-force protection on the login form (django-axes).
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = 0.25  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_ENABLED = env_bool("AXES_ENABLED", True)
AXES_RESET_ON_SUCCESS = True  # a user's successful login clears their failures
AXES_LOCKOUT_TEMPLATE = "registration/locked.html"
# Behind N reverse proxies the client is the N-th X-Forwarded-For entry from the right.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "microgrid.common.client_ip.client_ip"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve straight from the apps in dev and tests

# Request bodies are capped: large topologies fit, abuse does not.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 5 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
DATA_UPLOAD_MAX_NUMBER_FIELDS = 20000

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "microgrid.common.auth.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["microgrid.common.roles.IsCanonicalReader"],
    # DRF's JSON parser and renderer through orjson (microgrid/common/jsonfast.py).
    "DEFAULT_PARSER_CLASSES": ["microgrid.common.jsonfast.FastJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["microgrid.common.jsonfast.FastJSONRenderer"],
    "EXCEPTION_HANDLER": "microgrid.common.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

SPECTACULAR_SETTINGS = {
    "TITLE": "Microgrid API",
    "DESCRIPTION": "Canonical microgrid topology, limits, envelopes, capabilities, cycles; "
    "the frozen legacy circuit endpoints; OSCP 2.0 inbound.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    # Like every API endpoint, the schema refuses anonymous callers (microgrid/common/schema.py).
    "SERVE_PERMISSIONS": ["microgrid.common.roles.AnyRole"],
    # Shared component schemas, security schemes, required bodies: microgrid/common/openapi.py.
    "POSTPROCESSING_HOOKS": [
        "microgrid.common.openapi.postprocess",
    ],
}

# Celery: a broker that needs no server unless CELERY_BROKER_URL says otherwise.
_broker_dir = VAR_DIR / "broker"
# (A host name, ignored by the filesystem transport, keeps kombu from warning on every connect.)
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost/")
if CELERY_BROKER_URL.startswith("filesystem"):
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 300,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A web request that enqueues work must not hang on a broker that is down:
# one quick retry, then the caller falls back (see balancing.tasks.enqueue_cycle).
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Workers keep their database connection between tasks, as the web server does between
# requests (CONN_MAX_AGE, health checks: see microgrid/celery.py); Celery's own fix-up
# then recycles it only every this many tasks.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {
    "balancing-enqueue-due": {
        "task": "balancing.enqueue_due_cycles",
        "schedule": 1.0,
        "options": {"expires": 1.0},
    },
    "idempotency-prune": {
        "task": "common.prune_idempotency",
        "schedule": 3600.0,
        "options": {"expires": 3000},
    },
    # Cycle aggregates per 15 minutes, then pruning of full cycles and old aggregates.
    "balancing-maintain-cycles": {
        "task": "balancing.maintain_cycles",
        "schedule": 60.0,
        "options": {"expires": 55},
    },
    "telemetry-prune": {
        "task": "telemetry.prune",
        "schedule": 3600.0,
        "options": {"expires": 3000},
    },
    # TOU schedule starts and ends, at the top of every minute (schedules are whole minutes).
    "limits-schedule-transitions": {
        "task": "limits.record_schedule_transitions",
        "schedule": crontab(minute="*"),
        "options": {"expires": 55},
    },
    # Operating envelopes that became ACTIVE or EXPIRED, OSCP peers gone offline.
    "envelopes-transitions": {
        "task": "envelopes.record_transitions",
        "schedule": 5.0,
        "options": {"expires": 5.0},
    },
    # OSCP outbound: heartbeats and measurements due, retries due, segment sets timed out.
    "envelopes-oscp-tick": {
        "task": "envelopes.oscp_tick",
        "schedule": 5.0,
        "options": {"expires": 5.0},
    },
}

# Setpoint deliveries (dispatch/): sends go to their own queue, so a slow receiver holds a
# dispatch worker slot, never a cycle (`celery worker -Q dispatch --pool threads`).
CELERY_TASK_ROUTES = {"dispatch.deliver": {"queue": "dispatch"}}
CELERY_BEAT_SCHEDULE["dispatch-sweep"] = {
    "task": "dispatch.sweep",
    "schedule": float(env_int("DISPATCH_SWEEP_S", 2)),
    "options": {"expires": 2.0},
}
DISPATCH_WEBHOOK_TIMEOUT_S = float(env_str("DISPATCH_WEBHOOK_TIMEOUT_S", "5"))
# A claim older than this is a worker that died mid-send: its deliveries are sent again.
# It must outlast a send (the webhook timeout), or a slow send would be sent twice.
DISPATCH_LEASE_S = max(env_int("DISPATCH_LEASE_S", 30), int(DISPATCH_WEBHOOK_TIMEOUT_S) + 2)
DISPATCH_RETRY_BASE_S = float(env_str("DISPATCH_RETRY_BASE_S", "1"))
DISPATCH_RETRY_MAX_S = float(env_str("DISPATCH_RETRY_MAX_S", "30"))

# The OCPP gateway (stations/): the heartbeat interval BootNotification answers, and how long
# a station may take to answer a call (SetChargingProfile) before it counts as FAILED.
OCPP_HEARTBEAT_S = env_int("OCPP_HEARTBEAT_S", 60)
OCPP_RESPONSE_TIMEOUT_S = env_int("OCPP_RESPONSE_TIMEOUT_S", 30)
# How often each gateway looks for due deliveries of the stations it holds.
OCPP_POLL_S = float(env_str("OCPP_POLL_S", "0.5"))
# How often a gateway looks for EVSEs of its stations whose level 0 failsafe profile is
# missing (failed, or for another failsafe power than the charger's now).
OCPP_FAILSAFE_CHECK_S = float(env_str("OCPP_FAILSAFE_CHECK_S", "30"))

# Scheduled cycles per Celery task (balancing.tasks.run_scheduled_cycles): one broker round
# trip and acknowledgement for this many cycles; 1 gives a task per microgrid.
BALANCING_SCHEDULE_BATCH = env_int("BALANCING_SCHEDULE_BATCH", 25)
# OSCP: the base URL this product's register gives the CP (else the URL the CP's register
# came in on) and how long one outbound request may take.
OSCP_FP_BASE_URL = env_str("OSCP_FP_BASE_URL", "")
OSCP_OUTBOUND_TIMEOUT_S = env_int("OSCP_OUTBOUND_TIMEOUT_S", 5)
TELEMETRY_RETENTION_HOURS = env_int("TELEMETRY_RETENTION_HOURS", 48)
# PostgreSQL: readings are partitioned by day; the hourly task creates this many days ahead.
TELEMETRY_PARTITION_DAYS_AHEAD = env_int("TELEMETRY_PARTITION_DAYS_AHEAD", 3)
# Full cycles (document and snapshot) are kept this long, then only their per-node 15-minute
# aggregates, which are kept CYCLE_AGGREGATE_RETENTION_DAYS; breaches, envelopes, limits and
# topology history stay. Each maintenance run (every minute) handles at most
# CYCLE_MAINTENANCE_BATCH rows per step (balancing/lifecycle.py).
CYCLE_RETENTION_DAYS = env_int("CYCLE_RETENTION_DAYS", 14)
CYCLE_AGGREGATE_RETENTION_DAYS = env_int("CYCLE_AGGREGATE_RETENTION_DAYS", 400)
# PostgreSQL: cycle blocks are partitioned by day; the maintenance creates this many days ahead.
CYCLE_PARTITION_DAYS_AHEAD = env_int("CYCLE_PARTITION_DAYS_AHEAD", 3)
CYCLE_MAINTENANCE_BATCH = env_int("CYCLE_MAINTENANCE_BATCH", 5000)
# Cycles moved into blocks per maintenance run (balancing/lifecycle.py `cycle_compact`): a
# fleet of 5,000 microgrids cycled every 15 s writes 20,000 a minute.
CYCLE_COMPACT_BATCH = env_int("CYCLE_COMPACT_BATCH", 20000)
# How far back compaction looks (hours before the last aggregated quarter hour): older rows
# (stored before this form of cycle id, or referenced) are not read again every run.
CYCLE_COMPACT_LOOKBACK_HOURS = env_int("CYCLE_COMPACT_LOOKBACK_HOURS", 24)
# Settled dispatch rows (deliveries, batches, attempts of cycles whose every row is final) are
# kept this long after their cycle, then pruned before compaction in the same maintenance run
# (dispatch/lifecycle.py): well inside the compaction lookback, so the freed cycles compact.
DISPATCH_RETENTION_HOURS = env_int("DISPATCH_RETENTION_HOURS", 6)
# Cycles whose dispatch rows one maintenance run prunes (as many as compaction moves).
DISPATCH_PRUNE_BATCH = env_int("DISPATCH_PRUNE_BATCH", 20000)
TELEMETRY_MAX_BATCH = env_int("TELEMETRY_MAX_BATCH", 5000)

# Production hardening; `manage.py check --deploy` is clean with DEBUG=false.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "axes": {"level": "WARNING"},
        # runserver's line per request; `make run` sets WARNING (only refusals and failures).
        "django.server": {"level": env_str("SERVER_LOG_LEVEL", "INFO")},
        # The ocpp package logs every frame at INFO: 2,000 stations make that the gateway's
        # main work. OCPP_LOG_LEVEL=INFO shows the frames when debugging a station.
        "ocpp": {"level": env_str("OCPP_LOG_LEVEL", "WARNING")},
    },
}

IDEMPOTENCY_TTL_HOURS = env_int("IDEMPOTENCY_TTL_HOURS", 24)
