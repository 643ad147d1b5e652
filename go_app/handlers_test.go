package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// fakeStore stands in for PostgreSQL: most handler tests need no database.
type fakeStore struct {
	sum     summary
	err     error
	pingErr error
	calls   int
	waits   []time.Duration
}

func (f *fakeStore) Summary(_ context.Context, _ int64, dbWait time.Duration) (summary, error) {
	f.calls++
	f.waits = append(f.waits, dbWait)
	return f.sum, f.err
}

func (f *fakeStore) Ping(context.Context) error { return f.pingErr }

func ptr(s string) *string { return &s }

func user42() *fakeStore {
	return &fakeStore{sum: summary{Name: "User 42", BudgetCents: 75000, Transactions: 20,
		SpentCents: 91234, TopCategory: ptr("rent")}}
}

// mockAnswer is the real mock's deterministic content (CONTRACT.md) for n tokens.
func mockTokens(lastMessage string, n int) []string {
	sum := sha256.Sum256([]byte(lastMessage))
	filler := strings.Fields("Review your top category and set a weekly limit so the month ends within budget.")
	out := []string{"[" + hex.EncodeToString(sum[:])[:12] + "]"}
	for i := 1; i < n; i++ {
		out = append(out, filler[(i-1)%len(filler)])
	}
	return out
}

type seenRequest struct {
	body    chatRequest
	latency string
}

// newUpstream serves chat completions like the mock; seen receives every request it got.
func newUpstream(t *testing.T, delay time.Duration, status int) (*httptest.Server, chan seenRequest) {
	t.Helper()
	seen := make(chan seenRequest, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req chatRequest
		if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" ||
			json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Messages) == 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		seen <- seenRequest{req, r.Header.Get("X-Mock-Latency-Ms")}
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
		if status != http.StatusOK {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, `{"error":{"message":"injected","type":"server_error","param":null,"code":"mock_fault"}}`)
			return
		}
		n := 16
		if req.MaxCompletionTokens > 0 {
			n = int(req.MaxCompletionTokens)
		}
		tokens := mockTokens(req.Messages[len(req.Messages)-1].Content, n)
		if !req.Stream {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{"object": "chat.completion", "choices": []any{
				map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": strings.Join(tokens, " ")}},
			}})
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		chunk := func(delta map[string]any) {
			b, _ := json.Marshal(map[string]any{"object": "chat.completion.chunk",
				"choices": []any{map[string]any{"index": 0, "delta": delta}}})
			fmt.Fprintf(w, "data: %s\n\n", b)
		}
		chunk(map[string]any{"role": "assistant"}) // empty content: must be skipped
		for i, tok := range tokens {
			if i < len(tokens)-1 {
				tok += " "
			}
			chunk(map[string]any{"content": tok})
		}
		chunk(map[string]any{})
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv, seen
}

func testConfig(upstreamURL string) config {
	return config{upstreamURL: upstreamURL, targetName: "go-gin", dbMs: 50, llmMs: 500,
		upstreamTimeout: 5 * time.Second, poolSize: 15, poolTimeout: time.Second}
}

// clients are the values of -client: every test that reaches the upstream runs with each.
var clients = []string{clientSDK, clientRaw}

func forEachClient(t *testing.T, test func(t *testing.T, client string)) {
	for _, client := range clients {
		t.Run(client, func(t *testing.T) { test(t, client) })
	}
}

func mustLLM(cfg config, client string) llm {
	up, err := newLLM(cfg, client)
	if err != nil {
		panic(err)
	}
	return up
}

// serve answers one request with the default (SDK) upstream client.
func serve(cfg config, db store, method, target string) *httptest.ResponseRecorder {
	return serveWith(clientSDK, cfg, db, method, target)
}

func serveWith(client string, cfg config, db store, method, target string) *httptest.ResponseRecorder {
	h := newRouter(cfg, db, mustLLM(cfg, client), io.Discard)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec
}

