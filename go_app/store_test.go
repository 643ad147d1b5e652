package main

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// TestPGStore runs against a real database only when TEST_DATABASE_URL is set (e.g. the URL that
// `python -m bench.infra` prints); the handler tests use fakeStore.
func TestPGStore(t *testing.T) {
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		t.Skip("TEST_DATABASE_URL not set")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	db := pgStore{pool: pool, acquireTimeout: 200 * time.Millisecond, timeout: time.Second}
	ctx := context.Background()

	if err := db.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s, err := db.Summary(ctx, 42, 100*time.Millisecond)
	if err != nil || s.Name != "User 42" || s.Transactions != 20 || s.TopCategory == nil {
		t.Fatalf("Summary(42) = %+v, %v", s, err)
	}
	if elapsed := time.Since(start); elapsed < 100*time.Millisecond {
		t.Errorf("pg_sleep skipped: %v", elapsed)
	}
	if _, err := db.Summary(ctx, 2147483647, 0); !errors.Is(err, errNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	// A statement longer than the timeout is given up at the timeout.
	start = time.Now()
	if _, err := db.Summary(ctx, 1, 3*time.Second); !errors.Is(err, errDBUnavailable) || time.Since(start) > 2*time.Second {
		t.Errorf("pg_sleep past the timeout: %v after %v", err, time.Since(start))
	}
	// The only connection is held: the next acquire gives up after acquireTimeout.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := db.Summary(ctx, 1, 0); !errors.Is(err, errDBUnavailable) {
		t.Errorf("exhausted pool: %v", err)
	}
}
