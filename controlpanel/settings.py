"""Settings, all read from the environment (django-environ).

With no environment at all the panel runs locally: SQLite and a generated
secret key in the data directory, DEBUG off. With PRODUCTION=true every value
that has no safe default must be given, or start-up fails loudly.
"""

import ipaddress
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name, default):
    """A boolean that refuses anything but a clear yes or no."""
    raw = env.str(name, default=str(default)).strip().lower()
    if raw not in _TRUE | _FALSE:
        raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")
    return raw in _TRUE


def env_int(name, default, minimum=0):
    try:
        value = env.int(name, default=default)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}")
    return value


def env_float(name, default, minimum=0.0):
    try:
        value = env.float(name, default=default)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}")
    return value


def env_required(name):
    value = env.str(name, default="").strip()
    if not value:
        raise ImproperlyConfigured(f"{name} is required when PRODUCTION=true")
    return value


PRODUCTION = env_bool("PRODUCTION", False)
DEBUG = env_bool("DEBUG", False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DEBUG must be off when PRODUCTION=true")

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _local_secret_key():
    """Generated once and kept in the data directory, readable by us only."""
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


if PRODUCTION:
    SECRET_KEY = env_required("SECRET_KEY")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS is required when PRODUCTION=true")
    env_required("DATABASE_URL")
    env_required("REDIS_URL")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="") or _local_secret_key()
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Where the panel's pages are (scheme://host[:port]): the only origins whose pages may open
# the gateway's WebSockets. Default: CSRF_TRUSTED_ORIGINS and https:// on every ALLOWED_HOSTS
# name, and locally http:// on port 8000 (.ci/serve's) too.
_named_hosts = [host for host in ALLOWED_HOSTS if host not in ("*", "") and not host.startswith(".")]
PANEL_ORIGINS = env.list("PANEL_ORIGINS", default=[*CSRF_TRUSTED_ORIGINS, *(f"https://{host}" for host in _named_hosts),
                                                    *(() if PRODUCTION else (f"http://{host}:8000" for host in _named_hosts))])
if any("://" not in origin for origin in PANEL_ORIGINS):
    raise ImproperlyConfigured("PANEL_ORIGINS must be origins such as https://panel.example.org")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "accounts",
    "hosting",
    "hosting.benchmarks",
    "api",
    "rest_framework",
    "drf_spectacular",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "accounts.middleware.SessionTimeoutMiddleware",
    "accounts.middleware.LastSeenMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "controlpanel.error_pages.ErrorPageMiddleware",
]
CSRF_FAILURE_VIEW = "controlpanel.error_pages.csrf_failure"

ROOT_URLCONF = "controlpanel.urls"
WSGI_APPLICATION = "controlpanel.wsgi.application"

# Pages are Jinja2 templates (see controlpanel/jinja2.py); forms render with
# Django's Jinja2 form templates too.
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [BASE_DIR / "templates"],
        "OPTIONS": {
            "environment": "controlpanel.jinja2.environment",
            "context_processors": [
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "controlpanel.jinja2.csrf",
            ],
        },
    },
]
FORM_RENDERER = "django.forms.renderers.Jinja2"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The local run: several processes write at once. Writers take the lock at
    # the start of a transaction (no upgrade deadlock), wait for it instead of
    # failing, and readers never block them (WAL).
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    })
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis is the cache and the Celery broker. Without REDIS_URL (a local run)
# both live in files in the data directory, so web, worker and beat still
# share them with no server to install.
REDIS_URL = env.str("REDIS_URL", default="")
# A reply that never comes (a connection lost without a word) is an error retried on a new
# connection, never a process that waits forever.
REDIS_SOCKET_OPTIONS = {"socket_timeout": 30, "socket_connect_timeout": 10, "socket_keepalive": True, "retry_on_timeout": True}
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "OPTIONS": REDIS_SOCKET_OPTIONS}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(DATA_DIR / "cache")}}

