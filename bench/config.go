package bench

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/llmgate/llmgate/report"
)

// Endpoint names the OpenAI API a run calls.
type Endpoint string

// The two generation APIs vLLM serves.
const (
	Chat        Endpoint = "chat"        // POST /v1/chat/completions
	Completions Endpoint = "completions" // POST /v1/completions
)

// DefaultBackendHeader is the response header through which llmgate names
// the backend that served a request.
const DefaultBackendHeader = "X-Llmgate-Backend"

// Config describes one run. Start from DefaultConfig and change what you
// need; Run reports every unusable setting. In JSON, durations are seconds
// in keys ending _s (duration_s, warmup_s, timeout_s, drain_timeout_s) and
// distributions their text form ("lognormal:500,1,4000").
type Config struct {
	// URL is the target's base URL, e.g. http://127.0.0.1:8080; a trailing
	// "/v1" is accepted and dropped.
	URL string `json:"url"`
	// Model is sent in every request. Empty means the first model the
	// target lists at /v1/models.
	Model string `json:"model"`
	// APIKey, if set, is sent as "Authorization: Bearer APIKey". It is never
	// written to reports.
	APIKey   string   `json:"-"`
	Endpoint Endpoint `json:"endpoint"`
	// Stream asks for SSE with stream_options.include_usage. TTFT and
	// inter-token gaps exist only for streamed requests.
	Stream bool `json:"stream"`
	// IgnoreEOS sends vLLM's "ignore_eos": true, so every request generates
	// exactly its max_tokens.
	IgnoreEOS bool `json:"ignore_eos"`

	// Concurrency > 0 runs a closed loop: that many workers, each sending
	// its next request when the previous one ends.
	Concurrency int `json:"concurrency,omitempty"`
	// Rate > 0 runs an open loop instead: Poisson arrivals at Rate per
	// second, whatever the target does. At most MaxInFlight requests run at
	// once (0 means 1024); an arrival beyond that is not sent and counts as
	// a "dropped" error, so an overloaded target cannot make the generator
	// grow without bound.
	Rate        float64 `json:"rate,omitempty"`
	MaxInFlight int     `json:"max_inflight,omitempty"`

	// The run measures for Duration after Warmup, or until Requests
	// requests have started after Warmup, whichever comes first (zero turns
	// a limit off; one must be set). Requests that started during Warmup
	// are not measured.
	Duration time.Duration `json:"-"`
	Requests int           `json:"requests,omitempty"`
	Warmup   time.Duration `json:"-"`
	// Timeout bounds each request (0: none); a request that runs past it
	// counts as a "timeout" error.
	Timeout time.Duration `json:"-"`
	// DrainTimeout is how long requests still running when Duration ends
	// may take to finish; those cut off then count as incomplete, not as
	// errors.
	DrainTimeout time.Duration `json:"-"`

	// PromptTokens and MaxTokens are drawn per request. A prompt of N tokens
	// is N four-letter words, which is N tokens for llmgate's sim and close
	// to it for real BPE vocabularies; chat templates add a few more.
	PromptTokens Dist `json:"prompt_tokens"`
	MaxTokens    Dist `json:"max_tokens"`
	// PromptFile replays prompts from a JSONL file (see LoadPrompts) in
	// order, cycling; Prompts does the same from memory and wins over
	// PromptFile. A line's own max_tokens wins over MaxTokens.
	PromptFile string   `json:"prompt_file,omitempty"`
	Prompts    []Prompt `json:"-"`
	// Reuse adds shared system prompts and multi-turn sessions, what a
	// prefix cache feeds on (see Reuse); zero repeats nothing.
	Reuse Reuse `json:"reuse,omitzero"`
	// Seed makes the workload repeat: request k's prompt and max_tokens,
	// and the open loop's arrival times, depend only on Seed and k.
	Seed uint64 `json:"seed"`

	// BackendHeader names the response header that reveals the serving
	// backend; requests are counted per value. Empty turns counting off.
	BackendHeader string `json:"backend_header,omitempty"`
	// Insecure skips TLS certificate verification.
	Insecure bool `json:"insecure,omitempty"`
	// MaxSamples caps the latency samples kept per metric (0 means
	// 1,048,576); beyond it a uniform reservoir is kept (see stats.go).
	MaxSamples int `json:"max_samples,omitempty"`

	// Capacity, when its SLO or target rate is set, makes Run plan capacity
	// from the result (see PlanCapacity).
	Capacity CapacityInput `json:"capacity"`

	// Progress, if set, is called every ProgressInterval (0 means 1s) from
	// one goroutine while the run lasts.
	Progress         func(Progress) `json:"-"`
	ProgressInterval time.Duration  `json:"-"`

	// Origin, if set, is the run's time zero instead of the moment Run
	// starts: two open loops with the same Seed and Origin send at the very
	// same instants, so their requests pair up one to one.
	Origin time.Time `json:"-"`
	// OnArrival, if set, is called in the open loop for every measured
	// success with its arrival's number (0 for the first arrival of the
	// run, warmup included) and its TTFT (-1 without a content event).
	OnArrival func(arrival uint64, ttft time.Duration) `json:"-"`
}

