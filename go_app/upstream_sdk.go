package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
)

// sdkLLM calls the upstream through the official openai-go SDK, configured like the Python
// targets' openai.OpenAI(base_url=..., api_key="mock", max_retries=0, timeout=UPSTREAM_TIMEOUT_S).
type sdkLLM struct {
	client  openai.Client
	timeout time.Duration // UPSTREAM_TIMEOUT_S, applied per call through the context
}

func newSDKLLM(cfg config) *sdkLLM {
	return &sdkLLM{
		client: openai.NewClient(
			// Explicit base URL and key: OPENAI_BASE_URL / OPENAI_API_KEY in the environment must not
			// redirect the lab's traffic.
			option.WithBaseURL(cfg.upstreamURL+"/v1"),
			option.WithAPIKey("mock"),
			option.WithMaxRetries(0), // a failure is the target's answer (502), as in every target
			// The same keep-alive pool as the raw client; the SDK's default client keeps net/http's
			// 2 idle connections per host.
			option.WithHTTPClient(newHTTPClient()),
		),
		timeout: cfg.upstreamTimeout,
	}
}

func (l *sdkLLM) params(prompt string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model: chatModel,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage(systemPrompt),
			openai.UserMessage(prompt),
		},
	}
}

func latencyHeader(llmMs int64) option.RequestOption {
	return option.WithHeader("X-Mock-Latency-Ms", strconv.FormatInt(llmMs, 10))
}

func (l *sdkLLM) complete(ctx context.Context, prompt string, llmMs int64) (string, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, l.timeout, errUpstreamTimeout)
	defer cancel()
	completion, err := l.client.Chat.Completions.New(ctx, l.params(prompt), latencyHeader(llmMs))
	if err != nil { // *openai.Error for a 4xx/5xx answer, the transport's error otherwise
		return "", upstreamFailure(ctx, err)
	}
	if len(completion.Choices) == 0 {
		return "", fmt.Errorf("%w: completion without choices", errUpstream)
	}
	return completion.Choices[0].Message.Content, nil
}

func (l *sdkLLM) stream(ctx context.Context, prompt string, llmMs, tokens int64) (tokenStream, error) {
	ctx, cancel, timer := idleTimeout(ctx, l.timeout)
	params := l.params(prompt)
	params.MaxCompletionTokens = openai.Int(tokens)
	// NewStreaming returns once the response headers are in; a failed request is already its Err.
	s := l.client.Chat.Completions.NewStreaming(ctx, params, latencyHeader(llmMs))
	if err := s.Err(); err != nil {
		err = upstreamFailure(ctx, err) // before cancel: the cause tells a timeout apart
		timer.Stop()
		s.Close()
		cancel(nil)
		return nil, err
	}
	return &sdkTokenStream{ctx: ctx, cancel: cancel, idle: timer, timeout: l.timeout, chunks: s}, nil
}

// sdkTokenStream reads the SDK's decoded chat.completion.chunk events.
type sdkTokenStream struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	idle    *time.Timer // cancels ctx when the upstream goes quiet for timeout
	timeout time.Duration
	chunks  *ssestream.Stream[openai.ChatCompletionChunk]
	token   string
	err     error
}

func (t *sdkTokenStream) Next() bool {
	for t.chunks.Next() { // false at data: [DONE], at the end of the body or on an error
		t.idle.Reset(t.timeout)
		chunk := t.chunks.Current()
		if len(chunk.Choices) > 0 && chunk.Choices[0].Delta.Content != "" {
			t.token = chunk.Choices[0].Delta.Content
			return true
		}
	}
	if err := t.chunks.Err(); err != nil && t.err == nil {
		t.err = upstreamFailure(t.ctx, err)
	}
	return false
}

func (t *sdkTokenStream) Token() string { return t.token }
func (t *sdkTokenStream) Err() error    { return t.err }

func (t *sdkTokenStream) Close() {
	t.idle.Stop()
	t.chunks.Close()
	t.cancel(nil)
}