# Accounts and sessions
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
# bcrypt-SHA256 first: no 72-byte truncation. Raw bcrypt stays readable for
# imported legacy hashes, which are upgraded at the next login.
PASSWORD_HASHERS = [
    "accounts.hashers.BCryptSHA256PasswordHasher",
    "accounts.hashers.BCryptPasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 12, minimum=60)  # the cookie; see the timeouts below
# Sessions are read from the cache (Redis) and written through to the database.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# A stored bcrypt hash costing more rounds than this never matches (each round doubles the work).
BCRYPT_MAX_COST = env_int("BCRYPT_MAX_COST", 12, minimum=4)
# Guessing is slowed down per account and client (IPv6: its /64), per account
# from any client (a browser that logged in to it before is exempt), and per
# client for sign-ups; each count lasts THROTTLE_WINDOW from its first attempt.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_ACCOUNT_FAILURE_LIMIT = env_int("LOGIN_ACCOUNT_FAILURE_LIMIT", 20, minimum=1)
LOGIN_CLIENT_FAILURE_LIMIT = env_int("LOGIN_CLIENT_FAILURE_LIMIT", 50, minimum=1)
SIGNUP_FAILURE_LIMIT = env_int("SIGNUP_FAILURE_LIMIT", 10, minimum=1)
THROTTLE_WINDOW = env_int("THROTTLE_WINDOW_SECONDS", 15 * 60, minimum=1)
KNOWN_BROWSER_DAYS = env_int("KNOWN_BROWSER_DAYS", 90, minimum=1)
# Password reset by email: a link for one use within PASSWORD_RESET_MINUTES, at most
# PASSWORD_RESET_LIMIT asked for per account (and three times that per client) in
# THROTTLE_WINDOW. EMAIL_URL is where mail goes: smtp://user:password@host:25,
# smtp+tls://…:587, smtp+ssl://…:465, or consolemail:// to print it. Without it the
# panel sends no email, and the page says to ask an administrator.
EMAIL_URL = env.str("EMAIL_URL", default="")
EMAIL_TIMEOUT_SECONDS = env_int("EMAIL_TIMEOUT", 30, minimum=1)


def _mailer(url):
    """Django's mailer for EMAIL_URL (which django-environ reads)."""
    config = env.email_url_config(url)
    if not config["EMAIL_BACKEND"].endswith(".smtp.EmailBackend"):
        return {"BACKEND": config["EMAIL_BACKEND"]}
    return {"BACKEND": config["EMAIL_BACKEND"], "OPTIONS": {
        "host": config["EMAIL_HOST"], "port": config["EMAIL_PORT"], "username": config.get("EMAIL_HOST_USER", ""),
        "password": config.get("EMAIL_HOST_PASSWORD", ""), "use_tls": config.get("EMAIL_USE_TLS", False),
        "use_ssl": config.get("EMAIL_USE_SSL", False), "timeout": EMAIL_TIMEOUT_SECONDS}}


if EMAIL_URL:  # else no mailer at all: nothing is sent
    MAILERS = {"default": _mailer(EMAIL_URL)}
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="controlpanel@localhost")
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_MINUTES", 30, minimum=1) * 60
PASSWORD_RESET_LIMIT = env_int("PASSWORD_RESET_LIMIT", 3, minimum=1)
# A session ends after this long without a request, and this long after login whatever happens.
SESSION_IDLE_TIMEOUT = env_int("SESSION_IDLE_TIMEOUT", 2 * 60 * 60, minimum=60)
SESSION_ABSOLUTE_TIMEOUT = env_int("SESSION_ABSOLUTE_TIMEOUT", 12 * 60 * 60, minimum=60)
REGISTRATION_CODE_TTL = timedelta(minutes=env_int("REGISTRATION_CODE_TTL_MINUTES", 30, minimum=1))
ACTIVITY_RETENTION_DAYS = env_int("ACTIVITY_RETENTION_DAYS", 365, minimum=1)
# How many reverse proxies in front of the panel append to X-Forwarded-For.
# 0: the client is REMOTE_ADDR and the header is ignored.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
LAST_SEEN_INTERVAL = timedelta(seconds=60)

