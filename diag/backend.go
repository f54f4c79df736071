package diag

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"sync"
)

// ErrNoServerMetrics is returned for a page that parses but carries none of the
// vLLM or SGLang families the gateway reads: usually the wrong port, or SGLang
// started without --enable-metrics.
var ErrNoServerMetrics = errors.New("diag: no inference-server metrics found")

// vllmV1RunningHelp is V1's HELP for vllm:num_requests_running; V0 says "Number of
// requests currently running on GPU.". It tells V1 from V0 on the earliest V1
// releases, which had neither the engine label nor kv_cache_usage_perc.
const vllmV1RunningHelp = "Number of requests in model execution batches."

// Limits that keep a hostile page from turning the linear scan quadratic.
const (
	maxModels       = 256 // distinct model_name values kept
	maxTTFTBuckets  = 128 // distinct histogram bounds; vLLM uses 22
	pooledPageBytes = 1 << 20
)

// server is the kind of inference server a family belongs to.
type server uint8

const (
	srvVLLM server = iota
	srvSGLang
	numServers
)

// family is one metric family ParseBackendMetrics reads.
type family uint8

const (
	famNone             family = iota
	famKV                      // vllm:kv_cache_usage_perc, sglang:token_usage
	famKVOld                   // vllm:gpu_cache_usage_perc (before 0.9.2; gone in 0.12)
	famRunning                 // vllm:num_requests_running, sglang:num_running_reqs
	famWaiting                 // vllm:num_requests_waiting, sglang:num_queue_reqs
	famPreemptions             // vllm:num_preemptions_total, sglang:num_retracted_requests_total
	famPrompt                  // *:prompt_tokens_total
	famGeneration              // *:generation_tokens_total
	famCacheConfig             // vllm:cache_config_info
	famTTFT                    // *:time_to_first_token_seconds (histogram)
	famPrefixQueries           // vllm:prefix_cache_queries_total (tokens)
	famPrefixHits              // vllm:prefix_cache_hits_total (tokens)
	famPrefixQueriesOld        // vllm:gpu_prefix_cache_queries_total (before ~0.10)
	famPrefixHitsOld           // vllm:gpu_prefix_cache_hits_total
	numFamilies
)

// histPart says which line of a histogram a TTFT name is.
type histPart uint8

const (
	partBase histPart = iota
	partBucket
	partCount
	partSum
)

// lookupFamily maps a metric name to the family it feeds. Counters are listed
// under their exposed _total names: prometheus_client adds the suffix whether
// vLLM registered the counter with it (V0, early V1) or without (V1 from ~0.9).
// *_created companions (V1) are not listed, so they are skipped like every other
// family the gateway does not read.
func lookupFamily(name []byte) (server, family, histPart) {
	switch string(name) {
	case "vllm:kv_cache_usage_perc":
		return srvVLLM, famKV, 0
	case "vllm:gpu_cache_usage_perc":
		return srvVLLM, famKVOld, 0
	case "vllm:num_requests_running":
		return srvVLLM, famRunning, 0
	case "vllm:num_requests_waiting":
		return srvVLLM, famWaiting, 0
	case "vllm:num_preemptions_total":
		return srvVLLM, famPreemptions, 0
	case "vllm:prompt_tokens_total":
		return srvVLLM, famPrompt, 0
	case "vllm:generation_tokens_total":
		return srvVLLM, famGeneration, 0
	case "vllm:cache_config_info":
		return srvVLLM, famCacheConfig, 0
	case "vllm:prefix_cache_queries_total":
		return srvVLLM, famPrefixQueries, 0
	case "vllm:prefix_cache_hits_total":
		return srvVLLM, famPrefixHits, 0
	case "vllm:gpu_prefix_cache_queries_total":
		return srvVLLM, famPrefixQueriesOld, 0
	case "vllm:gpu_prefix_cache_hits_total":
		return srvVLLM, famPrefixHitsOld, 0
	case "vllm:time_to_first_token_seconds":
		return srvVLLM, famTTFT, partBase
	case "vllm:time_to_first_token_seconds_bucket":
		return srvVLLM, famTTFT, partBucket
	case "vllm:time_to_first_token_seconds_count":
		return srvVLLM, famTTFT, partCount
	case "vllm:time_to_first_token_seconds_sum":
		return srvVLLM, famTTFT, partSum
	case "sglang:token_usage":
		return srvSGLang, famKV, 0
	case "sglang:num_running_reqs":
		return srvSGLang, famRunning, 0
	case "sglang:num_queue_reqs":
		return srvSGLang, famWaiting, 0
	case "sglang:num_retracted_requests_total":
		return srvSGLang, famPreemptions, 0
	case "sglang:prompt_tokens_total":
		return srvSGLang, famPrompt, 0
	case "sglang:generation_tokens_total":
		return srvSGLang, famGeneration, 0
	case "sglang:time_to_first_token_seconds":
		return srvSGLang, famTTFT, partBase
	case "sglang:time_to_first_token_seconds_bucket":
		return srvSGLang, famTTFT, partBucket
	case "sglang:time_to_first_token_seconds_count":
		return srvSGLang, famTTFT, partCount
	case "sglang:time_to_first_token_seconds_sum":
		return srvSGLang, famTTFT, partSum
	}
	return 0, famNone, 0
}

