package sim

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Config describes one simulated vLLM server. Start from DefaultConfig and
// change what you need: Start rejects zero sizes rather than guessing.
// Durations are time.Duration, so in JSON they are integer nanoseconds.
type Config struct {
	// Model is the served model name (vLLM's --served-model-name). It is
	// echoed in responses and is the model_name label of every metric.
	Model string `json:"model"`
	// LoRAs are adapter names served on top of Model. /v1/models lists them
	// with parent=Model and a null max_model_len; requests may name them.
	LoRAs []string `json:"loras,omitempty"`
	// MaxModelLen is the context length: prompt + max_tokens must fit.
	MaxModelLen int `json:"max_model_len"`

	// NumGPUBlocks x BlockSize is the KV cache capacity in tokens. It must
	// hold at least one MaxModelLen sequence, as vLLM refuses to start
	// otherwise.
	NumGPUBlocks int `json:"num_gpu_blocks"`
	BlockSize    int `json:"block_size"`
	// MaxNumSeqs caps the running batch; MaxNumBatchedTokens is the token
	// budget of one step (decodes plus prefill chunks).
	MaxNumSeqs          int `json:"max_num_seqs"`
	MaxNumBatchedTokens int `json:"max_num_batched_tokens"`
	// PrefixCaching keeps computed prompt blocks for later requests with
	// the same prefix (vLLM's --enable-prefix-caching, on by default in V1;
	// see kvCache). PromptTokensDetails reports the cached prompt tokens as
	// usage.prompt_tokens_details.cached_tokens (vLLM's
	// --enable-prompt-tokens-details, off by default in vLLM, on by default
	// here so a gateway in front can learn from it).
	PrefixCaching       bool `json:"enable_prefix_caching"`
	PromptTokensDetails bool `json:"enable_prompt_tokens_details"`

	// The step cost model (see the package doc). Every step costs
	// StepOverhead + DecodeBase; each prefilled token adds PrefillPerToken
	// and each decoding sequence DecodePerSeq. The sum is multiplied by the
	// slowdown fault and by TimeScale.
	StepOverhead    time.Duration `json:"step_overhead"`
	PrefillPerToken time.Duration `json:"prefill_per_token"`
	DecodeBase      time.Duration `json:"decode_base"`
	DecodePerSeq    time.Duration `json:"decode_per_seq"`

	// TimeScale multiplies every step duration: 0.1 runs ten times faster
	// than the modelled GPU. Metrics report the time actually experienced.
	TimeScale float64 `json:"time_scale"`
	// Seed makes ids, output lengths, words, error draws and leaks repeat
	// for the same sequence of requests.
	Seed uint64 `json:"seed"`
	// MeanOutputTokens is the mean of the long-tailed (log-normal) output
	// length drawn for requests without ignore_eos.
	MeanOutputTokens int `json:"mean_output_tokens"`

	// V0Metrics serves vLLM V0 metric names and buckets instead of V1's.
	V0Metrics bool `json:"v0_metrics"`
	// OldErrorShape serves errors as vLLM ≤0.10.0 did:
	// {"object":"error","message":...} instead of {"error":{...}}.
	OldErrorShape bool `json:"old_error_shape"`

	// GPUs is the number of simulated GPUs (tensor parallel: all follow the
	// same engine activity). Hostname labels them on the DCGM page; empty
	// means the machine's host name.
	GPUs     int    `json:"gpus"`
	Hostname string `json:"hostname,omitempty"`

	// Faults are the faults active at start; change them later with
	// Instance.SetFaults or POST /sim/faults.
	Faults Faults `json:"faults"`

	// clock replaces the wall clock; tests use a virtual one so that timing
	// assertions are exact.
	clock clock
}

// DefaultConfig returns a server shaped like Llama-3.1-8B-Instruct on one
// H100 80GB: ~100 tokens/s for a lone stream, ~16k prefill tokens/s, and
// a batch of 256 decoding at ~45 tokens/s each.
func DefaultConfig() Config {
	return Config{
		Model:               "meta-llama/Llama-3.1-8B-Instruct",
		MaxModelLen:         8192,
		NumGPUBlocks:        8192,
		BlockSize:           16,
		MaxNumSeqs:          256,
		MaxNumBatchedTokens: 2048,
		PrefixCaching:       true,
		PromptTokensDetails: true,
		StepOverhead:        2 * time.Millisecond,
		PrefillPerToken:     60 * time.Microsecond,
		DecodeBase:          8 * time.Millisecond,
		DecodePerSeq:        50 * time.Microsecond,
		TimeScale:           1,
		Seed:                1,
		MeanOutputTokens:    128,
		GPUs:                1,
		Faults:              Faults{Slowdown: 1, Metrics: MetricsOK},
	}
}

// validate reports the first unusable setting.
func (c *Config) validate() error {
	var errs []error
	positive := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be > 0, got %d", name, v))
		}
	}
	if c.Model == "" {
		errs = append(errs, errors.New("model must not be empty"))
	}
	positive("max_model_len", c.MaxModelLen)
	positive("num_gpu_blocks", c.NumGPUBlocks)
	positive("block_size", c.BlockSize)
	positive("max_num_seqs", c.MaxNumSeqs)
	positive("max_num_batched_tokens", c.MaxNumBatchedTokens)
	positive("mean_output_tokens", c.MeanOutputTokens)
	positive("gpus", c.GPUs)
	if c.TimeScale <= 0 {
		errs = append(errs, fmt.Errorf("time_scale must be > 0, got %g", c.TimeScale))
	}
	for _, d := range []time.Duration{c.StepOverhead, c.PrefillPerToken, c.DecodeBase, c.DecodePerSeq} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("step costs must not be negative, got %v", d))
			break
		}
	}
	if c.NumGPUBlocks > 0 && c.BlockSize > 0 && c.MaxModelLen > c.NumGPUBlocks*c.BlockSize {
		// vLLM refuses to start in this case; so do we, since a full-length
		// request could never be scheduled.
		errs = append(errs, fmt.Errorf("max_model_len %d exceeds the KV cache capacity %d tokens (num_gpu_blocks x block_size)",
			c.MaxModelLen, c.NumGPUBlocks*c.BlockSize))
	}
	for _, l := range c.LoRAs {
		if l == "" || l == c.Model {
			errs = append(errs, fmt.Errorf("invalid LoRA name %q", l))
		}
	}
	if err := c.Faults.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *Config) hostname() string {
	if c.Hostname != "" {
		return c.Hostname
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}