# Hosting: virtual servers are Docker-in-Docker containers on a node.
DOCKER_HOST_URL = env.str("DOCKER_HOST_URL", default="unix:///var/run/docker.sock")
DOCKER_TIMEOUT = env_int("DOCKER_TIMEOUT", 30, minimum=1)
# The largest `docker save` archive a user may load into a server from the browser (through the gateway).
IMAGE_LOAD_MAX_MB = env_int("IMAGE_LOAD_MAX_MB", 2048, minimum=1)
# How long a server's daemon has to stop its containers before the engine kills it (docker.container_stop).
SERVER_STOP_SECONDS = env_int("SERVER_STOP_SECONDS", 30, minimum=1)
SERVER_IMAGE = env.str("SERVER_IMAGE", default="controlpanel/dind:local-5")
SERVER_CONTAINER_PREFIX = env.str("SERVER_CONTAINER_PREFIX", default="hosting-users-dind-")
SERVER_NETWORK = env.str("SERVER_NETWORK", default="controlpanel-users")
# The servers' network: each server has a fixed address in it, from its slot.
SERVER_NETWORK_SUBNET = env.str("SERVER_NETWORK_SUBNET", default="10.213.0.0/16")
try:
    _subnet = ipaddress.ip_network(SERVER_NETWORK_SUBNET)
except ValueError:
    raise ImproperlyConfigured("SERVER_NETWORK_SUBNET must be a network such as 10.213.0.0/16") from None
if _subnet.version != 4 or _subnet.num_addresses < 256:
    raise ImproperlyConfigured("SERVER_NETWORK_SUBNET must be an IPv4 network of /24 or larger")
# Host directory holding one folder per server with its inner Docker socket.
# A host path: the worker and the Docker host must see it at the same place.
SERVER_SOCKET_ROOT = Path(env.str("SERVER_SOCKET_ROOT", default=str(DATA_DIR / "servers")))
# rootless (the default: root inside a server is an unprivileged host uid) |
# privileged | capabilities (every capability but SYS_RESOURCE) | runtime:<name>
# (e.g. runtime:sysbox-runc). See SECURITY.md for what each exposes.
SERVER_ISOLATION = env.str("SERVER_ISOLATION", default="rootless")
if not (SERVER_ISOLATION in ("rootless", "privileged", "capabilities") or SERVER_ISOLATION.startswith("runtime:")):
    raise ImproperlyConfigured("SERVER_ISOLATION must be rootless, privileged, capabilities or runtime:<name>")
# Rootless: the root of the server in slot N is host uid SERVER_UID_BASE + N * 65536, and the
# 65,535 uids after it are its containers' users: no two servers share a uid.
SERVER_UID_BASE = env_int("SERVER_UID_BASE", 2**30, minimum=65536)
SERVER_KEEP_VOLUME_ON_DELETE = env_bool("SERVER_KEEP_VOLUME_ON_DELETE", False)
SERVER_DEFAULT_MEMORY_MB = env_int("SERVER_DEFAULT_MEMORY_MB", 1024, minimum=64)
SERVER_DEFAULT_CPUS = env_float("SERVER_DEFAULT_CPUS", 1.0, minimum=0.01)
SERVER_DEFAULT_PIDS = env_int("SERVER_DEFAULT_PIDS", 1024, minimum=32)
SERVER_QUOTA_DEFAULT = env_int("SERVER_QUOTA_DEFAULT", 3)
# Disks: each server's is an ext4 file system in a sparse file on its node, in
# SERVER_DISK_ROOT (a node path the worker and the engine see alike), at most
# SERVER_DEFAULT_DISK_MB unless an admin says otherwise; a user's servers together
# at most USER_DISK_QUOTA_MB (0: as many default disks as they may have servers;
# admins change it per user).
SERVER_DISK_ROOT = Path(env.str("SERVER_DISK_ROOT", default=str(DATA_DIR / "disks")))
SERVER_DEFAULT_DISK_MB = env_int("SERVER_DEFAULT_DISK_MB", 10 * 1024, minimum=256)
USER_DISK_QUOTA_MB = env_int("USER_DISK_QUOTA_MB", 0, minimum=0)
# An operation not finished after this many seconds is run again (its worker died).
SERVER_OPERATION_TIMEOUT = env_int("SERVER_OPERATION_TIMEOUT", 180, minimum=30)
# Moving a server to another node: how long both nodes' workers have to get ready for the copy.
SERVER_MOVE_READY_SECONDS = env_int("SERVER_MOVE_READY_SECONDS", 120, minimum=5)
# Compose apps: how long compose may take to read a file (inside the server,
# on its CPU), and to bring an app up, stop it or take it down.
APP_CHECK_SECONDS = env_int("APP_CHECK_SECONDS", 30, minimum=5)
APP_RUN_SECONDS = env_int("APP_RUN_SECONDS", 300, minimum=10)
PANEL_INSTANCE = env.str("PANEL_INSTANCE", default="controlpanel")
# The node this process sits on (its Docker engine at DOCKER_HOST_URL): "local", the
# panel's own host, unless a node's own worker (deploy/node) says otherwise.
NODE_NAME = env.str("NODE_NAME", default="local")
# The panel's certificates for other nodes' engines (hosting.backends.certificates): read by
# the worker and the gateway only, never the web tier.
NODE_CREDENTIALS_DIR = Path(env.str("NODE_CREDENTIALS_DIR", default=str(DATA_DIR / "node-credentials")))
# Where the nodes' workers reach the panel's PostgreSQL and Redis (host:port; the join
# script hands them these, with credentials of their own). Empty: where the panel does.
NODES_DATABASE_ADDRESS = env.str("NODES_DATABASE_ADDRESS", default="")
NODES_REDIS_ADDRESS = env.str("NODES_REDIS_ADDRESS", default="")

