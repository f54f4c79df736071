package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Progress is a run's state, passed to Config.Progress while it lasts.
type Progress struct {
	Elapsed time.Duration
	// Phase is "warmup", "measure" or "drain" (waiting for the last
	// requests after issuing stopped).
	Phase string
	// Done is the fraction of the run behind us, by time or by request
	// count, whichever is further along.
	Done     float64
	InFlight int
	// Succeeded and Failed count measured requests so far.
	Succeeded, Failed int64
	// Rates over the last interval, warmup included.
	RequestsPerSec, TokensPerSec float64
}

func (r *runner) progress(now time.Time, dt time.Duration, prev, cur snapshot) Progress {
	p := Progress{
		Elapsed:   now.Sub(r.t0),
		InFlight:  int(r.inflight.Load()),
		Succeeded: cur.ok,
		Failed:    cur.failed,
	}
	switch {
	case now.Before(r.winStart):
		p.Phase = "warmup"
	case r.issueCtx.Err() == nil:
		p.Phase = "measure"
	default:
		p.Phase = "drain"
	}
	if total := r.cfg.Warmup + r.cfg.Duration; r.cfg.Duration > 0 && total > 0 {
		p.Done = float64(p.Elapsed) / float64(total)
	}
	if n := r.cfg.Requests; n > 0 {
		p.Done = max(p.Done, float64(r.tickets.Load())/float64(n))
	}
	p.Done = min(p.Done, 1)
	if s := dt.Seconds(); s > 0 {
		p.RequestsPerSec = float64(cur.allOK-prev.allOK) / s
		p.TokensPerSec = float64(cur.allTokens-prev.allTokens) / s
	}
	return p
}

// progressPrinter shows progress on a terminal as one line redrawn in
// place, and elsewhere (a log, a CI job) as plain lines.
type progressPrinter struct {
	w   io.Writer
	tty bool
}

const barWidth = 24

func (pp *progressPrinter) print(p Progress) {
	line := fmt.Sprintf("%-7s %6s  %5.1f%%  in flight %d  ok %d  failed %d  %.1f req/s  %.0f tok/s",
		p.Phase, fmtDur(p.Elapsed.Truncate(time.Second)), 100*p.Done, p.InFlight, p.Succeeded, p.Failed,
		p.RequestsPerSec, p.TokensPerSec)
	if !pp.tty {
		fmt.Fprintln(pp.w, line)
		return
	}
	filled := int(p.Done * barWidth)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", barWidth-filled)
	// \r returns to the line's start and \x1b[K clears what a longer
	// previous line left behind.
	fmt.Fprintf(pp.w, "\r[%s] %s\x1b[K", bar, line)
}

// finish ends the redrawn line so that what follows starts clean.
func (pp *progressPrinter) finish() {
	if pp.tty {
		fmt.Fprint(pp.w, "\r\x1b[K")
	}
}
