"""Unmanaged models over db/init.sql (no migrations: the schema belongs to db/init.sql)."""

from django.db import connection, models
from django.db.models import Count, Sum

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


# Step 2 of the contract in the ORM, as lazy querysets the sync and async views both evaluate:
# aggregating a sliced queryset makes Django wrap it in a subquery (SELECT COUNT(*), SUM(...)
# FROM (... ORDER BY created_at DESC, id DESC LIMIT 20)); the top category groups the same 20 rows.
TOTALS = {"transactions": Count("*"), "spent_cents": Sum("amount_cents", default=0)}


def recent_transactions(user_id: int) -> models.QuerySet:
    return Transaction.objects.filter(user_id=user_id).order_by("-created_at", "-id")[:RECENT]


def top_category(user_id: int) -> models.QuerySet:
    """Category with the largest sum among the recent rows, ties by name; use .first()."""
    return (Transaction.objects.filter(pk__in=recent_transactions(user_id).values("pk"))
            .values("category").annotate(total=Sum("amount_cents"))
            .order_by("-total", "category").values_list("category", flat=True))


def pg_sleep(db_ms: int) -> None:
    """The simulated slow query. Sync: the async views call it through sync_to_async."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s / 1000.0)", [db_ms])


def select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def release() -> None:
    """Give this thread's connection back (to the pool under django-async)."""
    connection.close()
