"""Configuration from the environment only (docs/CONTRACT.md), read once per process."""

from functools import lru_cache
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings


class AppSettings(BaseSettings):
    database_url: str
    upstream_url: str
    target_name: str
    db_ms: int = Field(50, ge=0, le=5000)
    llm_ms: int = Field(500, ge=0, le=20000)
    upstream_timeout_s: float = 30.0
    db_pool_size: int = Field(15, ge=1)  # django-async's pool; django-sync holds exactly one
    db_pool_timeout_s: float = 30.0
    db_timeout_s: float = Field(10.0, gt=0)


@lru_cache
def get_settings() -> AppSettings:
    return AppSettings()


def database_from_url(url: str) -> dict:
    """libpq URL (postgresql://USER[:PW]@HOST:PORT/DB?opt=v) -> Django DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must be postgresql://..., got {parts.scheme!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3 when installed
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),  # e.g. sslmode, or host=/socket/dir
    }
