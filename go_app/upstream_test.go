package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

type capturedRequest struct {
	path    string
	headers http.Header
	body    map[string]any
}

// recordingUpstream answers every request with status (and an OpenAI error body when not 200)
// and records what it received.
func recordingUpstream(t *testing.T, status int) (*httptest.Server, chan capturedRequest) {
	t.Helper()
	got := make(chan capturedRequest, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		got <- capturedRequest{r.URL.Path, r.Header.Clone(), body}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if status != http.StatusOK {
			io.WriteString(w, `{"error":{"message":"injected","type":"server_error","param":null,"code":"mock_fault"}}`)
			return
		}
		io.WriteString(w, `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}`)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// The SDK must put on the wire what CONTRACT.md specifies, i.e. what the raw client sends.
func TestClientsSendTheSameRequest(t *testing.T) {
	srv, got := recordingUpstream(t, http.StatusOK)
	cfg := testConfig(srv.URL)
	ctx := context.Background()
	requests := map[string][2]capturedRequest{}
	for _, client := range clients {
		up := mustLLM(cfg, client)
		if advice, err := up.complete(ctx, "the prompt", 123); err != nil || advice != "ok" {
			t.Fatalf("%s: complete = %q, %v", client, advice, err)
		}
		completion := <-got
		if s, err := up.stream(ctx, "the prompt", 45, 7); err == nil { // a JSON answer: no tokens
			for s.Next() {
			}
			s.Close()
		}
		requests[client] = [2]capturedRequest{completion, <-got}
	}
	wantComplete := map[string]any{"model": "gpt-4o-mini", "messages": []any{
		map[string]any{"role": "system", "content": "You are a concise personal-finance assistant."},
		map[string]any{"role": "user", "content": "the prompt"},
	}}
	wantStream := map[string]any{"stream": true, "max_completion_tokens": 7.0}
	for k, v := range wantComplete {
		wantStream[k] = v
	}
	for client, reqs := range requests {
		for i, want := range []struct {
			body    map[string]any
			latency string
		}{{wantComplete, "123"}, {wantStream, "45"}} {
			r := reqs[i]
			if r.path != "/v1/chat/completions" || r.headers.Get("X-Mock-Latency-Ms") != want.latency ||
				!strings.HasPrefix(r.headers.Get("Content-Type"), "application/json") {
				t.Errorf("%s request %d: path %s, headers %v", client, i, r.path, r.headers)
			}
			if !reflect.DeepEqual(r.body, want.body) {
				t.Errorf("%s request %d body\n got %v\nwant %v", client, i, r.body, want.body)
			}
		}
	}
	if auth := requests[clientSDK][0].headers.Get("Authorization"); auth != "Bearer mock" {
		t.Errorf("SDK Authorization = %q", auth)
	}
}

func TestSDKIgnoresOpenAIEnvironment(t *testing.T) {
	srv, got := recordingUpstream(t, http.StatusOK)
	t.Setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
	t.Setenv("OPENAI_API_KEY", "sk-from-env")
	if _, err := mustLLM(testConfig(srv.URL), clientSDK).complete(context.Background(), "p", 0); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.headers.Get("Authorization") != "Bearer mock" {
		t.Errorf("Authorization = %q", r.headers.Get("Authorization"))
	}
}

func TestNewLLMRejectsUnknownClient(t *testing.T) {
	if _, err := newLLM(testConfig(""), "grpc"); err == nil || !strings.Contains(err.Error(), "-client") {
		t.Errorf("newLLM(grpc) = %v", err)
	}
}

// Error classification of both clients, at the llm level: every answered 4xx/5xx and every
// connection failure is errUpstream after exactly one attempt; only a timeout is errUpstreamTimeout.
func TestClientErrors(t *testing.T) {
	forEachClient(t, func(t *testing.T, client string) {
		ctx := context.Background()
		call := map[string]func(up llm) error{
			"complete": func(up llm) error { _, err := up.complete(ctx, "p", 0); return err },
			"stream": func(up llm) error {
				s, err := up.stream(ctx, "p", 0, 4)
				if err == nil {
					s.Close()
				}
				return err
			},
		}
		for name, do := range call {
			for _, status := range []int{400, 429, 500, 503} { // the SDK retries 429 and 5xx by default
				srv, got := recordingUpstream(t, status)
				err := do(mustLLM(testConfig(srv.URL), client))
				if !errors.Is(err, errUpstream) || errors.Is(err, errUpstreamTimeout) {
					t.Errorf("%s HTTP %d: err = %v, want errUpstream", name, status, err)
				}
				if n := len(got); n != 1 {
					t.Errorf("%s HTTP %d: %d attempts, want 1 (retries off)", name, status, n)
				}
			}

			closed := httptest.NewServer(http.NotFoundHandler())
			closed.Close()
			if err := do(mustLLM(testConfig(closed.URL), client)); !errors.Is(err, errUpstream) {
				t.Errorf("%s connection refused: err = %v, want errUpstream", name, err)
			}

			slow, _ := newUpstream(t, 2*time.Second, http.StatusOK)
			cfg := testConfig(slow.URL)
			cfg.upstreamTimeout = 50 * time.Millisecond
			start := time.Now()
			if err := do(mustLLM(cfg, client)); !errors.Is(err, errUpstreamTimeout) {
				t.Errorf("%s slow upstream: err = %v, want errUpstreamTimeout", name, err)
			}
			if elapsed := time.Since(start); elapsed > time.Second {
				t.Errorf("%s slow upstream: gave up after %v", name, elapsed)
			}
		}
	})
}

// The request's own deadline (requestBudget, shared with the DB step) also ends the call as a
// timeout, even when UPSTREAM_TIMEOUT_S is longer.
func TestClientsHonourTheRequestDeadline(t *testing.T) {
	forEachClient(t, func(t *testing.T, client string) {
		slow, _ := newUpstream(t, 2*time.Second, http.StatusOK)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := mustLLM(testConfig(slow.URL), client).complete(ctx, "p", 0)
		if !errors.Is(err, errUpstreamTimeout) {
			t.Errorf("err = %v, want errUpstreamTimeout", err)
		}
	})
}

func TestClientStreamTokens(t *testing.T) {
	forEachClient(t, func(t *testing.T, client string) {
		up, _ := newUpstream(t, 0, http.StatusOK)
		s, err := mustLLM(testConfig(up.URL), client).stream(context.Background(), "p", 0, 5)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var tokens []string
		for s.Next() {
			tokens = append(tokens, s.Token())
		}
		if s.Err() != nil {
			t.Errorf("Err() = %v", s.Err())
		}
		if got, want := strings.Join(tokens, ""), strings.Join(mockTokens("p", 5), " "); got != want {
			t.Errorf("tokens %q, joined %q, want %q", tokens, got, want)
		}
	})
}

func TestRunRejectsUnknownClient(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgresql://u@127.0.0.1:1/lab", "UPSTREAM_URL": "http://127.0.0.1:1",
		"TARGET_NAME": "go-gin"}
	err := run(context.Background(), []string{"go-gin", "-addr", "127.0.0.1:0", "-client", "grpc"},
		func(k string) string { return env[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `-client "grpc"`) {
		t.Errorf("run() = %v", err)
	}
}

// A stream that breaks after its first token ends the iteration with the same error class on
// both clients: an in-band error event or a cut connection → errUpstream, silence → timeout.
func TestClientMidStreamFailures(t *testing.T) {
	breakAfterOneToken := func(mode string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t0 \"}}]}\n\n")
			w.(http.Flusher).Flush()
			switch mode {
			case "error":
				io.WriteString(w, "data: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n")
			case "drop": // an unfinished chunked body
				conn, _, _ := http.NewResponseController(w).Hijack()
				conn.Close()
			case "stall":
				<-r.Context().Done()
			}
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	forEachClient(t, func(t *testing.T, client string) {
		for mode, want := range map[string]error{"error": errUpstream, "drop": errUpstream, "stall": errUpstreamTimeout} {
			cfg := testConfig(breakAfterOneToken(mode).URL)
			cfg.upstreamTimeout = 100 * time.Millisecond
			s, err := mustLLM(cfg, client).stream(context.Background(), "p", 0, 4)
			if err != nil {
				t.Fatalf("%s: %v", mode, err)
			}
			var tokens []string
			for s.Next() {
				tokens = append(tokens, s.Token())
			}
			s.Close()
			if len(tokens) != 1 || !errors.Is(s.Err(), want) || (want == errUpstream && errors.Is(s.Err(), errUpstreamTimeout)) {
				t.Errorf("%s: tokens %q, Err() = %v, want %v", mode, tokens, s.Err(), want)
			}
		}
	})
}

// bench faults' upstream-drip and upstream-malformed: a 200 whose body comes a byte at a time past
// UPSTREAM_TIMEOUT_S is a timeout of the whole call (not read to its end), and a 200 with half a
// completion is errUpstream.
func TestCompleteBoundsTheWholeCallAndRejectsHalfACompletion(t *testing.T) {
	const body = `{"object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"}}]}`
	answer := func(write func(w http.ResponseWriter, r *http.Request)) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			write(w, r)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	drip := answer(func(w http.ResponseWriter, r *http.Request) {
		for i := range len(body) {
			io.WriteString(w, body[i:i+1])
			w.(http.Flusher).Flush()
			select {
			case <-time.After(20 * time.Millisecond): // the whole body takes far longer than the timeout
			case <-r.Context().Done():
				return
			}
		}
	})
	half := answer(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body[:len(body)/2]) })
	forEachClient(t, func(t *testing.T, client string) {
		cfg := testConfig(drip)
		cfg.upstreamTimeout = 100 * time.Millisecond
		start := time.Now()
		if _, err := mustLLM(cfg, client).complete(context.Background(), "p", 0); !errors.Is(err, errUpstreamTimeout) {
			t.Errorf("dribbled body: err = %v, want errUpstreamTimeout", err)
		}
		if elapsed := time.Since(start); elapsed > 500*time.Millisecond {
			t.Errorf("dribbled body: gave up after %v", elapsed)
		}
		_, err := mustLLM(testConfig(half), client).complete(context.Background(), "p", 0)
		if !errors.Is(err, errUpstream) || errors.Is(err, errUpstreamTimeout) {
			t.Errorf("half a completion: err = %v, want errUpstream", err)
		}
	})
}