// declType is a family's TYPE as far as reading it is concerned.
type declType uint8

const (
	declUntyped declType = iota // no TYPE line, or gauge/counter/untyped
	declHistogram
	declSummary
)

func parseDeclType(b []byte) declType {
	switch {
	case bytes.EqualFold(b, []byte("histogram")), bytes.EqualFold(b, []byte("gauge_histogram")),
		bytes.EqualFold(b, []byte("gaugehistogram")):
		return declHistogram
	case bytes.EqualFold(b, []byte("summary")):
		return declSummary
	}
	return declUntyped
}

// serverAcc accumulates one server kind's families over a page.
type serverAcc struct {
	seen     [numFamilies]bool
	declared [numFamilies]declType
	// ownFamily marks TTFT _bucket/_count/_sum names that became families of their
	// own because they appeared before the histogram's TYPE line; the text format
	// then no longer reads them as histogram parts (expfmt does the same).
	ownFamily [4]bool

	kv, kvOld       float64
	hasKV, hasKVOld bool
	sums            [numFamilies]float64

	ttftCount, ttftSum float64
	buckets            []accBucket
	nextBucket         int // index addBucket tries first

	blockSize, numGPUBlocks int
	capacity                int64
	prefixCachingOff        bool

	engineLabel, v1Help bool
	models              []string
}

// accBucket is one histogram bound summed over series; n counts the series that
// reported it, so bounds missing from some series can be dropped.
type accBucket struct {
	le, count float64
	n         int
}

func (a *serverAcc) reset() {
	clear(a.models) // drop the last page's strings, not just the length
	buckets, models := a.buckets[:0], a.models[:0]
	*a = serverAcc{buckets: buckets, models: models}
}

// backendScan is the reusable state of one ParseBackendMetrics call.
type backendScan struct {
	page    []byte
	scratch []byte
	acc     [numServers]serverAcc
}

var backendScans = sync.Pool{New: func() any { return new(backendScan) }}

// ParseBackendMetrics reads one /metrics page from vLLM (V0 or V1) or SGLang and
// reduces it to a BackendStats. Running and waiting are summed across data-
// parallel engines and models; KV usage is the maximum, because the fullest engine
// is the one that preempts first. The page is read through the MaxScrapeBytes
// bound, and only the lines of the families above are parsed: a malformed one of
// those fails the whole page (half a page could make a full server look idle),
// while other lines are skipped unread.
func ParseBackendMetrics(r io.Reader) (*BackendStats, error) {
	sc := backendScans.Get().(*backendScan)
	defer func() {
		// Do not pin one odd giant page's buffers in the pool.
		if cap(sc.page) > pooledPageBytes {
			sc.page = nil
		}
		if cap(sc.scratch) > pooledPageBytes {
			sc.scratch = nil
		}
		backendScans.Put(sc)
	}()
	var err error
	if sc.page, err = readAllBounded(r, sc.page); err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, ErrTooLarge
		}
		return nil, fmt.Errorf("diag: reading metrics: %w", err)
	}
	for i := range sc.acc {
		sc.acc[i].reset()
	}
	if err := sc.scan(sc.page); err != nil {
		return nil, err
	}
	var st *BackendStats
	switch {
	case sc.acc[srvVLLM].any():
		st = sc.acc[srvVLLM].stats(vllmEngine(&sc.acc[srvVLLM]))
	case sc.acc[srvSGLang].any():
		st = sc.acc[srvSGLang].stats(EngineSGLang)
	default:
		return nil, ErrNoServerMetrics
	}
	if err := st.checkFinite(); err != nil {
		return nil, err
	}
	return st, nil
}