# The gateway: browser terminals into servers (manage.py gateway), reached at
# GATEWAY_URL (ws:// or wss://; empty: the page's own origin, a reverse proxy
# sending /ws/ to the gateway).
GATEWAY_BIND = env.str("GATEWAY_BIND", default="127.0.0.1:8001")
GATEWAY_URL = env.str("GATEWAY_URL", default="").rstrip("/")
if GATEWAY_URL and not GATEWAY_URL.startswith(("ws://", "wss://")):
    raise ImproperlyConfigured("GATEWAY_URL must start with ws:// or wss://")
GATEWAY_PING_SECONDS = env_float("GATEWAY_PING_SECONDS", 20.0, minimum=1)
GATEWAY_HANDSHAKE_SECONDS = env_float("GATEWAY_HANDSHAKE_SECONDS", 10.0, minimum=0.5)  # to send a request's headers
TERMINALS_PER_USER = env_int("TERMINALS_PER_USER", 5, minimum=1)
# Everything a user has open in the gateway at once: shells, SSH connections, commands, sftp, forwards, log streams.
SESSIONS_PER_USER = env_int("SESSIONS_PER_USER", 30, minimum=2)
TERMINAL_IDLE_SECONDS = env_int("TERMINAL_IDLE_SECONDS", 30 * 60, minimum=1)
TERMINAL_REATTACH_SECONDS = env_int("TERMINAL_REATTACH_SECONDS", 5 * 60, minimum=0)
TERMINAL_SCROLLBACK_BYTES = env_int("TERMINAL_SCROLLBACK_BYTES", 64 * 1024, minimum=0)
TERMINAL_CHECK_SECONDS = env_float("TERMINAL_CHECK_SECONDS", 2.0, minimum=0.1)
# The SSH gateway (in the gateway process): `ssh -p 2222 server<id>@<panel host>`, keys only.
SSH_BIND = env.str("SSH_BIND", default="0.0.0.0:2222")  # empty: no SSH gateway
SSH_HOST_KEY = Path(env.str("SSH_HOST_KEY", default=str(DATA_DIR / "ssh_host_ed25519_key")))  # made at the first start
SSH_PUBLIC_HOST = env.str("SSH_PUBLIC_HOST", default="")  # what users type; empty: the panel's own host name
SSH_PUBLIC_PORT = env_int("SSH_PUBLIC_PORT", int(SSH_BIND.rpartition(":")[2] or 2222) if SSH_BIND else 2222, minimum=1)
SSH_KEYS_PER_USER = env_int("SSH_KEYS_PER_USER", 20, minimum=1)
SSH_FAILURE_LIMIT = env_int("SSH_FAILURE_LIMIT", 10, minimum=1)  # refused keys per client (IPv6: /64) in THROTTLE_WINDOW_SECONDS

