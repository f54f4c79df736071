// Package patterns explains why TTFT moved. The gateway hands it every finished
// request (Observe); Report gives, per model, percentiles of prompt
// length, max_tokens, output length and TTFT over the last minute, 15
// minutes and hour; a shift detector per model that sets the last 5
// minutes' p90 prompt length against the baseline's beside the same two
// windows' p90 TTFT; and the heaviest client keys by tokens.
//
// Time is cut into buckets: 10 s buckets for the 1m window, 1 minute
// buckets for all the others. A window of n buckets is the current,
// partial, bucket and the n−1 before it, so "1h" covers between 59 and 60
// minutes and "1m" between 50 and 60 seconds. Bucket numbers count from
// New with the monotonic clock whenever both times carry it, so a
// step of the wall clock does not move the windows.
//
// Each bucket holds four histograms: prompt tokens of every request,
// max_tokens of those that set it, output tokens where known, TTFT where
// known. Bins are log-linear: exact below 8, then 8 bins per power of two,
// so a bin is at most 1/8 of its lower edge wide and a value read at a
// bin's middle is within 6.25% of every value in the bin. Token bins reach
// 2^24 (16.7M) and TTFT bins 2^32 µs (71 minutes); anything larger counts
// in the last bin. A window's percentiles (nearest rank) are read from the
// sum of its buckets, so they carry the same error bound.
//
// The rings are cleared lazily: a slot remembers which bucket it holds; a
// sample for a newer bucket empties it, a sample older than the bucket the
// slot holds is older than the ring and dropped, and a window reads a slot
// only if it holds the bucket the window wants. Idle gaps therefore cost
// nothing, a sample that arrives a little late, or from a clock that
// stepped back a little, lands in its own bucket, and no timer is needed.
//
// The shift detector compares the recent window (ShiftRecent, 5m) with the
// baseline: the ShiftBaseline window (1h) less the recent one. Leaving the
// recent window out keeps a surge from raising its own baseline: a flood
// that sends more requests in 5 minutes than the 55 before would otherwise
// pull the hour's p90 up to its own. A model gets a Shift once both
// windows hold MinSamples requests; the Shift is Active when the recent
// p90 prompt is at least ShiftRatio times the baseline's. The TTFT p90 of
// the same windows stands beside it: a prompt surge that explains a TTFT
// rise shows both ratios up. The Shift names the recent window's heaviest
// keys by prompt tokens.
//
// Keys are counted by space-saving summaries (TopK), one per minute bucket
// with 4×TopKeys counters, merged for a window: per model by prompt tokens
// over the recent window, and across models by prompt plus output tokens
// over the last hour for HeavyKeys. A reported key is off by at most its
// Error, which stays under 1/(4×TopKeys) of the window's tokens.
//
// Memory is fixed by the configuration, not by traffic: a bucket is about
// 3 KB, so a model costs its 6 + 60 buckets (more when ShiftBaseline is
// longer than an hour: 3 KB per further minute) and 5 key summaries, about
// 240 KB with the defaults, and the hour of heavy-key summaries about
// 450 KB more for the whole Patterns. MaxModels models are tracked, plus
// "other" for the ones beyond; a model silent for the whole ring gives its
// place up to the next new one, so names seen once do not hold it forever.
// Observe takes one model's lock and the key lock, allocates nothing for
// known models and keys, and costs a few hundred nanoseconds.
package patterns