// checkFinite rejects stats that summed to ±Inf (only absurd pages get there): they
// would poison scores, and JSON cannot carry them.
func (st *BackendStats) checkFinite() error {
	vs := [...]float64{st.KVUsage, st.Running, st.Waiting, st.PreemptionsTotal,
		st.PromptTokensTotal, st.GenerationTokensTotal, st.TTFT.Count, st.TTFT.Sum,
		st.PrefixQueriesTotal, st.PrefixHitsTotal}
	for _, v := range vs {
		if math.IsInf(v, 0) {
			return errValueRange
		}
	}
	for _, b := range st.TTFT.Buckets {
		if math.IsInf(b.Count, 0) || math.IsInf(b.UpperBound, 0) {
			return errValueRange
		}
	}
	return nil
}

var errValueRange = errors.New("diag: metric values sum beyond float64 range")

// vllmEngine tells V1 from V0: kv_cache_usage_perc exists only in V1 (0.9.2+),
// the engine label only in V1, and V1's running gauge has its own HELP text.
func vllmEngine(a *serverAcc) Engine {
	if a.seen[famKV] || a.engineLabel || (a.v1Help && a.seen[famRunning]) {
		return EngineVLLMV1
	}
	return EngineVLLMV0
}

func (a *serverAcc) any() bool {
	for _, s := range a.seen {
		if s {
			return true
		}
	}
	return false
}

func (sc *backendScan) scan(page []byte) error {
	for n := 1; len(page) > 0; n++ {
		var line []byte
		if i := bytes.IndexByte(page, '\n'); i >= 0 {
			line, page = page[:i], page[i+1:]
		} else {
			line, page = page, nil
		}
		line = line[skipBlanks(line, 0):]
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			sc.comment(line)
			continue
		}
		if err := sc.sample(line); err != nil {
			return &lineError{line: n, err: err}
		}
	}
	return nil
}

// comment records TYPE lines of the families read (a TTFT histogram's parts are
// only parts once its TYPE says histogram) and the HELP that marks V1.
func (sc *backendScan) comment(line []byte) {
	keyword, name, rest := commentFields(line)
	if keyword == nil {
		return
	}
	srv, fam, part := lookupFamily(name)
	if fam == famNone {
		return
	}
	a := &sc.acc[srv]
	if fam == famTTFT && part != partBase {
		// A HELP or TYPE naming X_bucket before X is a histogram makes X_bucket a
		// family of its own, as a sample line would.
		if !a.claims(part) {
			a.ownFamily[part] = true
		}
		return
	}
	rest = bytes.TrimSuffix(rest, []byte("\r"))
	if len(rest) == 0 {
		return // "# TYPE name" alone declares nothing
	}
	switch string(keyword) {
	case "TYPE":
		a.declared[fam] = parseDeclType(rest)
	case "HELP":
		if fam == famRunning && string(rest) == vllmV1RunningHelp {
			a.v1Help = true
		}
	}
}

// claims reports whether a TTFT _bucket/_count/_sum line belongs to the TTFT
// family as declared so far.
func (a *serverAcc) claims(part histPart) bool {
	if a.ownFamily[part] {
		return false
	}
	switch a.declared[famTTFT] {
	case declHistogram:
		return true
	case declSummary:
		return part != partBucket
	}
	return false
}

// sampleLabels are the labels ParseBackendMetrics looks at, as raw quoted contents.
type sampleLabels struct {
	engine, model, le, tpRank, blockSize, numGPUBlocks, prefixCaching []byte
	modelEsc, leEsc, tpRankEsc                                        bool
}

