"""Settings for django-sync (gunicorn sync workers). Everything comes from the environment."""

from math import ceil

from django_app.config import database_from_url, get_settings

_env = get_settings()

DEBUG = False
# Nothing in the app calls request.get_host() (no CommonMiddleware/CSRF), so this is a formality:
# the native address and the docker-compose service names.
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "django-sync", "django-async"]
SECRET_KEY = "unused: no sessions, auth, CSRF or signing in this app"
INSTALLED_APPS = ["django_app"]  # only for the unmanaged models; no admin/auth/sessions
MIDDLEWARE: list[str] = []  # every middleware is per-request CPU the endpoint doesn't need
ROOT_URLCONF = "django_app.urls"
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False

# One persistent connection per worker process (pool_size = 1 for a 1-thread worker): opened on
# first use after the fork, reused forever. The view simply does not touch it during the upstream
# call. No CONN_HEALTH_CHECKS: they cost a `SELECT 1` round trip per request, and the contract
# allows the pg_sleep plus exactly one query. After a DB restart the dead connection fails one
# request (503); Django then sees errors_occurred and closes it, and the next request reconnects.
_db = database_from_url(_env.database_url)
# DB_TIMEOUT_S to open a connection (libpq counts whole seconds) and for each statement, which the
# server cancels (and the client gives up on, django_app/postgresql): a database that hangs is a
# 503 within it, not a request stuck until gunicorn's.
_db["OPTIONS"] = {"connect_timeout": ceil(_env.db_timeout_s),
                  "options": f"-c statement_timeout={round(_env.db_timeout_s * 1000)}", **_db["OPTIONS"]}
# ENGINE: Django's PostgreSQL backend, with a client-side bound on each wait for the server.
DATABASES = {"default": {**_db, "ENGINE": "django_app.postgresql", "CONN_MAX_AGE": None,
                         "CONN_HEALTH_CHECKS": False}}

# Errors (5xx, uncaught exceptions with their traceback) go to stderr, never to the client;
# expected 4xx responses are not logged.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {"django.request": {"level": "ERROR"}},
}
