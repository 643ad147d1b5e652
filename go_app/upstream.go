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

// llm calls the OpenAI-compatible chat-completions API at UPSTREAM_URL with plain net/http.
type llm struct {
	client  *http.Client
	url     string
	timeout time.Duration // UPSTREAM_TIMEOUT_S
}

func newLLM(cfg config) *llm {
	transport := &http.Transport{
		Proxy:       nil, // the upstream is a local service; never route it through an env proxy
		DialContext: (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		// Keep-alive pool as large as the load: the default of 2 idle conns per host would make
		// most requests open a fresh TCP connection at a few hundred in flight.
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
	}
	return &llm{client: &http.Client{Transport: transport}, url: cfg.upstreamURL + "/v1/chat/completions",
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

func newChatRequest(prompt string) chatRequest {
	return chatRequest{Model: "gpt-4o-mini", Messages: []chatMessage{
		{Role: "system", Content: "You are a concise personal-finance assistant."},
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
func (l *llm) post(ctx context.Context, req chatRequest, llmMs int64) (*http.Response, error) {
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

// complete returns choices[0].message.content of a chat.completion; the timeout covers the
// whole exchange (the mock sends the body in one piece after the latency).
func (l *llm) complete(ctx context.Context, prompt string, llmMs int64) (string, error) {
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

// stream opens a streamed completion; iterate it like a bufio.Scanner and Close it. The timeout
// bounds the wait for the response and then each gap between events, like the SDK's read
// timeout: a stream may last longer than UPSTREAM_TIMEOUT_S as long as it keeps moving.
func (l *llm) stream(ctx context.Context, prompt string, llmMs, tokens int64) (*tokenStream, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(l.timeout, func() { cancel(errUpstreamTimeout) })
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
	return &tokenStream{ctx: ctx, cancel: cancel, idle: timer, timeout: l.timeout, body: resp.Body, lines: sc}, nil
}

// tokenStream reads chat.completion.chunk server-sent events and yields the non-empty
// choices[0].delta.content of each.
type tokenStream struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	idle    *time.Timer // cancels ctx when the upstream goes quiet for timeout
	timeout time.Duration
	body    io.ReadCloser
	lines   *bufio.Scanner
	token   string
	err     error
}

func (t *tokenStream) Next() bool {
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
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			t.err = fmt.Errorf("%w: bad chunk: %w", errUpstream, err)
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

func (t *tokenStream) Token() string { return t.token }
func (t *tokenStream) Err() error    { return t.err }

func (t *tokenStream) Close() {
	t.idle.Stop()
	t.body.Close()
	t.cancel(nil)
}
