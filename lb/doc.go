// Package lb decides which backend serves each request and when a backend is taken
// out of rotation. It knows nothing of Caddy: the caddymodule glue feeds it each
// backend's scraped statistics and health verdicts, and asks it to pick.
//
// # Pipeline
//
// One pick is filters, then cost terms, then the choice:
//
//   - Filters narrow the candidates: the model (NotServing, one rule for the
//     balancer, the admission queue and the capacity plan), a retry's
//     backends that already failed the request (the caller), rotation
//     (draining, drained), and the classes of Pick: free, saturated
//     (SaturatedKV/SaturatedWaiting, the marks the admission queue also
//     uses), failing, down or ejected.
//   - Cost terms, each its own function with a table test: load and the
//     request's own uncached prefill (requestWeight), speed, KV, preemption,
//     queue, failure, slow start (below).
//   - The choice: the cheapest of the first non-empty class; for a request
//     with a prefix, the rendezvous choice among those within Margin of it
//     (see Prefix affinity); best of two random plus the prefix's
//     rendezvous home for pools of 64 or more.
//
// # Load
//
// The base of every decision is the gateway's own count of work in flight on each
// backend, exact from the moment a backend is picked until the response (the whole
// stream) ends: a Lease. Counting only requests, as least-connections does, treats
// a 50-token chat turn and a 3,000-token document the same; measured on a simulated
// fleet near saturation, the TTFT tail is long prompts' prefill landing on busy
// replicas. So each in-flight request weighs
//
//	1 + promptTokens/PromptUnit   until its first byte comes back (prefill pending)
//	1                             after (decoding: one sequence in the batch)
//
// and a backend's load is the sum over its leases. With no token estimates (no llm
// handler in the route) every request weighs 1 and load is the in-flight count.
//
// PromptUnit defaults to 32: a decoding sequence costs a new request's prefill
// about one token of the step's budget and a sliver of step time, while 32 queued
// prompt tokens are ~2 ms of prefill for an 8B model on an H100: a new request
// should rather join a big batch than queue behind a long prompt. Measured with
// bench-routing (one of four backends 3x slow, 36 req/s), TTFT p99 against
// least_conn: -20% at 512 (60 s run), -48% and -55% at 64 (60 s, 30 s), -54%
// and -63% at 32 (60 s, 45 s).
//
// # Cost
//
// The cost of sending request r (weight w) to backend b is
//
//	cost = (load_b + w) / speed_b × kv_b × preempt_b × queue_b × fail_b / ramp_b
//
// the expected wait for r's first token, up to a constant, corrected by what the
// backend's own /metrics say:
//
//   - speed_b: the backend's generation throughput per running request relative to
//     the fleet's median (EWMA, clamped to [0.2, 2]). A throttled GPU or a
//     downgraded PCIe link decodes slower, so each unit of load costs it more. A
//     long prompt (large w) amplifies the difference, so long prompts go where
//     work drains fastest.
//   - kv_b = 1 + KVWeight × max(0, kv − KVKnee)/(1 − KVKnee): a KV cache near full
//     means the next request waits for blocks or forces a preemption.
//   - preempt_b = 1 + PreemptWeight × preemptions/s: a preempting backend is
//     recomputing instead of generating.
//   - queue_b = 1 + WaitWeight × waiting/max(1, running): requests already waiting
//     on the backend are ahead of r.
//   - fail_b = 1 + FailWeight × p/(1−p) for the backend's recent failure share p
//     (see Failures): the expected number of attempts a request needs there.
//   - ramp_b in (0, 1]: slow start after a drained or ejected backend returns.
//
// The lowest cost wins; ties are broken at random. Pools of 64 backends or more
// use the better of two random choices instead of a full scan.
//
// # The whole answer: decode and KV fit
//
// The cost so far ranks backends by the wait for the first token; a chat user
// or an agent waits for the last. Each request also weighs its own decode,
// ExpectedOutput/DecodeUnit (max_tokens, else the model's recent average
// output; DecodeUnit 64 tokens), times the backend's inter-token time as the
// gateway observes it (an EWMA of each stream's mean gap) over the fleet's
// median, ignored within ±30 % and clamped to [1/3, 5]. Equal backends add
// the same, so nothing changes between them; a 3x slow decoder charges a
// 640-token answer 30 units instead of 10, so long answers go there only when
// the others are that much busier. Measured with bench-routing slow-backend
// (30 s, llm vs least_conn): DecodeUnit 64 gave TTFT p99 −57 %, E2E p99
// −23 %, the slow backend 12 % of requests; 16 and 4 moved neither E2E nor
// that share beyond run-to-run noise and cost TTFT p50 at 4, so 64 stays.
//
// A backend whose free KV cannot hold the request's prompt and expected
// output is in the noFit class: used only when no candidate fits, and then
// the one with the most free KV wins, not the cheapest. Free KV is capacity
// less the more of two estimates of what is held: the scraped usage plus
// what the gateway sent since (lag compensation; it also sees other
// gateways' requests), and the gateway's commitments, the prompt blocks
// each request in flight did not find cached plus its expected output,
// which is what it will hold at its end. vLLM admits a request whose prompt
// fits and preempts the newest running ones when decode outgrows the cache,
// so the growth still to come, not today's usage, decides preemptions.
//
// Those two bounds count every request in flight at its end size at once;
// when they leave no room, the fit asks when each is expected to end
// (kvPeak). In a batch every sequence gains a token per decode step, so
// after k steps a request with r steps left holds what it holds now plus
// k while k < r, and nothing after; its tokens so far are those the gateway
// relayed. The request fits if, at every step, the others plus
// its own prompt and the output it has made by then fit; the largest such
// sum is just before one of the others ends, so the walk is over their
// ends, sorted (1.5 µs at 64 in flight; the sorted figures serve 5 ms while
// no request starts or ends, 0.3 µs: go test -bench KVPeak ./lb). Each may
// end 16 steps late, and one still prefilling starts decoding a 2,048-token
// chunk per step later (peak.go has the measurement). Usage the scrape
// shows and no lease explains (other gateways' requests; not what ended
// since the scrape) is taken as never ending.
// Expected output is max_tokens scaled by the share of their bound the
// model's recent bounded answers used (an SDK default of 4,096 for
// 300-token answers must not reserve 4,096), else the model's recent
// average, else DecodeReserve (256). The tokens a request finds cached
// count as free.
//
// With the llm handler's admission queue configured, a request that fits
// nowhere waits at the gateway (Pool.Place) until a backend has room for
// it, instead of being sent where it preempts others. The queue releases in
// arrival order those that find room, places each on the cheapest backend
// that fits (prefix credit included), and Pick sends it there
// (Work.Placed); the releases
// of one tick count in a Transit against their backends, since they are
// not leased yet. A request that has waited 250 ms without room holds the
// backend nearest to room for it out of later placements (one per tick),
// so that the blocks freed there reach it, the way vLLM's own FIFO waits
// for its head.
//
// Measured with bench-routing kv-tight (4 sims x 512 blocks, 10 req/s,
// prompts median 800 up to 6,000: the held-out fleet of issue 14, at about
// its KV capacity), llm+queue against least_conn, 30 s, seeds 1, 2 and 5:
// preemptions 0 vs 63, 21 and 31; TTFT p99 -16 %, -41 %, -65 %. With the
// fit counting every request at its end size at once (before kvPeak) the
// queue also held preemptions to 0, but waited for room that would have
// come in time: TTFT p99 from -12 % to +76 % over six runs, p50 up to 3x.
// Without the hold, 60 s: p50 -72 % but p99 +74 % (long prompts starved).
// Without the Transit (four releases a tick, each testing the same room): a
// third of least_conn's preemptions remained. llm without the queue
// preempts about as often as least_conn: the fit classes choose where a
// request goes, not whether the fleet has room for it now.