func (sc *backendScan) sample(line []byte) error {
	name, i := metricName(line)
	if name == nil {
		return nil // quoted-name syntax: not one of the families read
	}
	srv, fam, part := lookupFamily(name)
	if fam == famNone {
		return nil
	}
	a := &sc.acc[srv]
	if fam == famTTFT && part != partBase && !a.claims(part) {
		a.ownFamily[part] = true
		return nil
	}
	labelBlock, v, err := sampleRest(line, i)
	if err != nil {
		return err
	}
	var ls sampleLabels
	it := labelIter{b: labelBlock}
	for {
		ln, lv, nameEsc, valEsc, ok := it.next()
		if !ok {
			break
		}
		if nameEsc {
			sc.scratch = unescape(sc.scratch[:0], ln)
			ln = sc.scratch
		}
		switch string(ln) {
		case "engine":
			ls.engine = lv
		case "model_name":
			ls.model, ls.modelEsc = lv, valEsc
		case "le":
			ls.le, ls.leEsc = lv, valEsc
		case "tp_rank":
			ls.tpRank, ls.tpRankEsc = lv, valEsc
		case "block_size":
			ls.blockSize = lv
		case "num_gpu_blocks":
			ls.numGPUBlocks = lv
		case "enable_prefix_caching":
			ls.prefixCaching = lv
		}
	}
	a.seen[fam] = true
	if srv == srvVLLM && len(ls.engine) > 0 {
		a.engineLabel = true
	}
	if len(ls.model) > 0 {
		if err := sc.addModel(a, ls.model, ls.modelEsc); err != nil {
			return err
		}
	}
	if srv == srvSGLang && sc.notTPLeader(&ls) {
		return nil
	}
	if fam == famTTFT {
		return sc.ttftLine(a, part, &ls, v)
	}
	if a.declared[fam] != declUntyped {
		return nil // a histogram or summary by this name is not a value to read
	}
	if fam == famCacheConfig {
		a.addCacheConfig(&ls)
		return nil
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil // absent: one NaN summed into a queue length poisons every score
	}
	switch fam {
	case famKV:
		if !a.hasKV || v > a.kv {
			a.kv = v
		}
		a.hasKV = true
	case famKVOld:
		if !a.hasKVOld || v > a.kvOld {
			a.kvOld = v
		}
		a.hasKVOld = true
	default:
		a.sums[fam] += v
	}
	return nil
}

// notTPLeader drops SGLang scheduler series from tensor-parallel ranks other than
// 0. By default only rank 0 reports; with --enable-metrics-for-all-schedulers
// every rank of a TP group reports the same batch, and summing them would count
// each request once per rank.
func (sc *backendScan) notTPLeader(ls *sampleLabels) bool {
	r := ls.tpRank
	if ls.tpRankEsc {
		sc.scratch = unescape(sc.scratch[:0], r)
		r = sc.scratch
	}
	return len(r) > 0 && string(r) != "0"
}

func (sc *backendScan) addModel(a *serverAcc, raw []byte, esc bool) error {
	m := raw
	if esc {
		sc.scratch = unescape(sc.scratch[:0], raw)
		m = sc.scratch
	}
	for _, have := range a.models {
		if have == string(m) {
			return nil
		}
	}
	if err := validUTF8(m); err != nil {
		return err
	}
	if len(a.models) < maxModels {
		a.models = append(a.models, string(m))
	}
	return nil
}

// addCacheConfig reads KV capacity from vllm:cache_config_info. With data
// parallelism there is one series per engine, each with its own KV cache, so the
// blocks add up. "None" (early V1 builds) or anything unparsable leaves that part
// at zero, and capacity is only claimed when both parts are known.
func (a *serverAcc) addCacheConfig(ls *sampleLabels) {
	bs, nb := atoiOrZero(ls.blockSize), atoiOrZero(ls.numGPUBlocks)
	if bs > 0 && a.blockSize == 0 {
		a.blockSize = bs
	}
	a.numGPUBlocks += nb
	if bs > 0 && nb > 0 {
		a.capacity += int64(bs) * int64(nb)
	}
	a.prefixCachingOff = a.prefixCachingOff || string(ls.prefixCaching) == "False"
}

// atoiOrZero parses a non-negative decimal label value, mapping "None" and junk
// to 0. The bound keeps products and sums of such values far from overflow.
func atoiOrZero(b []byte) int {
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 0 || n > 1<<31 {
		return 0
	}
	return n
}

