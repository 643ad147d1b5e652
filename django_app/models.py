"""Unmanaged models over db/init.sql (no migrations: the schema belongs to db/init.sql)."""

import threading

import psycopg
from django.db import InterfaceError, OperationalError, connection, models

RECENT = 20


class User(models.Model):
    id = models.IntegerField(primary_key=True)
    name = models.TextField()
    monthly_budget_cents = models.IntegerField()

    class Meta:
        managed = False
        db_table = "users"


class Transaction(models.Model):
    id = models.BigIntegerField(primary_key=True)
    user = models.ForeignKey(User, models.DO_NOTHING, db_column="user_id")
    amount_cents = models.IntegerField()
    category = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "transactions"


# Step 2 of the contract in ONE statement, as on every target (docs/CONTRACT.md: per request the
# optional pg_sleep plus exactly one query): the contract's CTE through the ORM's raw(), which maps
# the row onto a User (hence u.id, its primary key) with the computed columns as extra attributes.
SUMMARY_SQL = f"""
WITH recent AS (
    SELECT amount_cents, category FROM transactions
    WHERE user_id = %(user_id)s ORDER BY created_at DESC, id DESC LIMIT {RECENT})
SELECT u.id, u.name, u.monthly_budget_cents,
       (SELECT count(*) FROM recent)::int AS transactions,
       (SELECT coalesce(sum(amount_cents), 0) FROM recent)::bigint AS spent_cents,
       (SELECT category FROM recent GROUP BY category
        ORDER BY sum(amount_cents) DESC, category ASC LIMIT 1) AS top_category
FROM users u WHERE u.id = %(user_id)s
"""


def user_summary(user_id: int) -> User:
    """The user with .transactions, .spent_cents and .top_category; User.DoesNotExist if none."""
    for user in User.objects.raw(SUMMARY_SQL, {"user_id": user_id}):
        return user
    raise User.DoesNotExist(f"user {user_id} not found")


async def auser_summary(user_id: int) -> User:
    """user_summary through the async ORM API (`async for` over the RawQuerySet)."""
    users = [user async for user in User.objects.raw(SUMMARY_SQL, {"user_id": user_id})]
    if not users:
        raise User.DoesNotExist(f"user {user_id} not found")
    return users[0]


def load_user(user_id: int, db_ms: int) -> User:
    """Step 2 on this thread's connection: the optional pg_sleep, then the one query; once more
    on a new connection when this one had been closed by the server (see drop_if_broken)."""
    for attempt in (1, 2):
        try:
            Outage.fail_fast()
            if db_ms:
                pg_sleep(db_ms)
            return user_summary(user_id)
        except (OperationalError, InterfaceError):
            Outage.noticed()
            if attempt == 2 or not drop_if_broken():
                raise
    raise AssertionError("unreachable")


def drop_if_broken() -> bool:
    """After a database error: was this thread's connection one the server had closed (a restart)?
    Then it is dropped, and with django-async's pool every broken idle one too (psycopg_pool's
    check, which costs a round trip per idle connection, on this failure path only), so the
    read can run again on a live connection. False when the database itself is unreachable (no
    connection was made): that stays a 503, fast."""
    raw = connection.connection
    if raw is None or not raw.broken:
        return False
    connection.close()  # with the pool: given back, and the pool discards a broken connection
    if "pool" in connection.settings_dict["OPTIONS"]:
        connection.pool.check()
    return True


class Outage:
    """This process saw the database fail (django-async's pool only).

    psycopg_pool makes its connections in the background, so while the server is down a request
    does not fail: it waits for one, up to the pool's timeout (DB_POOL_TIMEOUT_S, 30 s), and the
    pool keeps retrying. After a failure, requests therefore ask the server directly first (one
    connection attempt, DB_TIMEOUT_S at most): refused, it is a 503 at once; accepted, the outage is
    over and the pool serves again. Nothing changes while the database is up: no probe is made."""

    _lock = threading.Lock()
    suspected = False

    @classmethod
    def noticed(cls) -> None:
        if "pool" in connection.settings_dict["OPTIONS"]:
            cls.suspected = True

    @classmethod
    def fail_fast(cls) -> None:
        """While an outage is suspected: raise OperationalError (503) unless the server answers."""
        if not cls.suspected:
            return
        params = connection.get_connection_params()
        params.pop("pool", None)
        try:
            psycopg.connect(**params).close()  # with the settings' connect_timeout
        except psycopg.Error as exc:
            raise OperationalError(f"database unavailable: {exc}") from None
        with cls._lock:
            cls.suspected = False


def pg_sleep(db_ms: int) -> None:
    """The simulated slow query. Sync: the async views call it through sync_to_async."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s / 1000.0)", [db_ms])


def select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def release() -> bool:
    """Give this thread's connection back (to the pool under django-async). True when it had been
    closed by the server: then it is dropped instead, and the pool's broken ones with it."""
    if drop_if_broken():
        return True
    connection.close()
    return False