// # Prefix affinity
//
// vLLM skips the prefill of prompt blocks it already holds, but only on the
// replica that holds them. The request parse (package traffic) hashes the
// canonical prompt (model and cache_salt, tools, messages in order, or the
// completions prompt) into a chain of 64-byte blocks, each hash naming the
// whole prefix up to it. Per backend, an index keeps the block hashes the
// gateway believes are cached there: a bounded LRU (MaxBlocks, default 8192,
// and never more than the backend's KV capacity, num_gpu_blocks × block_size
// / 16 tokens per block), updated when a request is sent (its last block
// touched first, so tails are evicted before heads, as in vLLM) and corrected
// by the response's usage.prompt_tokens_details.cached_tokens: a predicted
// hit that did not come true drops those blocks. A drained or ejected backend
// loses its entries. About 52 bytes a block (go test -run PrefixIndexMemory
// -v ./lb): 0.4 MB per backend at the default cap, 27 MB at 64 backends,
// 430 MB at 1,000.
//
// The effect is in the cost's own units, not a bonus: a request weighs
// 1 + uncached/PromptUnit on each candidate, where uncached is its prompt
// estimate minus the share of its blocks the candidate holds. A backend
// holding 1,900 of 2,000 tokens costs the request 4 units instead of 63, so
// it wins until it carries about 59 more streams than an idle one; past
// that, the request goes elsewhere and the index learns a second home (no
// hot spot: TestPopularPrefixGetsSecondHome).
//
// A prefix nobody holds goes, among the near-cheapest candidates, to the one
// with the highest rendezvous weight for the hash of its first 8 blocks (512
// bytes): gateways that never talk, seeing about the same costs, send a new
// system prompt to the same replica (TestGatewaysAgreeWithoutTalking: cached
// share 0.92 through one gateway and through two alternating). Near-cheapest
// is within Margin (10 %) of the cheapest's queued work plus one request, not
// 10 % of its whole cost: that would count the request's own prefill, equal
// everywhere, and for long prompts turn "near" into "anywhere". Measured on a
// healthy 4-sim fleet with unique prompts, that first version spread long
// prompts at random and fell to 5 req/s of 36; now llm beats least_conn there
// (TTFT p99 330 ms vs 430 ms, same throughput). A backend that reports
// enable_prefix_caching="False" is credited no cached tokens: believing in a
// cache that is not there hides the prefill it does and herds work onto it.
//
// # Lag compensation
//
// Scraped numbers are up to one interval old, and in that interval the gateway
// itself may have sent the backend many requests. Between scrapes the KV usage is
// estimated as the scraped usage plus the tokens (prompt + max_tokens) of requests
// sent since, minus those of requests finished since, over the backend's KV
// capacity; each scrape replaces the estimate with the measured value.
//
// # Stale stats and saturation
//
// A backend whose statistics are missing or stale is scored on load alone: no
// speed, KV, preemption or queue factor is applied from numbers it does not have.
// A backend at or above SaturatedKV or SaturatedWaiting is avoided unless every
// candidate is saturated.
//
// # Failures
//
// Every attempt of a request reports how it ended (Lease.Report with an
// Outcome: ok, connect error, reset, 5xx, 429, no first byte in time, stall,
// error event). Scrapes cannot see a backend that answers every completion
// with an instant 500 while its /metrics look fine, and least-connections
// loves such a backend: its requests leave at once, so it always shows the
// least in flight (measured before this: 99.2 % of all requests for 30 s).
// Three mechanisms, in order of strength:
//
//   - The failure share p, decayed with a 10 s half-life and a prior of two
//     successes (one failure of an idle backend is not 100 %), multiplies the
//     cost by 1/(1−p) (p capped at 0.95, ignored below 0.05).
//   - That alone cannot keep traffic off a backend failing at once: its load
//     is near zero while healthy ones carry dozens of streams. A backend with
//     p ≥ 0.75 is only a fallback, like a saturated one.
//   - Five failures in a row eject it: out of rotation for 10 s, doubling with
//     each ejection in a row up to 5 minutes (forgotten after 5 quiet
//     minutes), as Envoy's outlier detection does. Ejected and automatically
//     drained backends together never exceed the drain's MaxFraction of the
//     fleet. An ejection ends by itself; the backend returns with slow start
//     and on probation: its next failure ejects it again at once, its next
//     success ends the probation. An ejection clears the failure share, which
//     the ejection has paid for.
//
// The caller retries elsewhere: a retry excludes the backends that already
// failed the request while any other candidate is left.
//
// # Draining
//
// The Drainer turns health verdicts into rotation states with hysteresis: a
// backend degraded for DrainAfter goes draining (no new requests; in-flight streams
// finish), then drained when its last lease ends; it returns only after its
// verdict has been healthy for RestoreAfter, and then ramps its share back over
// SlowStart. A backend drained again within five restore windows of its return
// relapsed, and each relapse in a row doubles the healthy time its next return
// needs (up to 32x): a rule judged on the gateway's own streams stops seeing a
// drained backend and clears with its window, so a backend slow for good would
// otherwise return every few minutes with its share of slow streams; this way
// it keeps being probed, ever more rarely, and returns for good once it is
// fixed. A drained backend also forgets its learned speed and inter-token
// time, which nothing refreshes while it serves nothing. No more than
// MaxFraction of the fleet is drained automatically; when that cap binds, the
// backends with the fewest reasons stay in. Manual drain and undrain outrank
// all of it.
package lb
