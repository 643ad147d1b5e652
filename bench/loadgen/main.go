// Command loadgen is a tiny closed-loop HTTP load generator (stdlib only): -c workers each send
// the next request as soon as the previous answer is read, for -d, over keep-alive connections.
// It prints one JSON line: {"requests","errors","rps","p50_ms","p99_ms"}.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

type result struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
}

func main() {
	url := flag.String("url", "", "target URL (required)")
	concurrency := flag.Int("c", 100, "requests in flight (workers)")
	duration := flag.Duration("d", 10*time.Second, "run duration")
	method := flag.String("method", "", "HTTP method (default GET, or POST when -body is set)")
	body := flag.String("body", "", "request body (sent as application/json)")
	timeout := flag.Duration("timeout", 30*time.Second, "per-request timeout")
	var headers headerFlags
	flag.Var(&headers, "header", "extra header k:v (repeatable)")
	flag.Parse()
	if *url == "" || *concurrency < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if *method == "" {
		*method = http.MethodGet
		if *body != "" {
			*method = http.MethodPost
		}
	}
	hdr := http.Header{}
	if *body != "" {
		hdr.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			fmt.Fprintf(os.Stderr, "bad -header %q (want k:v)\n", h)
			os.Exit(2)
		}
		hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}

	// One idle connection per worker, so every worker keeps its own keep-alive connection.
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{
		MaxIdleConns: *concurrency, MaxIdleConnsPerHost: *concurrency, DisableCompression: true,
	}}
	payload := []byte(*body)
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()

	latencies := make([][]time.Duration, *concurrency)
	errs := make([]int, *concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for ctx.Err() == nil {
				req, err := http.NewRequestWithContext(ctx, *method, *url, bytes.NewReader(payload))
				if err != nil {
					panic(err)
				}
				req.Header = hdr.Clone()
				t0 := time.Now()
				resp, err := client.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body) // read fully so the connection is reused
					resp.Body.Close()
				}
				if ctx.Err() != nil {
					return // cut off by the deadline: neither a success nor an error
				}
				if err != nil || resp.StatusCode >= 400 {
					errs[w]++
					continue
				}
				latencies[w] = append(latencies[w], time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()

	var all []time.Duration
	res := result{}
	for w := range latencies {
		all = append(all, latencies[w]...)
		res.Errors += errs[w]
	}
	slices.Sort(all)
	res.Requests = len(all) + res.Errors
	res.RPS = round(float64(len(all)) / elapsed)
	res.P50ms = percentile(all, 0.50)
	res.P99ms = percentile(all, 0.99)
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func percentile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return round(float64(sorted[i]) / float64(time.Millisecond))
}

func round(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }
