// Command go-gin is the go-gin target of Concurrency Lab (docs/DESIGN.md): Gin on net/http, one goroutine
// per request, a pgx pool for PostgreSQL and, for the upstream, the official openai-go SDK
// (-client sdk, target go-gin) or plain net/http (-client raw, target go-gin-raw), both over the
// same keep-alive net/http client. The endpoint contract is docs/CONTRACT.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "go-gin:", err)
		os.Exit(1)
	}
}

// config is everything the app reads from the environment (CONTRACT.md, "Configuration").
type config struct {
	databaseURL     string
	upstreamURL     string
	targetName      string
	dbMs, llmMs     int64 // defaults for the query parameters
	upstreamTimeout time.Duration
	poolSize        int32
	poolTimeout     time.Duration
	dbTimeout       time.Duration // to open a connection, and for the statements of a request
	pprofAddr       string        // opt-in: net/http/pprof on this loopback address (bench profile)
}

func loadConfig(getenv func(string) string) (config, error) {
	var errs []error
	required := func(key string) string {
		v := getenv(key)
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", key))
		}
		return v
	}
	integer := func(key string, def, lo, hi int64) int64 {
		v := getenv(key)
		if v == "" {
			return def
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Errorf("%s=%q: want an integer in %d..%d", key, v, lo, hi))
		}
		return n
	}
	seconds := func(key string, def float64) time.Duration {
		v, f := getenv(key), def
		if v != "" {
			var err error
			if f, err = strconv.ParseFloat(v, 64); err != nil || !(f > 0) {
				errs = append(errs, fmt.Errorf("%s=%q: want a positive number of seconds", key, v))
			}
		}
		return time.Duration(f * float64(time.Second))
	}
	cfg := config{
		databaseURL:     required("DATABASE_URL"),
		upstreamURL:     strings.TrimRight(required("UPSTREAM_URL"), "/"),
		targetName:      required("TARGET_NAME"),
		dbMs:            integer("DB_MS", 50, 0, maxDBMs),
		llmMs:           integer("LLM_MS", 500, 0, maxLLMMs),
		upstreamTimeout: seconds("UPSTREAM_TIMEOUT_S", 30),
		// pgxpool's own default, max(4, cores), would make the pool the bottleneck (docs/DESIGN.md).
		poolSize:    int32(integer("DB_POOL_SIZE", 15, 1, 10000)),
		poolTimeout: seconds("DB_POOL_TIMEOUT_S", 30),
		dbTimeout:   seconds("DB_TIMEOUT_S", 10),
		pprofAddr:   getenv("PPROF_ADDR"),
	}
	return cfg, errors.Join(errs...)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	flags := flag.NewFlagSet(args[0], flag.ContinueOnError)
	addr := flags.String("addr", "127.0.0.1:8031", "listen address host:port")
	graceful := flags.Duration("graceful", 5*time.Second, "after SIGTERM, how long in-flight requests may finish")
	client := flags.String("client", clientSDK, "upstream client: "+clientSDK+" (openai-go) or "+clientRaw+" (net/http)")
	if err := flags.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	if cfg.pprofAddr != "" {
		stopPprof, err := servePprof(cfg.pprofAddr, stdout)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	up, err := newLLM(cfg, *client)
	if err != nil {
		return err
	}

	poolCfg, err := pgxpool.ParseConfig(cfg.databaseURL)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	poolCfg.MaxConns = cfg.poolSize
	// The server cancels a statement past DB_TIMEOUT_S itself (the connection stays usable); the
	// statements' context (pgStore) is for a server that does not answer at all.
	poolCfg.ConnConfig.ConnectTimeout = cfg.dbTimeout
	poolCfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(cfg.dbTimeout.Milliseconds(), 10)
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg) // connects lazily: /readyz reports the DB
	if err != nil {
		return err
	}
	defer pool.Close()

	srv := &http.Server{
		Handler:           newRouter(cfg, pgStore{pool: pool, acquireTimeout: cfg.poolTimeout, timeout: cfg.dbTimeout}, up, stdout),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second, // request bodies are empty; this only bounds slow clients
		// No WriteTimeout: it runs from the end of the request headers, so it would cut a /stream
		// (as long as the upstream streams) or a legitimate 20 s upstream wait. Each request is
		// bounded by its own deadlines instead (requestBudget, llm.stream).
		WriteTimeout: 0,
		IdleTimeout:  120 * time.Second,
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s listening on http://%s (db pool %d, upstream client %s)\n", cfg.targetName, ln.Addr(),
		cfg.poolSize, *client)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), *graceful)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		srv.Close() // streams still open after the grace period are cut
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
