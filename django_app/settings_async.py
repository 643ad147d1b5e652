"""Settings for django-async (uvicorn, ASGIHandler): the sync settings plus a connection pool.

Persistent connections are wrong under ASGI: each request's sync ORM work runs in a fresh
per-request thread (see async_views.py) and connections are per thread. Django 5.1+'s native
psycopg pool is the documented alternative; the connection goes back to the pool on close().
"""

from django_app.config import get_settings
from django_app.settings import *  # noqa: F403
from django_app.settings import DATABASES

_env = get_settings()

ROOT_URLCONF = "django_app.urls_async"

DATABASES = {"default": {
    **DATABASES["default"],
    "CONN_MAX_AGE": 0,  # required with "pool"
    # With health checks Django gives the pool check=check_connection, and psycopg_pool retries
    # failed checks with exponential backoff (1, 2, 4... s): after a DB restart, one request walks
    # the 15 dead connections and hits DB_POOL_TIMEOUT_S (measured: 30 s). Without them, a dead
    # connection fails its query fast; models.drop_if_broken then discards it and checks the pool
    # once (that failure path only), and the read runs again on a live connection.
    "CONN_HEALTH_CHECKS": False,
    "OPTIONS": {**DATABASES["default"]["OPTIONS"], "pool": {
        "min_size": _env.db_pool_size, "max_size": _env.db_pool_size,
        "timeout": _env.db_pool_timeout_s}},  # PoolTimeout -> OperationalError -> 503
}}
