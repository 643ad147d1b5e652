package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	errNotFound      = errors.New("not found")
	errDBUnavailable = errors.New("database unavailable")
	// The pooled connection had been closed by the server (a restart): so had every other one, so
	// Summary resets the pool (as SQLAlchemy invalidates its pool on a disconnect) and runs the
	// read again, once, on a fresh connection.
	errDeadConn = errors.New("pooled connection closed by the server")
)

// summary is step 2 of the contract: the user and the aggregate of their 20 latest transactions.
type summary struct {
	Name         string
	BudgetCents  int64
	Transactions int64
	SpentCents   int64
	TopCategory  *string // nil when the user has no transactions
}

// store is what the handlers need from the database; tests use a fake.
type store interface {
	// Summary returns errNotFound for an unknown user and wraps errDBUnavailable otherwise.
	Summary(ctx context.Context, userID int64, dbWait time.Duration) (summary, error)
	Ping(ctx context.Context) error
}

const summarySQL = `WITH recent AS (
    SELECT amount_cents, category FROM transactions
    WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT 20)
SELECT u.name, u.monthly_budget_cents,
       (SELECT count(*) FROM recent)::int,
       (SELECT coalesce(sum(amount_cents), 0) FROM recent)::bigint,
       (SELECT category FROM recent GROUP BY category
        ORDER BY sum(amount_cents) DESC, category ASC LIMIT 1)
FROM users u WHERE u.id = $1`

type pgStore struct {
	pool           *pgxpool.Pool
	acquireTimeout time.Duration // DB_POOL_TIMEOUT_S
	timeout        time.Duration // DB_TIMEOUT_S, for the statements once a connection is held
}

func (s pgStore) Summary(ctx context.Context, userID int64, dbWait time.Duration) (summary, error) {
	out, err := s.summaryOnce(ctx, userID, dbWait)
	if errors.Is(err, errDeadConn) {
		s.pool.Reset() // idle connections are closed now, checked-out ones when released
		out, err = s.summaryOnce(ctx, userID, dbWait)
	}
	return out, err
}

func (s pgStore) summaryOnce(ctx context.Context, userID int64, dbWait time.Duration) (summary, error) {
	// ONE pooled connection for both statements, released when Summary returns, i.e. before the
	// upstream call (holding it across the call would cap throughput at pool size / LLM latency).
	// pgxpool pings a connection only after it idled for a second, so one the server has just
	// closed can still be handed out: its first statement fails and pgx closes it.
	conn, err := s.acquire(ctx)
	if err != nil {
		return summary{}, err
	}
	defer conn.Release() // a closed connection is destroyed, not pooled again

	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	failed := func(err error) error {
		if conn.Conn().IsClosed() && ctx.Err() == nil {
			return fmt.Errorf("%w: %w: %w", errDBUnavailable, errDeadConn, err)
		}
		return fmt.Errorf("%w: %w", errDBUnavailable, err)
	}
	if dbWait > 0 {
		if _, err := conn.Exec(ctx, "SELECT pg_sleep($1)", dbWait.Seconds()); err != nil {
			return summary{}, failed(err)
		}
	}
	var out summary
	err = conn.QueryRow(ctx, summarySQL, userID).Scan(
		&out.Name, &out.BudgetCents, &out.Transactions, &out.SpentCents, &out.TopCategory)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return summary{}, errNotFound
	case err != nil:
		return summary{}, failed(err)
	}
	return out, nil
}

func (s pgStore) Ping(ctx context.Context) error {
	conn, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("%w: %w", errDBUnavailable, err)
	}
	return nil
}

// acquire waits at most acquireTimeout for a pooled connection (pool exhausted or DB down → 503).
func (s pgStore) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.acquireTimeout)
	defer cancel()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errDBUnavailable, err)
	}
	return conn, nil
}
