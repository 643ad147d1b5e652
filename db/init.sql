-- Concurrency Lab schema and deterministic seed (docs/DESIGN.md, The database).
-- Every value is arithmetic on the ids (no random()), so every implementation returns the same
-- numbers and a test can compute the expected answer with SQL. Used natively by the harness and by
-- the postgres image (/docker-entrypoint-initdb.d).

CREATE TABLE users (
    id                   integer PRIMARY KEY,
    name                 text    NOT NULL,
    monthly_budget_cents integer NOT NULL
);

CREATE TABLE transactions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      integer     NOT NULL REFERENCES users (id),
    amount_cents integer     NOT NULL,
    category     text        NOT NULL,
    created_at   timestamptz NOT NULL
);

INSERT INTO users (id, name, monthly_budget_cents)
SELECT u, 'User ' || u, 50000 + (u * 7919) % 200000
FROM generate_series(1, 10000) AS u;

-- 20 transactions per user; k = 1 is the oldest. Categories cycle with a user-dependent stride so
-- that top categories (and their ties) vary between users.
INSERT INTO transactions (user_id, amount_cents, category, created_at)
SELECT u,
       100 + (u * 31 + k * 977) % 9000,
       (ARRAY['groceries', 'rent', 'transport', 'dining',
              'utilities', 'entertainment', 'health', 'travel'])[1 + (u * 3 + k * (1 + u % 5)) % 8],
       timestamptz '2026-01-01 00:00:00+00' + (u % 97) * interval '1 minute' + k * interval '1 day'
FROM generate_series(1, 10000) AS u, generate_series(1, 20) AS k
ORDER BY u, k;

CREATE INDEX transactions_user_recent ON transactions (user_id, created_at DESC);

ANALYZE users;
ANALYZE transactions;
