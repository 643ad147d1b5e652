package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Parameter ranges (CONTRACT.md, "Validation").
const (
	maxUserID     = math.MaxInt32
	maxDBMs       = 5000
	maxLLMMs      = 20000
	maxTokens     = 1000
	defaultTokens = 16
	maxCPUN       = 5_000_000
	defaultCPUN   = 100_000
)

// newRouter wires every route to a handler closed over its dependencies.
func newRouter(cfg config, db store, up llm, logw io.Writer) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New() // no Logger middleware: access logs are off in every target
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false // "/healthz/" is an unknown route (404 JSON), not a redirect
	r.Use(gin.CustomRecoveryWithWriter(logw, func(c *gin.Context, _ any) {
		abortWithError(c, http.StatusInternalServerError, "internal_error", "internal server error")
	}))
	r.NoRoute(func(c *gin.Context) {
		abortWithError(c, http.StatusNotFound, "not_found", "no such route")
	})
	r.NoMethod(func(c *gin.Context) {
		abortWithError(c, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
	})

	r.GET("/healthz", func(c *gin.Context) { writeJSON(c, http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", handleReady(cfg, db))
	// The bare "/recommendation/" route gives an empty user_id, which validation rejects (400).
	rec := handleRecommendation(cfg, db, up)
	r.GET("/recommendation/", rec)
	r.GET("/recommendation/:user_id", rec)
	stream := handleStream(cfg, db, up)
	r.GET("/stream/", stream)
	r.GET("/stream/:user_id", stream)
	r.GET("/cpu", handleCPU())
	return r
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func abortWithError(c *gin.Context, status int, code, message string) {
	var body errorBody
	body.Error.Code, body.Error.Message = code, message
	c.Abort()
	writeJSON(c, status, body)
}

// writeJSON writes body in the contract's one wire form of JSON (CONTRACT.md, "Responses"): compact,
// UTF-8, nothing HTML-escaped (c.JSON would turn <, > and & into \u003c...), no trailing newline,
// Content-Type application/json, as every target sends it.
func writeJSON(c *gin.Context, status int, body any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		panic(err) // only the handlers' own structs and maps get here
	}
	c.Data(status, "application/json", bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

// recommendation is the 200 body; struct field order is the contract's JSON key order.
type recommendation struct {
	UserID       int64   `json:"user_id"`
	Name         string  `json:"name"`
	BudgetCents  int64   `json:"budget_cents"`
	SpentCents   int64   `json:"spent_cents"`
	Transactions int64   `json:"transactions"`
	TopCategory  *string `json:"top_category"`
	Advice       string  `json:"advice"`
	ServedBy     string  `json:"served_by"`
}

func handleRecommendation(cfg config, db store, up llm) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, ok := parseParams(c, cfg, false)
		if !ok {
			return
		}
		// One deadline for the whole request, shared by the DB work and the upstream call.
		ctx, cancel := context.WithTimeout(c.Request.Context(), cfg.requestBudget())
		defer cancel()
		s, err := db.Summary(ctx, p.userID, time.Duration(p.dbMs)*time.Millisecond)
		if err != nil {
			dbFailure(c, err)
			return
		}
		advice, err := up.complete(ctx, prompt(s), p.llmMs)
		if err != nil {
			upstreamFailureResponse(c, err)
			return
		}
		writeJSON(c, http.StatusOK, recommendation{
			UserID: p.userID, Name: s.Name, BudgetCents: s.BudgetCents, SpentCents: s.SpentCents,
			Transactions: s.Transactions, TopCategory: s.TopCategory, Advice: advice, ServedBy: cfg.targetName,
		})
	}
}

func handleStream(cfg config, db store, up llm) gin.HandlerFunc {
	return func(c *gin.Context) {
		p, ok := parseParams(c, cfg, true)
		if !ok {
			return
		}
		// Only the DB step gets a deadline: a stream lasts as long as the upstream keeps sending,
		// and up.stream bounds every wait on it by the upstream timeout.
		ctx, cancel := context.WithTimeout(c.Request.Context(), cfg.dbBudget())
		s, err := db.Summary(ctx, p.userID, time.Duration(p.dbMs)*time.Millisecond)
		cancel()
		if err != nil {
			dbFailure(c, err)
			return
		}
		tokens, err := up.stream(c.Request.Context(), prompt(s), p.llmMs, p.tokens)
		if err != nil { // still before the first byte: the JSON error shape applies
			upstreamFailureResponse(c, err)
			return
		}
		defer tokens.Close()

		w := c.Writer
		w.Header().Set("Content-Type", "text/event-stream") // the same three headers on every target
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		c.Status(http.StatusOK)
		w.Flush()
		for tokens.Next() {
			text, _ := json.Marshal(tokens.Token())
			fmt.Fprintf(w, "data: {\"token\": %s}\n\n", text)
			w.Flush() // one event per upstream chunk, as it arrives
		}
		if err := tokens.Err(); err != nil { // the status line is sent: report it in-band, no [DONE]
			io.WriteString(w, streamErrorEvent(err))
		} else {
			io.WriteString(w, "data: [DONE]\n\n")
		}
		w.Flush()
	}
}

// midStreamMessages are the texts CONTRACT.md pins for a stream that broke after it started: the
// same on every target, whatever the upstream said.
var midStreamMessages = map[string]string{
	"upstream_error":   "the upstream stream failed",
	"upstream_timeout": "the upstream stream timed out",
}

// streamErrorEvent is a broken stream's last event, byte for byte the Python targets'
// "event: error\ndata: " + json.dumps({"error": {"code": ..., "message": ...}}).
func streamErrorEvent(err error) string {
	code := "upstream_error"
	if errors.Is(err, errUpstreamTimeout) {
		code = "upstream_timeout"
	}
	return fmt.Sprintf("event: error\ndata: {\"error\": {\"code\": %q, \"message\": %q}}\n\n", code, midStreamMessages[code])
}

func handleReady(cfg config, db store) gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx, cancel := context.WithTimeout(c.Request.Context(), cfg.dbBudget())
		defer cancel()
		if err := db.Ping(ctx); err != nil {
			log.Printf("database unavailable: %v", err)
			abortWithError(c, http.StatusServiceUnavailable, "database_unavailable", msgDBUnavailable)
			return
		}
		writeJSON(c, http.StatusOK, gin.H{"status": "ready"})
	}
}

func handleCPU() gin.HandlerFunc {
	type result struct {
		N      int64 `json:"n"`
		Result int64 `json:"result"`
	}
	return func(c *gin.Context) {
		var bad string
		n := intParam(&bad, "n", queryValue(c, "n"), defaultCPUN, 1, maxCPUN)
		if bad != "" {
			abortWithError(c, http.StatusBadRequest, "invalid_parameter", bad)
			return
		}
		writeJSON(c, http.StatusOK, result{N: n, Result: sumISqrt(n)})
	}
}

// The messages of docs/CONTRACT.md ("Error messages"): fixed, the same on every target. The error
// itself (an upstream URL, a driver's text) goes to the log only.
const msgDBUnavailable = "the database is unavailable"

func dbFailure(c *gin.Context, err error) {
	if errors.Is(err, errNotFound) {
		abortWithError(c, http.StatusNotFound, "not_found", "user not found")
		return
	}
	log.Printf("database unavailable: %v", err)
	abortWithError(c, http.StatusServiceUnavailable, "database_unavailable", msgDBUnavailable)
}

func upstreamFailureResponse(c *gin.Context, err error) {
	log.Printf("upstream failed: %v", err)
	if errors.Is(err, errUpstreamTimeout) {
		abortWithError(c, http.StatusGatewayTimeout, "upstream_timeout", "the upstream timed out")
		return
	}
	abortWithError(c, http.StatusBadGateway, "upstream_error", "the upstream failed")
}

// dbBudget bounds step 2: the pool wait, then pg_sleep and the query (DB_TIMEOUT_S, pgStore's).
func (cfg config) dbBudget() time.Duration {
	return cfg.poolTimeout + cfg.dbTimeout
}

// requestBudget bounds a whole /recommendation request: step 2, then the upstream call.
func (cfg config) requestBudget() time.Duration {
	return cfg.dbBudget() + cfg.upstreamTimeout
}

type params struct{ userID, dbMs, llmMs, tokens int64 }

// parseParams validates in the contract's order (user_id, db_ms, llm_ms, tokens) and answers 400
// on the first bad one, before any DB or upstream work.
func parseParams(c *gin.Context, cfg config, stream bool) (params, bool) {
	var bad string
	p := params{
		userID: intParam(&bad, "user_id", optional{c.Param("user_id"), true}, 0, 1, maxUserID),
		dbMs:   intParam(&bad, "db_ms", queryValue(c, "db_ms"), cfg.dbMs, 0, maxDBMs),
		llmMs:  intParam(&bad, "llm_ms", queryValue(c, "llm_ms"), cfg.llmMs, 0, maxLLMMs),
	}
	if stream {
		p.tokens = intParam(&bad, "tokens", queryValue(c, "tokens"), defaultTokens, 1, maxTokens)
	}
	if bad != "" {
		abortWithError(c, http.StatusBadRequest, "invalid_parameter", bad)
		return params{}, false
	}
	return p, true
}

type optional struct {
	text    string
	present bool
}

func queryValue(c *gin.Context, name string) optional {
	text, present := c.GetQuery(name)
	return optional{text, present}
}

// intParam parses v as ^-?[0-9]+$ within lo..hi (def when absent). After the first failure it
// records nothing more, so *bad names the first bad parameter.
func intParam(bad *string, name string, v optional, def, lo, hi int64) int64 {
	if *bad != "" {
		return 0
	}
	if !v.present {
		return def
	}
	digits := strings.TrimPrefix(v.text, "-")
	n, err := strconv.ParseInt(v.text, 10, 64) // 64-bit: overflow is an error, not a wrap
	if digits == "" || strings.Trim(digits, "0123456789") != "" || err != nil || n < lo || n > hi {
		*bad = fmt.Sprintf("%s must be an integer in %d..%d", name, lo, hi)
		return 0
	}
	return n
}

// isqrt is the exact integer square root (floor) for 0 <= n < 2^62: the float64 estimate can be
// off by one for large n, so it is corrected both ways.
func isqrt(n int64) int64 {
	r := int64(math.Sqrt(float64(n)))
	for r*r > n {
		r--
	}
	for (r+1)*(r+1) <= n {
		r++
	}
	return r
}

// sumISqrt is /cpu's workload: sum of isqrt(i) for i in [0, n).
func sumISqrt(n int64) int64 {
	var total int64
	for i := range n {
		total += isqrt(i)
	}
	return total
}
