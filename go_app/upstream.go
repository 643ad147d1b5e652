package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

var (
	errUpstream        = errors.New("upstream error")
	errUpstreamTimeout = errors.New("upstream timeout")
)

// llm is the upstream chat-completions API as the handlers use it. Two clients implement it, the
// same binary picks one with -client: sdkLLM, the official openai-go SDK (go-gin, the default), and
// rawLLM, plain net/http (go-gin-raw), so that the cost of the SDK shows as its own row.
// Errors wrap errUpstreamTimeout when UPSTREAM_TIMEOUT_S (or the request's deadline) elapsed,
// errUpstream otherwise.
type llm interface {
	// complete returns choices[0].message.content; the timeout covers the whole exchange (the
	// mock sends the body in one piece after the latency).
	complete(ctx context.Context, prompt string, llmMs int64) (string, error)
	// stream opens a streamed completion (errors up to the response headers are returned here,
	// before any token). The timeout bounds the wait for the response and then each gap between
	// events, like the Python SDK's read timeout: a stream may last longer than
	// UPSTREAM_TIMEOUT_S as long as it keeps moving.
	stream(ctx context.Context, prompt string, llmMs, tokens int64) (tokenStream, error)
}

// tokenStream yields the non-empty choices[0].delta.content of each chat.completion.chunk; iterate
// it like a bufio.Scanner and Close it. Err is nil when the upstream ended the stream normally.
type tokenStream interface {
	Next() bool
	Token() string
	Err() error
	Close()
}

// The values of -client.
const (
	clientSDK = "sdk"
	clientRaw = "raw"
)

func newLLM(cfg config, client string) (llm, error) {
	switch client {
	case clientSDK:
		return newSDKLLM(cfg), nil
	case clientRaw:
		return newRawLLM(cfg), nil
	}
	return nil, fmt.Errorf("-client %q: want %s or %s", client, clientSDK, clientRaw)
}

// newHTTPClient is the keep-alive client both upstream clients send through, so that they differ
// only in what runs above net/http.
func newHTTPClient() *http.Client {
	transport := &http.Transport{
		Proxy:       nil, // the upstream is a local service; never route it through an env proxy
		DialContext: (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		// Keep-alive pool as large as the load: the default of 2 idle conns per host would make
		// most requests open a fresh TCP connection at a few hundred in flight.
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
	}
	return &http.Client{Transport: transport}
}

// idleTimeout cancels ctx with errUpstreamTimeout when timeout passes without a Reset: the
// per-read timeout of a stream. The caller stops it and cancels ctx when done.
func idleTimeout(ctx context.Context, timeout time.Duration) (context.Context, context.CancelCauseFunc, *time.Timer) {
	ctx, cancel := context.WithCancelCause(ctx)
	return ctx, cancel, time.AfterFunc(timeout, func() { cancel(errUpstreamTimeout) })
}

// rawLLM calls the OpenAI-compatible chat-completions API at UPSTREAM_URL with plain net/http.
type rawLLM struct {
	client  *http.Client
	url     string
	timeout time.Duration // UPSTREAM_TIMEOUT_S
}

func newRawLLM(cfg config) *rawLLM {
	return &rawLLM{client: newHTTPClient(), url: cfg.upstreamURL + "/v1/chat/completions",
		timeout: cfg.upstreamTimeout}
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatRequest struct {
	Model               string        `json:"model"`
	Messages            []chatMessage `json:"messages"`
	Stream              bool          `json:"stream,omitempty"`
	MaxCompletionTokens int64         `json:"max_completion_tokens,omitempty"`
}

// The request of CONTRACT.md, step 3, besides the prompt.
const (
	chatModel    = "gpt-4o-mini"
	systemPrompt = "You are a concise personal-finance assistant."
)

func newChatRequest(prompt string) chatRequest {
	return chatRequest{Model: chatModel, Messages: []chatMessage{
		{Role: "system", Content: systemPrompt},
		{Role: "user", Content: prompt},
	}}
}

// prompt is CONTRACT.md's format string; the mock's digest (and so `advice`) depends on every byte.
func prompt(s summary) string {
	top := "none"
	if s.TopCategory != nil {
		top = *s.TopCategory
	}
	return fmt.Sprintf("%s spent %d of a %d cent budget over %d transactions; top category: %s. One tip?",
		s.Name, s.SpentCents, s.BudgetCents, s.Transactions, top)
}

// post sends req and returns the open 2xx response; the caller closes its body. ctx carries the
// caller's timeout (see complete and stream).
func (l *rawLLM) post(ctx context.Context, req chatRequest, llmMs int64) (*http.Response, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUpstream, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("X-Mock-Latency-Ms", strconv.FormatInt(llmMs, 10))
	resp, err := l.client.Do(hreq)
	if err != nil {
		return nil, upstreamFailure(ctx, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // drain: keep the conn alive
		resp.Body.Close()
		return nil, fmt.Errorf("%w: HTTP %d", errUpstream, resp.StatusCode)
	}
	return resp, nil
}

// upstreamFailure classifies err: the client timeout elapsed → 504, anything else → 502.
func upstreamFailure(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errUpstreamTimeout) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", errUpstreamTimeout, err)
	}
	return fmt.Errorf("%w: %w", errUpstream, err)
}

func (l *rawLLM) complete(ctx context.Context, prompt string, llmMs int64) (string, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, l.timeout, errUpstreamTimeout)
	defer cancel()
	resp, err := l.post(ctx, newChatRequest(prompt), llmMs)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var completion struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&completion); err != nil {
		return "", upstreamFailure(ctx, err)
	}
	if len(completion.Choices) == 0 {
		return "", fmt.Errorf("%w: completion without choices", errUpstream)
	}
	return completion.Choices[0].Message.Content, nil
}

