package bench

import (
	"io"
	"time"

	"github.com/llmgate/llmgate/traffic"
)

// streamObs is what one SSE response showed, read by the gateway's own stream
// observer (traffic.Observer) so that the load generator and the gateway count
// TTFT, gaps and tokens the same way. It is reused across requests (reset), so
// its buffers stop allocating once they have grown.
type streamObs struct {
	obs   traffic.Observer
	start time.Time       // the request was sent
	gaps  []time.Duration // between consecutive content events
	buf   []byte
	res   traffic.Result // once readSSE returns
}

func (o *streamObs) reset(start time.Time) {
	if o.obs.OnGap == nil {
		o.obs.OnGap = func(gap time.Duration) { o.gaps = append(o.gaps, gap) }
	}
	o.start, o.gaps, o.res = start, o.gaps[:0], traffic.Result{}
	o.obs.Reset(start)
	o.obs.Header(200, "text/event-stream", start)
}

// readSSE reads an SSE body until it ends, showing each piece to the observer
// as it arrives, and returns the read error (nil at a clean EOF).
//
// After [DONE] it keeps reading to EOF, which is where the chunked body
// ends right after: a body closed before EOF costs the connection, and
// OpenAI clients read to the end too. The answer itself ended at [DONE].
func readSSE(r io.Reader, o *streamObs) error {
	if o.buf == nil {
		o.buf = make([]byte, readerSize)
	}
	for {
		n, err := r.Read(o.buf)
		if n > 0 {
			o.obs.Body(o.buf[:n], time.Now())
		}
		if err != nil {
			o.res = o.obs.Finish(time.Now())
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

const maxErrSample = 200

// truncate keeps error samples short enough for a table cell.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