# Monitor: Celery beat polls every daemon; snapshots unseen this long are pruned.
MONITOR_INTERVAL = env_int("MONITOR_INTERVAL", 60, minimum=1)
MONITOR_CONCURRENCY = env_int("MONITOR_CONCURRENCY", 8, minimum=1)
MONITOR_DAEMON_TIMEOUT = env_float("MONITOR_DAEMON_TIMEOUT", 5.0, minimum=0.1)
MONITOR_STALE_AFTER = timedelta(seconds=env_int("MONITOR_STALE_AFTER", 300, minimum=1))
MONITOR_MAX_BODY_BYTES = env_int("MONITOR_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024)
MONITOR_MAX_CONTAINERS = env_int("MONITOR_MAX_CONTAINERS", 500, minimum=1)
MONITOR_LOCK_TIMEOUT = env_int("MONITOR_LOCK_TIMEOUT", 300, minimum=5)
# While someone looks at a server's page, its inner daemon is re-read at most this often.
SERVER_REFRESH_SECONDS = env_int("SERVER_REFRESH_SECONDS", 3, minimum=1)

# Domains, routed by the users' Caddy (configured through its admin API).
CADDY_ADMIN_URL = env.str("CADDY_ADMIN_URL", default="http://127.0.0.1:2019")
# The admin endpoint Caddy itself listens on (kept in every configuration we load).
CADDY_ADMIN_LISTEN = env.str("CADDY_ADMIN_LISTEN", default="127.0.0.1:2019")
CADDY_TIMEOUT = env_float("CADDY_TIMEOUT", 10.0, minimum=0.5)
CADDY_LISTEN_HOST = env.str("CADDY_LISTEN_HOST", default="")  # "" = every interface
CADDY_HTTP_PORT = env_int("CADDY_HTTP_PORT", 80, minimum=1)
CADDY_HTTPS_PORT = env_int("CADDY_HTTPS_PORT", 443, minimum=1)
# acme: real certificates (Let's Encrypt); internal: Caddy's own CA (tests, intranets)
CADDY_TLS_ISSUER = env.str("CADDY_TLS_ISSUER", default="acme")
if CADDY_TLS_ISSUER not in ("acme", "internal"):
    raise ImproperlyConfigured("CADDY_TLS_ISSUER must be acme or internal")
CADDY_ACME_EMAIL = env.str("CADDY_ACME_EMAIL", default="")
PROXY_DRIFT_INTERVAL = env_int("PROXY_DRIFT_INTERVAL", 60, minimum=5)
PLATFORM_DOMAIN = env.str("PLATFORM_DOMAIN", default="").strip().lower().rstrip(".")
# Names outside the platform domain: dns (its owner proves it with a TXT
# record) | approval (an admin approves each) | allowed (closed installations:
# anyone may route any name).
DOMAIN_OWNERSHIP = env.str("DOMAIN_OWNERSHIP", default="dns")
if DOMAIN_OWNERSHIP not in ("dns", "approval", "allowed"):
    raise ImproperlyConfigured("DOMAIN_OWNERSHIP must be dns, approval or allowed")
# A claim still waiting (for its TXT record or an admin) after this long expires.
DOMAIN_CLAIM_HOURS = env_int("DOMAIN_CLAIM_HOURS", 72, minimum=1)
DOMAIN_DNS_SERVERS = env.list("DOMAIN_DNS_SERVERS", default=[])  # ip or ip:port; empty: the system's
DOMAIN_DNS_TIMEOUT = env_float("DOMAIN_DNS_TIMEOUT", 5.0, minimum=0.1)
DOMAIN_CHECK_INTERVAL = env_int("DOMAIN_CHECK_INTERVAL", 60, minimum=10)  # seconds between TXT look-ups
DOMAINS_PER_SERVER = env_int("DOMAINS_PER_SERVER", 10, minimum=1)
# Cloudflare's published proxy ranges (https://www.cloudflare.com/ips/).
CLOUDFLARE_IP_RANGES = env.list("CLOUDFLARE_IP_RANGES", default=[
    "173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22", "141.101.64.0/18",
    "108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20", "197.234.240.0/22", "198.41.128.0/17",
    "162.158.0.0/15", "104.16.0.0/13", "104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22",
    "2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32", "2405:8100::/32",
    "2a06:98c0::/29", "2c0f:f248::/32",
])

# The legacy platform wrote local-time strings; this is their zone.
LEGACY_TIME_ZONE = env.str("LEGACY_TIME_ZONE", default="UTC")

# Internationalisation
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = False  # English only: skips the translation machinery on every page
USE_TZ = True

# Static files: vendored, served by WhiteNoise in every mode.
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "static")))
if not PRODUCTION:
    STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION

# Security headers: everything from our own origin, nothing inline.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "connect-src": [CSP.SELF, *([GATEWAY_URL] if GATEWAY_URL else [])],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