func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}
	var body map[string]map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	e := body["error"]
	if len(body) != 1 || len(e) != 2 || e["code"] != code || e["message"] == "" {
		t.Errorf("body = %s, want error code %q", rec.Body, code)
	}
}

func TestRecommendation(t *testing.T) {
	forEachClient(t, func(t *testing.T, client string) {
		up, seen := newUpstream(t, 0, http.StatusOK)
		db := user42()
		rec := serveWith(client, testConfig(up.URL), db, "GET", "/recommendation/42?db_ms=0&llm_ms=7")
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		wantPrompt := "User 42 spent 91234 of a 75000 cent budget over 20 transactions; top category: rent. One tip?"
		advice := strings.Join(mockTokens(wantPrompt, 16), " ")
		want := `{"user_id":42,"name":"User 42","budget_cents":75000,"spent_cents":91234,"transactions":20,` +
			`"top_category":"rent","advice":"` + advice + `","served_by":"go-gin"}`
		if rec.Body.String() != want { // exact bytes: checks the key order too
			t.Errorf("body\n got %s\nwant %s", rec.Body, want)
		}
		got := <-seen
		if got.latency != "7" {
			t.Errorf("X-Mock-Latency-Ms = %q", got.latency)
		}
		wantMsgs := []chatMessage{{"system", "You are a concise personal-finance assistant."}, {"user", wantPrompt}}
		if got.body.Model != "gpt-4o-mini" || fmt.Sprint(got.body.Messages) != fmt.Sprint(wantMsgs) || got.body.Stream {
			t.Errorf("upstream request = %+v", got.body)
		}
		if db.calls != 1 || db.waits[0] != 0 {
			t.Errorf("store calls %d waits %v", db.calls, db.waits)
		}
	})
}