func (l *rawLLM) stream(ctx context.Context, prompt string, llmMs, tokens int64) (tokenStream, error) {
	ctx, cancel, timer := idleTimeout(ctx, l.timeout)
	req := newChatRequest(prompt)
	req.Stream, req.MaxCompletionTokens = true, tokens
	resp, err := l.post(ctx, req, llmMs)
	if err != nil {
		timer.Stop()
		cancel(nil)
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	return &rawTokenStream{ctx: ctx, cancel: cancel, idle: timer, timeout: l.timeout, body: resp.Body, lines: sc}, nil
}

// rawTokenStream parses the chat.completion.chunk server-sent events itself.
type rawTokenStream struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	idle    *time.Timer // cancels ctx when the upstream goes quiet for timeout
	timeout time.Duration
	body    io.ReadCloser
	lines   *bufio.Scanner
	token   string
	err     error
}

func (t *rawTokenStream) Next() bool {
	for t.err == nil && t.lines.Scan() {
		t.idle.Reset(t.timeout)
		data, ok := strings.CutPrefix(t.lines.Text(), "data:")
		if !ok {
			continue // blank separators, comments, event:/id: fields
		}
		data = strings.TrimSpace(data)
		if data == "[DONE]" {
			return false
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Error json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.err = fmt.Errorf("%w: bad chunk: %w", errUpstream, err)
			return false
		}
		if chunk.Error != nil { // an in-band OpenAI error event: the stream broke server-side
			t.err = fmt.Errorf("%w: error event in the stream", errUpstream) // as the SDKs raise
			return false
		}
		if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
			t.token = chunk.Choices[0].Delta.Content
			return true
		}
	}
	if err := t.lines.Err(); err != nil && t.err == nil {
		t.err = upstreamFailure(t.ctx, err)
	}
	return false
}

func (t *rawTokenStream) Token() string { return t.token }
func (t *rawTokenStream) Err() error    { return t.err }

func (t *rawTokenStream) Close() {
	t.idle.Stop()
	t.body.Close()
	t.cancel(nil)
}