# Celery: Redis, or a folder of message files for a local run.
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
if REDIS_URL:
    CELERY_BROKER_TRANSPORT_OPTIONS = dict(REDIS_SOCKET_OPTIONS)
else:
    _broker_dir = DATA_DIR / "broker"
    _broker_dir.mkdir(exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_broker_dir / "control"),  # else "control/" in the working directory
    }
# A node's own worker (deploy/node): its broker user reaches only keys under its prefix, so
# its unacknowledged messages and its cache live there, and it takes no broadcasts.
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="")
if REDIS_KEY_PREFIX:
    CACHES["default"]["KEY_PREFIX"] = f"{REDIS_KEY_PREFIX}cache"
    CELERY_BROKER_TRANSPORT_OPTIONS.update({f"{key}_key": f"{REDIS_KEY_PREFIX}{key}" for key in ("unacked", "unacked_index", "unacked_mutex")})
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 5
# Work that tenants drive and shape (their compose files, their containers, their
# DNS) runs from a queue of its own, consumed by workers of its own: however
# long it takes, server lifecycles and the monitor (the default queue) go on.
TENANT_QUEUE = "tenant"
CELERY_TASK_ROUTES = {
    "hosting.tasks.app_run": {"queue": TENANT_QUEUE},
    "hosting.tasks.container_action": {"queue": TENANT_QUEUE},
    "hosting.tasks.images_refresh": {"queue": TENANT_QUEUE},
    "hosting.tasks.image_remove": {"queue": TENANT_QUEUE},
    "hosting.tasks.domain_check_claim": {"queue": TENANT_QUEUE},
    "hosting.tasks.domains_check_claims": {"queue": TENANT_QUEUE},
}
CELERY_BEAT_SCHEDULE = {
    "registration-codes-purge": {
        "task": "accounts.tasks.registration_codes_purge",
        "schedule": timedelta(minutes=10),
    },
    "monitor-cycle": {
        "task": "hosting.tasks.monitor_cycle",
        "schedule": timedelta(seconds=MONITOR_INTERVAL),
        # A cycle that could not start before the next one is due is dropped,
        # so a slow or absent worker never finds a pile of queued cycles.
        "options": {"expires": MONITOR_INTERVAL},
    },
    "domains-check-claims": {
        "task": "hosting.tasks.domains_check_claims",
        "schedule": timedelta(seconds=DOMAIN_CHECK_INTERVAL),
        "options": {"expires": DOMAIN_CHECK_INTERVAL},
    },
    "proxy-drift": {
        "task": "hosting.tasks.proxy_reapply_if_drifted",
        "schedule": timedelta(seconds=PROXY_DRIFT_INTERVAL),
        "options": {"expires": PROXY_DRIFT_INTERVAL},
    },
    "servers-reconcile-stuck": {
        "task": "hosting.tasks.servers_reconcile_stuck",
        "schedule": timedelta(seconds=60),
        "options": {"expires": 60},
    },
    "throttle-counts-purge": {
        "task": "accounts.tasks.throttle_counts_purge",
        "schedule": timedelta(hours=1),
    },
    "sessions-purge": {
        "task": "accounts.tasks.sessions_purge",
        "schedule": timedelta(hours=1),
    },
    "activity-retention": {
        "task": "accounts.tasks.activity_purge",
        "schedule": timedelta(hours=6),
    },
}

# The API (api/): DRF over the same services the pages use, with personal access tokens.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated", "api.authentication.TokenScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Pages",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    # Too many: 429 with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": ["api.authentication.TokenRate", "api.authentication.ClientRate"],
    "DEFAULT_THROTTLE_RATES": {"token": env.str("API_RATE_PER_TOKEN", default="600/min"),
                               "client": env.str("API_RATE_PER_CLIENT", default="1200/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Control panel API",
    "DESCRIPTION": "Virtual servers and what runs in them, for personal access tokens (Authorization: Bearer cpat_...).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",  # routes grouped by what follows: servers, apps, admin ...
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "api.schema.error_responses"],
}
API_TOKEN_DAYS = (7, 30, 90, 365)  # the lifetimes one may choose
API_TOKEN_DEFAULT_DAYS = 30
API_TOKENS_PER_USER = env_int("API_TOKENS_PER_USER", 20)
API_IDEMPOTENCY_SECONDS = 24 * 3600  # how long a create's Idempotency-Key answers a retry with the first answer

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
