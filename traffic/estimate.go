package traffic

import (
	"math"
	"sync"
	"sync/atomic"
)

// Estimator defaults; see the package doc for where they come from.
const (
	DefaultCharsPerToken   = 4.0
	DefaultMessageTokens   = 4
	DefaultReplyTokens     = 3
	DefaultMaxModels       = 1024
	DefaultMinObservations = 8
	DefaultAlpha           = 0.05

	// Calibration ratios are kept within [MinRatio, MaxRatio]: a model
	// whose tokenizer is off by more than 4x is a misreport, not a
	// tokenizer.
	MinRatio = 0.25
	MaxRatio = 4.0
)

// EstimatorConfig tunes an Estimator; zero fields take the defaults.
type EstimatorConfig struct {
	CharsPerToken float64 // bytes of text per token before calibration
	MessageTokens int     // chat template tokens around each message
	ReplyTokens   int     // chat template tokens that prime the reply
	ImageTokens   int     // tokens per image part (default 0: unknown)
	AudioTokens   int     // tokens per audio part (default 0: unknown)

	MaxModels       int     // models whose calibration is kept (LRU beyond)
	MinObservations int     // observations before a calibration is used
	Alpha           float64 // EWMA weight of one observation
}

// Estimator estimates prompt tokens from a parsed Request and calibrates
// itself per model from the prompt_tokens that backends report. It is safe
// for concurrent use; Estimate takes a read lock and does not allocate.
type Estimator struct {
	cfg EstimatorConfig

	mu     sync.RWMutex
	models map[string]*calibration
	tick   atomic.Uint64 // logical clock for LRU
}

// calibration is one model's learned ratio of real to estimated tokens.
type calibration struct {
	ratio atomic.Uint64 // math.Float64bits; 0 until trusted
	used  atomic.Uint64 // tick of the last observation

	mu                sync.Mutex
	n                 int
	actual, estimated float64 // EWMAs of token counts
}

// NewEstimator returns an Estimator with cfg's zero fields set to the
// defaults.
func NewEstimator(cfg EstimatorConfig) *Estimator {
	if cfg.CharsPerToken <= 0 {
		cfg.CharsPerToken = DefaultCharsPerToken
	}
	if cfg.MessageTokens <= 0 {
		cfg.MessageTokens = DefaultMessageTokens
	}
	if cfg.ReplyTokens <= 0 {
		cfg.ReplyTokens = DefaultReplyTokens
	}
	if cfg.MaxModels <= 0 {
		cfg.MaxModels = DefaultMaxModels
	}
	if cfg.MinObservations <= 0 {
		cfg.MinObservations = DefaultMinObservations
	}
	if cfg.Alpha <= 0 || cfg.Alpha > 1 {
		cfg.Alpha = DefaultAlpha
	}
	return &Estimator{cfg: cfg, models: make(map[string]*calibration)}
}

// Estimate returns the prompt tokens of all r's prompts, and sets
// r.EstimatedPromptTokens and r.EstimatedLongestPrompt. Token-id prompts
// are counted exactly; text is ceil(bytes / CharsPerToken) plus the chat
// template's overhead, times the model's calibration ratio once it is
// trusted; image and audio parts add their configured costs.
func (e *Estimator) Estimate(r *Request) int {
	if r.TokenPrompt() {
		r.EstimatedPromptTokens, r.EstimatedLongestPrompt = r.PromptTokenIDs, r.LongestPromptIDs
		return r.PromptTokenIDs
	}
	ratio := e.ratio(r.Model)
	media := r.Images*e.cfg.ImageTokens + r.Audios*e.cfg.AudioTokens
	r.EstimatedPromptTokens = scale(e.textTokens(r, r.PromptChars), ratio) + media
	r.EstimatedLongestPrompt = r.EstimatedPromptTokens
	if r.Prompts > 1 {
		r.EstimatedLongestPrompt = scale(e.textTokens(r, r.LongestPromptChars), ratio)
	}
	return r.EstimatedPromptTokens
}

// textTokens is the uncalibrated estimate for chars bytes of r's text.
func (e *Estimator) textTokens(r *Request, chars int) int {
	n := int(math.Ceil(float64(chars) / e.cfg.CharsPerToken))
	if r.Endpoint.chatTemplate() || r.Messages > 0 {
		n += r.Messages*e.cfg.MessageTokens + e.cfg.ReplyTokens
	}
	return n
}

func scale(n int, ratio float64) int {
	if ratio == 0 {
		return n
	}
	return int(math.Ceil(float64(n) * ratio))
}

// Ratio returns the model's calibration (real tokens per estimated token)
// and whether it is trusted yet; an untrusted model estimates with 1.
// A caller refusing requests on an estimate can allow more margin for an
// untrusted model.
func (e *Estimator) Ratio(model string) (float64, bool) {
	if r := e.ratio(model); r != 0 {
		return r, true
	}
	return 1, false
}

func (e *Estimator) ratio(model string) float64 {
	e.mu.RLock()
	c := e.models[model]
	e.mu.RUnlock()
	if c == nil {
		return 0
	}
	return math.Float64frombits(c.ratio.Load())
}

// Observe calibrates r.Model with the prompt_tokens a backend reported for
// r. Requests whose count says nothing about the text are ignored: token-id
// prompts (exact already) and multimodal ones (an image's tokens are no
// function of its URL's length).
//
// The ratio is of two EWMAs, real and estimated tokens, rather than an
// EWMA of per-request ratios: long prompts, where a context check matters,
// weigh more than a "hi" whose template overhead dominates. Until
// MinObservations have arrived it is a plain mean, and it is not used.
func (e *Estimator) Observe(r *Request, actual int) {
	if r == nil || actual <= 0 || r.TokenPrompt() || r.Images > 0 || r.Audios > 0 {
		return
	}
	est := e.textTokens(r, r.PromptChars)
	if est <= 0 {
		return
	}
	c := e.entry(r.Model)
	c.used.Store(e.tick.Add(1))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	a := max(e.cfg.Alpha, 1/float64(c.n))
	c.actual += a * (float64(actual) - c.actual)
	c.estimated += a * (float64(est) - c.estimated)
	if c.n >= e.cfg.MinObservations {
		ratio := min(max(c.actual/c.estimated, MinRatio), MaxRatio)
		c.ratio.Store(math.Float64bits(ratio))
	}
}

// entry returns the model's calibration, adding it (and evicting the least
// recently observed model if the table is full) when it is new.
func (e *Estimator) entry(model string) *calibration {
	e.mu.RLock()
	c := e.models[model]
	e.mu.RUnlock()
	if c != nil {
		return c
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c = e.models[model]; c != nil {
		return c
	}
	if len(e.models) >= e.cfg.MaxModels {
		// A linear scan: it runs only when a new model arrives at a full
		// table, and the table is small.
		var oldest string
		least := uint64(math.MaxUint64)
		for m, c := range e.models {
			if u := c.used.Load(); u < least {
				oldest, least = m, u
			}
		}
		delete(e.models, oldest)
	}
	c = &calibration{}
	e.models[model] = c
	return c
}

// Models returns how many models have a calibration entry.
func (e *Estimator) Models() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.models)
}