// DefaultConfig returns a closed loop of 8 streaming chat requests for 30
// seconds, 256-token prompts and 128-token answers, against a gateway on
// 127.0.0.1:8080.
func DefaultConfig() Config {
	return Config{
		URL:           "http://127.0.0.1:8080",
		Endpoint:      Chat,
		Stream:        true,
		Concurrency:   8,
		Duration:      30 * time.Second,
		Timeout:       5 * time.Minute,
		DrainTimeout:  30 * time.Second,
		PromptTokens:  FixedDist(256),
		MaxTokens:     FixedDist(128),
		Seed:          1,
		BackendHeader: DefaultBackendHeader,
		Capacity:      CapacityInput{Headroom: report.DefaultHeadroom},
	}
}

const (
	defaultMaxInFlight = 1024
	defaultMaxSamples  = 1 << 20
)

// OpenLoop reports whether the run sends Poisson arrivals (Rate) rather than
// a fixed number of workers (Concurrency).
func (c *Config) OpenLoop() bool { return c.Rate > 0 }

// inflightBound is the most requests the run can have in flight, which
// sizes the connection pool.
func (c *Config) inflightBound() int {
	if c.OpenLoop() {
		if c.MaxInFlight > 0 {
			return c.MaxInFlight
		}
		return defaultMaxInFlight
	}
	return c.Concurrency
}

// baseURL is URL without a trailing slash or "/v1".
func (c *Config) baseURL() string {
	u := strings.TrimRight(c.URL, "/")
	u = strings.TrimSuffix(u, "/v1")
	return strings.TrimRight(u, "/")
}

func (c *Config) endpointURL() string {
	if c.Endpoint == Completions {
		return c.baseURL() + "/v1/completions"
	}
	return c.baseURL() + "/v1/chat/completions"
}

// validate reports every unusable setting at once, so a command line is
// fixed in one go.
func (c *Config) validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("url %q: want http(s)://host[:port]", c.URL)
	}
	if c.Endpoint != Chat && c.Endpoint != Completions {
		add("endpoint %q: want %q or %q", c.Endpoint, Chat, Completions)
	}
	switch {
	case c.Concurrency > 0 && c.Rate > 0:
		add("set concurrency (closed loop) or rate (open loop), not both")
	case c.Concurrency <= 0 && !(c.Rate > 0):
		add("set concurrency > 0 (closed loop) or rate > 0 (open loop)")
	}
	if c.MaxInFlight < 0 {
		add("max_inflight must be >= 0")
	}
	if c.Duration < 0 || c.Requests < 0 || c.Warmup < 0 || c.Timeout < 0 || c.DrainTimeout < 0 {
		add("durations and request counts must not be negative")
	}
	if c.Duration == 0 && c.Requests == 0 {
		add("set a duration or a number of requests")
	}
	if len(c.Prompts) == 0 && c.PromptFile == "" {
		if err := c.PromptTokens.validate("prompt_tokens"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.MaxTokens.validate("max_tokens"); err != nil {
		errs = append(errs, err)
	}
	if err := c.Reuse.validate(c); err != nil {
		errs = append(errs, err)
	}
	if c.MaxSamples < 0 {
		add("max_samples must be >= 0")
	}
	if err := c.Capacity.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
