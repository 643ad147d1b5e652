// Command bare is go-gin-bare (go_app/targets.toml): Gin's hello-world, context for memory claims,
// not a benchmark target. Served like go-gin (net/http + Gin in release mode, no Logger, the same
// server timeouts) but a separate binary with only /healthz and /readyz, so neither pgx nor the
// openai-go SDK is linked in: its memory is the framework's own cost, go-gin's minus it the app's.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
)

func main() {
	if err := run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "go-gin-bare:", err)
		os.Exit(1)
	}
}

func newRouter() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New() // no Logger middleware, as in go-gin
	r.Use(gin.Recovery())
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	// Nothing to be ready for: no DB, no upstream.
	r.GET("/readyz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ready"}) })
	return r
}

func run(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	flags := flag.NewFlagSet(args[0], flag.ContinueOnError)
	addr := flags.String("addr", "127.0.0.1:8039", "listen address host:port")
	graceful := flags.Duration("graceful", 5*time.Second, "after SIGTERM, how long in-flight requests may finish")
	if err := flags.Parse(args[1:]); err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           newRouter(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Printf("go-gin-bare listening on http://%s\n", ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), *graceful)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}