func TestRecommendationDefaultsAndNullCategory(t *testing.T) {
	forEachClient(t, func(t *testing.T, client string) {
		up, seen := newUpstream(t, 0, http.StatusOK)
		db := &fakeStore{sum: summary{Name: "User 7", BudgetCents: 100}}
		rec := serveWith(client, testConfig(up.URL), db, "GET", "/recommendation/7")
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"top_category":null,`) {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		got := <-seen
		if p := got.body.Messages[1].Content; p != "User 7 spent 0 of a 100 cent budget over 0 transactions; top category: none. One tip?" {
			t.Errorf("prompt %q", p)
		}
		if got.latency != "500" || db.waits[0] != 50*time.Millisecond {
			t.Errorf("defaults not applied: latency %q, db wait %v", got.latency, db.waits[0])
		}
	})
}

func TestValidation(t *testing.T) {
	for _, target := range []string{
		"/recommendation/", "/recommendation/0", "/recommendation/-1", "/recommendation/2147483648",
		"/recommendation/abc", "/recommendation/+5", "/recommendation/1.5", "/recommendation/1e3",
		"/recommendation/%201", "/recommendation/1%20", "/recommendation/0x10", "/recommendation/%D9%A1",
		"/recommendation/99999999999999999999999", "/recommendation/--1", "/recommendation/-",
		"/recommendation/1?db_ms=", "/recommendation/1?db_ms=-1", "/recommendation/1?db_ms=5001",
		"/recommendation/1?db_ms=1.0", "/recommendation/1?db_ms=%2B1", "/recommendation/1?db_ms=1%0A",
		"/recommendation/1?llm_ms=", "/recommendation/1?llm_ms=20001", "/recommendation/1?llm_ms=abc",
		"/recommendation/x?db_ms=1", "/stream/", "/stream/0", "/stream/1?tokens=0", "/stream/1?tokens=1001",
		"/stream/1?tokens=", "/stream/1?llm_ms=-5", "/cpu?n=0", "/cpu?n=5000001", "/cpu?n=", "/cpu?n=abc",
		"/cpu?n=-1", "/cpu?n=1e5", "/cpu?n=18446744073709551616",
	} {
		t.Run(target, func(t *testing.T) {
			db := user42()
			rec := serve(testConfig("http://127.0.0.1:1"), db, "GET", target)
			wantError(t, rec, http.StatusBadRequest, "invalid_parameter")
			if db.calls != 0 {
				t.Error("the store was called before validation finished")
			}
		})
	}
}

func TestValidationOrder(t *testing.T) {
	rec := serve(testConfig(""), user42(), "GET", "/stream/0?db_ms=x&llm_ms=y&tokens=z")
	if !strings.Contains(rec.Body.String(), "user_id") {
		t.Errorf("first error should name user_id: %s", rec.Body)
	}
	rec = serve(testConfig(""), user42(), "GET", "/stream/1?tokens=z&llm_ms=y&db_ms=x")
	if !strings.Contains(rec.Body.String(), "db_ms") {
		t.Errorf("second check should be db_ms: %s", rec.Body)
	}
}

func TestValidEdges(t *testing.T) {
	forEachClient(t, func(t *testing.T, client string) {
		up, _ := newUpstream(t, 0, http.StatusOK)
		for _, target := range []string{
			"/recommendation/2147483647?db_ms=5000&llm_ms=0", "/recommendation/1?db_ms=-0&llm_ms=20000",
			"/recommendation/007", "/stream/1?tokens=1000&llm_ms=0", "/stream/1?tokens=1",
		} {
			if rec := serveWith(client, testConfig(up.URL), user42(), "GET", target); rec.Code != http.StatusOK {
				t.Errorf("%s: status %d %s", target, rec.Code, rec.Body)
			}
		}
	})
}

func TestRoutingErrors(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	for _, tc := range []struct {
		method, target string
		status         int
		code           string
	}{
		{"GET", "/nope", 404, "not_found"},
		{"GET", "/", 404, "not_found"},
		{"GET", "/healthz/", 404, "not_found"},
		{"GET", "/recommendation/1/extra", 404, "not_found"},
		{"POST", "/recommendation/1", 405, "method_not_allowed"},
		{"DELETE", "/healthz", 405, "method_not_allowed"},
		{"PUT", "/cpu", 405, "method_not_allowed"},
		{"POST", "/stream/1", 405, "method_not_allowed"},
	} {
		wantError(t, serve(cfg, user42(), tc.method, tc.target), tc.status, tc.code)
	}
}

func TestDatabaseErrors(t *testing.T) {
	cfg := testConfig("http://127.0.0.1:1")
	wantError(t, serve(cfg, &fakeStore{err: errNotFound}, "GET", "/recommendation/9999999"), 404, "not_found")
	wantError(t, serve(cfg, &fakeStore{err: errDBUnavailable}, "GET", "/recommendation/1"), 503, "database_unavailable")
	wantError(t, serve(cfg, &fakeStore{err: errDBUnavailable}, "GET", "/stream/1"), 503, "database_unavailable")
	wantError(t, serve(cfg, &fakeStore{pingErr: errDBUnavailable}, "GET", "/readyz"), 503, "database_unavailable")
	if rec := serve(cfg, &fakeStore{}, "GET", "/readyz"); rec.Code != 200 || rec.Body.String() != `{"status":"ready"}` {
		t.Errorf("readyz: %d %s", rec.Code, rec.Body)
	}
	if rec := serve(cfg, &fakeStore{pingErr: errDBUnavailable}, "GET", "/healthz"); rec.Code != 200 || rec.Body.String() != `{"status":"ok"}` {
		t.Errorf("healthz: %d %s", rec.Code, rec.Body)
	}
}

func TestUpstreamErrors(t *testing.T) {
	forEachClient(t, func(t *testing.T, client string) {
		failing, seen := newUpstream(t, 0, http.StatusInternalServerError)
		wantError(t, serveWith(client, testConfig(failing.URL), user42(), "GET", "/recommendation/1"), 502, "upstream_error")
		wantError(t, serveWith(client, testConfig(failing.URL), user42(), "GET", "/stream/1"), 502, "upstream_error")
		if n := len(seen); n != 2 {
			t.Errorf("upstream got %d requests for 2 failing calls: retries must be off", n)
		}

		closed := httptest.NewServer(http.NotFoundHandler())
		closed.Close() // connection refused
		wantError(t, serveWith(client, testConfig(closed.URL), user42(), "GET", "/recommendation/1"), 502, "upstream_error")

		slow, _ := newUpstream(t, 2*time.Second, http.StatusOK)
		cfg := testConfig(slow.URL)
		cfg.upstreamTimeout = 50 * time.Millisecond
		start := time.Now()
		wantError(t, serveWith(client, cfg, user42(), "GET", "/recommendation/1"), 504, "upstream_timeout")
		wantError(t, serveWith(client, cfg, user42(), "GET", "/stream/1"), 504, "upstream_timeout")
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("timeouts took %v", elapsed)
		}
	})
}

func TestStream(t *testing.T) {
	forEachClient(t, func(t *testing.T, client string) {
		up, seen := newUpstream(t, 0, http.StatusOK)
		rec := serveWith(client, testConfig(up.URL), user42(), "GET", "/stream/42?llm_ms=200&tokens=4&db_ms=0")
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "text/event-stream" {
			t.Fatalf("status %d, Content-Type %q: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
		prompt := "User 42 spent 91234 of a 75000 cent budget over 20 transactions; top category: rent. One tip?"
		tokens := mockTokens(prompt, 4)
		want := fmt.Sprintf("data: {\"token\": \"%s \"}\n\ndata: {\"token\": \"%s \"}\n\n"+
			"data: {\"token\": \"%s \"}\n\ndata: {\"token\": \"%s\"}\n\ndata: [DONE]\n\n",
			tokens[0], tokens[1], tokens[2], tokens[3])
		if rec.Body.String() != want {
			t.Errorf("stream\n got %q\nwant %q", rec.Body, want)
		}
		got := <-seen
		if !got.body.Stream || got.body.MaxCompletionTokens != 4 || got.latency != "200" {
			t.Errorf("upstream request %+v latency %q", got.body, got.latency)
		}
	})
}

func TestPanicGivesJSON(t *testing.T) {
	cfg := testConfig("")
	h := newRouter(cfg, &fakeStore{}, mustLLM(cfg, clientSDK), io.Discard)
	h.GET("/boom", func(*gin.Context) { panic("boom") })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
	wantError(t, rec, 500, "internal_error")
}

func TestCPU(t *testing.T) {
	rec := serve(testConfig(""), &fakeStore{}, "GET", "/cpu?n=10")
	if rec.Code != 200 || rec.Body.String() != `{"n":10,"result":16}` { // 0+1+1+1+2+2+2+2+2+3
		t.Errorf("cpu: %d %s", rec.Code, rec.Body)
	}
	rec = serve(testConfig(""), &fakeStore{}, "GET", "/cpu")
	if rec.Body.String() != `{"n":100000,"result":21031854}` {
		t.Errorf("cpu default: %s", rec.Body)
	}
}

func TestISqrt(t *testing.T) {
	r := int64(0) // brute force: r = largest with r*r <= i
	for i := int64(0); i < 200_000; i++ {
		for (r+1)*(r+1) <= i {
			r++
		}
		if got := isqrt(i); got != r {
			t.Fatalf("isqrt(%d) = %d, want %d", i, got, r)
		}
	}
	// Around large perfect squares, where float64 rounding would be off by one.
	for _, k := range []int64{2236, 67108864, 94906265, 134217729, 1518500249} {
		for _, d := range []int64{-1, 0, 1} {
			n, want := k*k+d, k
			if d < 0 {
				want = k - 1
			}
			if got := isqrt(n); got != want {
				t.Errorf("isqrt(%d) = %d, want %d", n, got, want)
			}
		}
	}
	for _, n := range []int64{1, 2, 5, 1000, 123457, 5_000_000} {
		if got, want := sumISqrt(n), closedFormSum(n); got != want {
			t.Errorf("sumISqrt(%d) = %d, want %d", n, got, want)
		}
	}
	if got := sumISqrt(5_000_000); got != 7_451_059_694 /* Python: sum(map(math.isqrt, range(5_000_000))) */ {
		t.Errorf("sumISqrt(5e6) = %d", got)
	}
}

// closedFormSum counts each isqrt value k over the i in [k², (k+1)²) below n.
func closedFormSum(n int64) int64 {
	var total int64
	for k := int64(0); k*k < n; k++ {
		hi := min((k+1)*(k+1), n)
		total += k * (hi - k*k)
	}
	return total
}

func TestLoadConfig(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgresql://u@127.0.0.1:5432/lab", "UPSTREAM_URL": "http://x:9000/",
		"TARGET_NAME": "go-gin", "UPSTREAM_TIMEOUT_S": "0.25", "DB_POOL_TIMEOUT_S": "2", "DB_TIMEOUT_S": "1.5"}
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.upstreamURL != "http://x:9000" || cfg.upstreamTimeout != 250*time.Millisecond ||
		cfg.poolTimeout != 2*time.Second || cfg.dbTimeout != 1500*time.Millisecond || cfg.poolSize != 15 ||
		cfg.dbMs != 50 || cfg.llmMs != 500 {
		t.Errorf("cfg = %+v", cfg)
	}
	delete(env, "DB_TIMEOUT_S")
	if cfg, _ = loadConfig(func(k string) string { return env[k] }); cfg.dbTimeout != 10*time.Second {
		t.Errorf("DB_TIMEOUT_S's default: %v", cfg.dbTimeout)
	}
	env["DB_POOL_SIZE"], env["UPSTREAM_TIMEOUT_S"], env["DB_TIMEOUT_S"] = "x", "-1", "0"
	delete(env, "TARGET_NAME")
	_, err = loadConfig(func(k string) string { return env[k] })
	for _, key := range []string{"DB_POOL_SIZE", "UPSTREAM_TIMEOUT_S", "DB_TIMEOUT_S", "TARGET_NAME"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v should mention %s", err, key)
		}
	}
}

func TestRunFailsWithoutConfig(t *testing.T) {
	err := run(context.Background(), []string{"go-gin", "-addr", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("run() = %v", err)
	}
}

// slowStream is an upstream that sends one content chunk per entry of gaps, each after its gap.
func slowStream(t *testing.T, gaps ...time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		for i, gap := range gaps {
			select {
			case <-time.After(gap):
			case <-r.Context().Done():
				return
			}
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"t%d \"}}]}\n\n", i)
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStreamTimeoutIsPerRead(t *testing.T) {
	forEachClient(t, func(t *testing.T, client string) {
		gap := 40 * time.Millisecond
		// Six gaps of 40 ms: longer in total than the 100 ms timeout, but never quiet for that long.
		cfg := testConfig(slowStream(t, gap, gap, gap, gap, gap, gap).URL)
		cfg.upstreamTimeout = 100 * time.Millisecond
		rec := serveWith(client, cfg, user42(), "GET", "/stream/1")
		if rec.Code != 200 || strings.Count(rec.Body.String(), `"token"`) != 6 || !strings.HasSuffix(rec.Body.String(), "data: [DONE]\n\n") {
			t.Errorf("status %d body %q", rec.Code, rec.Body)
		}
		// An upstream that goes quiet mid-stream: the stream ends, without [DONE].
		cfg.upstreamURL = slowStream(t, gap, time.Second).URL
		rec = serveWith(client, testConfig(cfg.upstreamURL), user42(), "GET", "/stream/1") // sanity: generous timeout completes
		if !strings.HasSuffix(rec.Body.String(), "data: [DONE]\n\n") {
			t.Errorf("generous timeout: %q", rec.Body)
		}
		start := time.Now()
		rec = serveWith(client, cfg, user42(), "GET", "/stream/1")
		if rec.Code != 200 || strings.Count(rec.Body.String(), `"token"`) != 1 || strings.Contains(rec.Body.String(), "[DONE]") {
			t.Errorf("stalled upstream: status %d body %q", rec.Code, rec.Body)
		}
		if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
			t.Errorf("stalled stream took %v to give up", elapsed)
		}
	})
}
