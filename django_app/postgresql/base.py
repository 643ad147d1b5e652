"""settings.py's ENGINE: Django's PostgreSQL backend, each wait for the server bounded.

psycopg waits for the server's answer without limit: libpq has no client-side statement timeout,
and a stopped server's kernel still acknowledges what is sent, so no TCP timeout fires either
(bench faults' pg-hang). Django makes its psycopg connections itself (or takes them from
psycopg_pool) and has no setting for their class, so this backend gives each one
BoundedConnection's `wait`.
"""

from typing import Any

import psycopg
from django.db.backends.postgresql import base

from django_app.config import get_settings


class StatementTimeout(psycopg.OperationalError):
    """No answer to a statement within DB_TIMEOUT_S: a 503, and not run again (it is not broken)."""


class BoundedConnection(psycopg.Connection):
    """Each wait that has no timeout of its own ends after DB_TIMEOUT_S, and the connection, its
    statement unanswered, is closed: it cannot be used again (models.drop_if_broken leaves it)."""

    timeout_s: float | None = None

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout_s
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if self.info.transaction_status != psycopg.pq.TransactionStatus.ACTIVE:
                raise
            self.close()
            raise StatementTimeout(f"no answer within {self.timeout_s} s") from exc


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> psycopg.Connection:
        connection = super().get_new_connection(conn_params)
        connection.__class__ = BoundedConnection  # the same object, with the bounded wait
        connection.timeout_s = get_settings().db_timeout_s
        return connection
