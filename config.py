"""Configuration read from the environment.

DATABASE_URL picks the database (an SQLite file under instance/ by default);
SECRET_KEY signs sessions and is generated once into instance/ when not given.
"""
import os
import secrets
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
INSTANCE_DIR = Path(os.environ.get("TIMEBANK_INSTANCE", BASE_DIR / "instance"))


def _secret_key() -> str:
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    path = INSTANCE_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        # Hosting platforms hand out postgres:// URLs; we use psycopg 3.
        if url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url[len("postgres://"):]
        elif url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        return url
    INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{INSTANCE_DIR / 'timebank.sqlite3'}"


# Optional settings taken from the environment only when set.
_OPTIONAL_ENV = ("MAIL_SERVER", "MAIL_PORT", "MAIL_USERNAME", "MAIL_PASSWORD", "MAIL_DEFAULT_SENDER",
                 "RATELIMIT_STORAGE_URI", "LOGIN_RATE_LIMIT", "PASSWORD_RESET_MAX_AGE")


def _optional_env() -> dict:
    values = {name: os.environ[name] for name in _OPTIONAL_ENV if os.environ.get(name)}
    if os.environ.get("MAIL_USE_TLS"):
        values["MAIL_USE_TLS"] = os.environ["MAIL_USE_TLS"] == "1"
    # Notifications (exchanges) and password links (people) send through the same SMTP server.
    if "MAIL_SERVER" in values:
        values["SMTP_HOST"] = values["MAIL_SERVER"]
    if "MAIL_PORT" in values:
        values["SMTP_PORT"] = values["MAIL_PORT"]
    if "MAIL_DEFAULT_SENDER" in values:
        values["MAIL_FROM"] = values["MAIL_DEFAULT_SENDER"]
    return values


class Config:
    SECRET_KEY = None  # filled lazily by create_app via secret_key()
    SQLALCHEMY_DATABASE_URI = None
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    SQLALCHEMY_BINDS: dict = {}
    REPORTS_DATABASE_URL = os.environ.get("REPORTS_DATABASE_URL")
    # PostgreSQL settings for the report queries' transaction (SET LOCAL): the dashboard's few large aggregates
    # de-duplicate hundreds of thousands of rows, which spill to disk at the default 4MB; and JIT compilation
    # of its many-branch statement costs more (about 0.5 s on the XL bench) than it saves. Empty: leave as is.
    REPORTS_WORK_MEM = os.environ.get("REPORTS_WORK_MEM", "64MB")
    REPORTS_JIT = os.environ.get("REPORTS_JIT", "off")
    # PostgreSQL: the dashboard runs its independent statements on two connections at once, both reading the
    # same snapshot (timebank/impact/db.py, beside). "0" runs them one after the other on one connection.
    REPORTS_PARALLEL = os.environ.get("REPORTS_PARALLEL", "1") not in ("0", "false", "no")
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = os.environ.get("SESSION_COOKIE_SECURE", "0") == "1"
    REMEMBER_COOKIE_HTTPONLY = True
    # A signed session cookie older than this is refused, so people log in again at least every 12 hours.
    PERMANENT_SESSION_LIFETIME = int(os.environ.get("SESSION_LIFETIME_HOURS", "12")) * 3600
    MAX_CONTENT_LENGTH = 5 * 1024 * 1024
    API_TITLE = "Time bank API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/api/v1"
    OPENAPI_JSON_PATH = "openapi.json"
    API_TOKEN_TTL_HOURS = int(os.environ.get("API_TOKEN_TTL_HOURS", "24"))
    # Notification emails go through an outbox; `flask notifications send` (cron) delivers them. With
    # MAIL_SEND_AFTER_COMMIT=1 a request that wrote emails also tries to send them right after its commit.
    MAIL_SEND_AFTER_COMMIT = os.environ.get("MAIL_SEND_AFTER_COMMIT", "0") == "1"
    MAIL_MAX_ATTEMPTS = int(os.environ.get("MAIL_MAX_ATTEMPTS", "8"))
    SQLITE_BUSY_TIMEOUT_MS = int(os.environ.get("SQLITE_BUSY_TIMEOUT_MS", "15000"))
    # Behind N trusted reverse proxies, take the client address, scheme and host from their X-Forwarded-* headers
    # (0: ignore those headers, which anyone could send when the app is reached directly).
    PROXY_FIX_HOPS = int(os.environ.get("PROXY_FIX_HOPS", "0"))
    TESTING = False

    @classmethod
    def resolve(cls) -> dict:
        values = {k: getattr(cls, k) for k in dir(cls) if k.isupper()}
        values["SECRET_KEY"] = _secret_key()
        values["SQLALCHEMY_DATABASE_URI"] = _database_url()
        values.update(_optional_env())
        return values


class TestingConfig(Config):
    TESTING = True
    WTF_CSRF_ENABLED = False

    @classmethod
    def resolve(cls) -> dict:
        values = {k: getattr(cls, k) for k in dir(cls) if k.isupper()}
        values["SECRET_KEY"] = "test-only-secret-key"
        values["SQLALCHEMY_DATABASE_URI"] = os.environ.get("TEST_DATABASE_URL", "sqlite://")
        return values