// ttftLine adds one line of the TTFT histogram. Bucket counts are summed per
// bound across series (engines, models); the cumulative count of a sum is the sum
// of the cumulative counts, so no per-series bookkeeping is needed.
func (sc *backendScan) ttftLine(a *serverAcc, part histPart, ls *sampleLabels, v float64) error {
	if a.declared[famTTFT] != declHistogram {
		return nil // a summary's _count/_sum: not what the gateway reads
	}
	// Negative or non-finite counts are garbage; drop the line as absent.
	count := v
	if part != partSum && (count < 0 || math.IsNaN(count) || math.IsInf(count, 0)) {
		return nil
	}
	switch part {
	case partCount:
		a.ttftCount += count
	case partSum:
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			a.ttftSum += v
		}
	case partBucket, partBase:
		// A line with an le label is a bucket whether or not its name carries the
		// _bucket suffix; without one it is not a bucket at all (as in expfmt).
		if ls.le == nil {
			return nil
		}
		leRaw := ls.le
		if ls.leEsc {
			sc.scratch = unescape(sc.scratch[:0], leRaw)
			leRaw = sc.scratch
		}
		le, err := parsePromFloat(leRaw)
		if err != nil {
			return errors.New("histogram bound (le) is not a number")
		}
		if math.IsNaN(le) || math.IsInf(le, 0) {
			return nil // +Inf is Count (and -Inf nonsense); JSON could carry neither
		}
		return a.addBucket(le, count)
	}
	return nil
}

func (a *serverAcc) addBucket(le, count float64) error {
	// Every series lists its buckets in the same ascending order, so the bound is
	// almost always the one after the previous line's: try that before searching.
	if i := a.nextBucket; i < len(a.buckets) && a.buckets[i].le == le {
		a.buckets[i].count += count
		a.buckets[i].n++
		a.nextBucket = i + 1
		return nil
	}
	for i := range a.buckets {
		if a.buckets[i].le == le {
			a.buckets[i].count += count
			a.buckets[i].n++
			a.nextBucket = i + 1
			return nil
		}
	}
	if len(a.buckets) >= maxTTFTBuckets {
		return errors.New("too many histogram buckets")
	}
	a.buckets = append(a.buckets, accBucket{le: le, count: count, n: 1})
	a.nextBucket = len(a.buckets)
	return nil
}

// stats builds the result. Histogram bounds that only some series reported are
// dropped: summing cumulative counts is only exact on bounds every series has
// (vLLM's engines all share one layout, so nothing is dropped in practice).
func (a *serverAcc) stats(engine Engine) *BackendStats {
	st := &BackendStats{
		Engine:                engine,
		Running:               a.sums[famRunning],
		Waiting:               a.sums[famWaiting],
		PreemptionsTotal:      a.sums[famPreemptions],
		PromptTokensTotal:     a.sums[famPrompt],
		GenerationTokensTotal: a.sums[famGeneration],
		BlockSize:             a.blockSize,
		NumGPUBlocks:          a.numGPUBlocks,
		CapacityTokens:        a.capacity,
		PrefixCachingOff:      a.prefixCachingOff,
	}
	// The new KV name wins whenever the page has it, even if its value was
	// unusable: 0.9.2-0.11 print both, and the old one is deprecated.
	if a.seen[famKV] {
		st.KVUsage, st.HasKV = a.kv, a.hasKV
	} else {
		st.KVUsage, st.HasKV = a.kvOld, a.hasKVOld
	}
	// The new prefix-cache names win when the page has them: 0.10 prints both
	// with the same values, and adding them would count every token twice.
	if a.seen[famPrefixQueries] {
		st.PrefixQueriesTotal, st.PrefixHitsTotal = a.sums[famPrefixQueries], a.sums[famPrefixHits]
	} else {
		st.PrefixQueriesTotal, st.PrefixHitsTotal = a.sums[famPrefixQueriesOld], a.sums[famPrefixHitsOld]
	}
	if len(a.models) > 0 {
		st.Models = slices.Clone(a.models)
		slices.Sort(st.Models)
	}
	st.TTFT = Histogram{Count: a.ttftCount, Sum: a.ttftSum}
	maxN := 0
	for _, b := range a.buckets {
		maxN = max(maxN, b.n)
	}
	kept := 0
	for _, b := range a.buckets {
		if b.n == maxN {
			kept++
		}
	}
	if kept > 0 {
		st.TTFT.Buckets = make([]Bucket, 0, kept)
		for _, b := range a.buckets {
			if b.n == maxN {
				st.TTFT.Buckets = append(st.TTFT.Buckets, Bucket{UpperBound: b.le, Count: b.count})
			}
		}
		slices.SortFunc(st.TTFT.Buckets, func(x, y Bucket) int {
			switch {
			case x.UpperBound < y.UpperBound:
				return -1
			case x.UpperBound > y.UpperBound:
				return 1
			}
			return 0
		})
	}
	return st
}
