package sim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// vllmVersion is what /version reports for each metrics flavour.
const (
	vllmVersionV1 = "0.10.0"
	vllmVersionV0 = "0.7.3"
)

// Instance is one running simulated vLLM server.
type Instance struct {
	cfg     Config
	clock   clock
	started time.Time
	ln      net.Listener
	srv     *http.Server
	eng     *engine
	st      *stats
	handler http.Handler
	page    *pageRenderer

	responses responseStore // stored Responses answers

	faults   atomic.Pointer[Faults]
	faultsMu sync.Mutex // serialises read-merge-write of POST /sim/faults

	gpuMu sync.Mutex
	gpus  []GPUState // as configured; reported values are derived on read

	rngMu  sync.Mutex
	rng    *rand.Rand // cosmetic ids only
	nextID atomic.Uint64

	closing   chan struct{}
	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex // guards closed against handlers.Add
	closed   bool
	handlers sync.WaitGroup
	active   atomic.Int64 // handlers in flight, for tests
	serveWG  sync.WaitGroup
}

// Start validates cfg, listens on addr ("127.0.0.1:0" picks a free port),
// and starts the engine and the HTTP server.
func Start(cfg Config, addr string) (*Instance, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	cfg.LoRAs = slices.Clone(cfg.LoRAs)
	cfg.Hostname = cfg.hostname()
	clk := cfg.clock
	if clk == nil {
		clk = wallClock{}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	i := &Instance{
		cfg:     cfg,
		clock:   clk,
		started: time.Now(),
		ln:      ln,
		rng:     rand.New(rand.NewPCG(cfg.Seed, 0x7369_6d72_6571)),
		closing: make(chan struct{}),
	}
	f := cfg.Faults.normalized()
	i.faults.Store(&f)
	i.st = newStats(&cfg, clk.Now())
	i.eng = newEngine(cfg, clk, i.Faults, i.st)
	i.gpus = defaultGPUs(cfg.GPUs, cfg.Seed, cfg.Hostname)
	i.page = newPageRenderer(&cfg, i.started)
	i.handler = i.track(i.routes())
	i.srv = &http.Server{
		Handler:           i.handler,
		ReadHeaderTimeout: 30 * time.Second,
	}
	i.eng.start()
	i.serveWG.Add(1)
	go func() {
		defer i.serveWG.Done()
		_ = i.srv.Serve(ln)
	}()
	return i, nil
}

// Addr is the host:port the instance listens on.
func (i *Instance) Addr() string { return i.ln.Addr().String() }

// URL is the instance's base URL.
func (i *Instance) URL() string { return "http://" + i.Addr() }

// Handler serves the instance's API; it is what the listener serves, for
// mounting in another server or an httptest recorder.
func (i *Instance) Handler() http.Handler { return i.handler }

// Config returns the configuration the instance started with (faults as
// they were at start; see Faults for the current ones).
func (i *Instance) Config() Config {
	c := i.cfg
	c.LoRAs = slices.Clone(c.LoRAs)
	return c
}

// Close stops the engine, closes the listener and every open connection
// (hung requests included) and waits for all of the instance's goroutines.
func (i *Instance) Close() error {
	i.closeOnce.Do(func() {
		i.mu.Lock()
		i.closed = true
		i.mu.Unlock()
		// Connections go first, so that a handler released by closing
		// cannot answer: clients of hung or streaming requests see a cut.
		i.closeErr = i.srv.Close()
		close(i.closing)
		i.eng.close()
		i.handlers.Wait()
		i.serveWG.Wait()
		if errors.Is(i.closeErr, http.ErrServerClosed) {
			i.closeErr = nil
		}
	})
	return i.closeErr
}

// track counts handlers so that Close can wait for them.
func (i *Instance) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i.mu.Lock()
		if i.closed {
			i.mu.Unlock()
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		i.handlers.Add(1)
		i.mu.Unlock()
		i.active.Add(1)
		defer func() {
			i.active.Add(-1)
			i.handlers.Done()
		}()
		h.ServeHTTP(w, r)
	})
}

func (i *Instance) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		i.handleCompletion(w, r, kindChat)
	})
	mux.HandleFunc("POST /v1/completions", func(w http.ResponseWriter, r *http.Request) {
		i.handleCompletion(w, r, kindCompletion)
	})
	mux.HandleFunc("POST /v1/responses", i.handleResponses)
	mux.HandleFunc("GET /v1/responses/{id}", i.handleGetResponse)
	mux.HandleFunc("DELETE /v1/responses/{id}", i.handleDeleteResponse)
	mux.HandleFunc("POST /v1/messages", i.handleMessages)
	mux.HandleFunc("POST /v1/embeddings", i.handleEmbeddings)
	mux.HandleFunc("GET /v1/models", i.handleModels)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /version", i.handleVersion)
	mux.HandleFunc("POST /tokenize", i.handleTokenize)
	mux.HandleFunc("GET /metrics", i.handleMetrics)
	mux.HandleFunc("GET /metrics/", i.handleMetrics)
	mux.HandleFunc("GET /dcgm/metrics", i.handleDCGM)
	mux.HandleFunc("GET /sim/faults", i.handleGetFaults)
	mux.HandleFunc("POST /sim/faults", i.handlePostFaults)
	mux.HandleFunc("GET /sim/gpu", i.handleGetGPU)
	mux.HandleFunc("POST /sim/gpu", i.handlePostGPU)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not Found"}) // FastAPI's 404
	})
	return mux
}
