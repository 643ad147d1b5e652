"""Fixtures shared by the contract suite: real PostgreSQL, real upstream, real target processes.

`lab` (the session's PostgreSQL, upstream and Redis) is in the root conftest.py, which the framework
folders' tests share too.
"""

from __future__ import annotations

import hashlib

import httpx
import psycopg
import pytest

from bench import infra, manifest
from bench.targets import TargetUnavailable, running

ALL_TARGETS = list(manifest.load_targets().values())
UPSTREAM_TIMEOUT_S = 1.5  # short, so the 504 test is quick; model tests stay well under it
FILLER = ["Review", "your", "top", "category", "and", "set", "a", "weekly", "limit", "so", "the",
          "month", "ends", "within", "budget."]


@pytest.fixture(scope="session")
def db(lab):
    with psycopg.connect(lab.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def own_pg(tmp_path_factory):
    """A PostgreSQL of its own (bench/infra.py's, seeded the same), for the tests that restart or
    starve it, so the session's database stays as every other test expects: (url, its Proc)."""
    with infra.embedded_postgres(tmp_path_factory.mktemp("own-pg")) as started:
        yield started


@pytest.fixture(scope="session")
def upstream(lab):
    with httpx.Client(base_url=lab.upstream_url, timeout=10) as client:
        yield client


@pytest.fixture(scope="session", params=ALL_TARGETS, ids=lambda t: t.name)
def target(request, lab, tmp_path_factory):
    """One running process tree per target; pytest groups tests so each starts once."""
    try:
        with running(request.param, lab, tmp_path_factory.mktemp(request.param.name),
                     db_ms=50, llm_ms=500, upstream_timeout_s=UPSTREAM_TIMEOUT_S) as (resolved, _):
            yield resolved
    except TargetUnavailable as why:
        pytest.skip(f"{request.param.name} cannot run here: {why}")


@pytest.fixture
def client(target):
    with httpx.Client(base_url=target.base_url, timeout=30) as c:
        yield c


def expected_advice(name: str, budget: int, spent: int, count: int, top: str | None,
                    tokens: int = 16) -> str:
    """What the mock upstream answers for the contract's prompt (docs/CONTRACT.md)."""
    prompt = (f"{name} spent {spent} of a {budget} cent budget over {count} transactions; "
              f"top category: {top if top is not None else 'none'}. One tip?")
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    words = [f"[{digest}]"] + [FILLER[(i - 1) % len(FILLER)] for i in range(1, tokens)]
    return " ".join(words)


def expected_recommendation(db, user_id: int, served_by: str, tokens: int = 16) -> dict:
    """The 200 body computed independently: raw rows from SQL, aggregation in Python."""
    name, budget = db.execute("SELECT name, monthly_budget_cents FROM users WHERE id = %s",
                              (user_id,)).fetchone()
    rows = db.execute("SELECT amount_cents, category FROM transactions WHERE user_id = %s "
                      "ORDER BY created_at DESC, id DESC LIMIT 20", (user_id,)).fetchall()
    sums: dict[str, int] = {}
    for amount, category in rows:
        sums[category] = sums.get(category, 0) + amount
    top = min(sums, key=lambda c: (-sums[c], c)) if sums else None
    spent = sum(amount for amount, _ in rows)
    return {"user_id": user_id, "name": name, "budget_cents": budget, "spent_cents": spent,
            "transactions": len(rows), "top_category": top,
            "advice": expected_advice(name, budget, spent, len(rows), top, tokens),
            "served_by": served_by}
