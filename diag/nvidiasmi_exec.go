package diag

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// NvidiaSMI runs nvidia-smi --query-gpu and parses its table. The zero value runs
// "nvidia-smi" from PATH with a 5 s timeout. Use it through a pointer and keep it:
// it remembers which field names the driver accepted, so the old-driver fallback
// costs one extra run per process, not one per collection.
type NvidiaSMI struct {
	// Path is the binary; "nvidia-smi" (looked up in PATH) when empty.
	Path string
	// Args go before the query arguments, so Path can be a wrapper such as
	// `llmgate sim nvidia-smi --sim-url ...`.
	Args []string
	// Timeout bounds a whole Query, fallback retries included; 5 s when zero.
	Timeout time.Duration

	mu     sync.Mutex
	fields []string // what the driver last accepted; nil before the first success
	stuck  bool     // a killed nvidia-smi has not exited yet
}

const (
	defaultNvidiaSMITimeout = 5 * time.Second
	// nvidiaSMIWaitDelay is how long Wait waits for the output pipes after the
	// process is gone: a grandchild that inherited them must not hold us up.
	nvidiaSMIWaitDelay = 500 * time.Millisecond
	// nvidiaSMIStuckGrace is how long a killed nvidia-smi may take to exit before
	// it is abandoned. A process blocked in the driver (a GPU that fell off the
	// bus) ignores SIGKILL until the kernel lets go, sometimes for minutes.
	nvidiaSMIStuckGrace = 2 * time.Second
	maxNvidiaSMIStderr  = 64 << 10
	// maxSMIFieldRetries bounds the field fallbacks in one Query.
	maxSMIFieldRetries = 3
)

// smiFieldFallback names, for a field a driver may reject, the name to try instead.
var smiFieldFallback = map[string]string{
	"clocks_event_reasons.active": "clocks_throttle_reasons.active", // before driver ~530
	"pcie.link.gen.current":       "pcie.link.gen.gpucurrent",       // deprecated in 590
	"clocks.sm":                   "clocks.current.sm",
}

// smiInvalidField matches nvidia-smi's answer (on stdout, non-zero exit) to a field
// name it does not know: `Field "clocks_event_reasons.active" is not a valid field to query.`
var smiInvalidField = regexp.MustCompile(`Field "([^"]{1,200})" is not a valid field to query`)

// Fields returns the field list the next Query will ask for: the one the driver
// last accepted, or NvidiaSMIFields before any success.
func (n *NvidiaSMI) Fields() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fields != nil {
		return slices.Clone(n.fields)
	}
	return slices.Clone(NvidiaSMIFields)
}

// Query runs nvidia-smi and returns one GPU per line of its answer.
func (n *NvidiaSMI) Query(ctx context.Context) ([]GPU, error) {
	raw, fields, err := n.QueryRaw(ctx)
	if err != nil {
		return nil, err
	}
	return ParseNvidiaSMICSV(raw, fields)
}

// QueryRaw runs nvidia-smi and returns its unparsed stdout with the field list it
// answered. When the driver rejects a field that has a known older or newer name,
// it retries with that name; a rejected field without one is dropped (index
// excepted), since a partial table is worth more than none. The list that works
// is remembered for later calls.
func (n *NvidiaSMI) QueryRaw(ctx context.Context) (raw []byte, fields []string, err error) {
	timeout := n.Timeout
	if timeout <= 0 {
		timeout = defaultNvidiaSMITimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	fields = n.Fields()
	for attempt := 0; ; attempt++ {
		stdout, stderr, err := n.run(ctx, fields, timeout)
		bad := rejectedSMIField(stdout, stderr)
		if bad == "" {
			if err != nil {
				return nil, fields, err
			}
			n.mu.Lock()
			n.fields = slices.Clone(fields)
			n.mu.Unlock()
			return stdout, fields, nil
		}
		next, ok := smiFieldsWithout(fields, bad)
		if !ok || attempt == maxSMIFieldRetries {
			return nil, fields, fmt.Errorf("nvidia-smi does not know query field %q", bad)
		}
		fields = next
	}
}

func rejectedSMIField(stdout, stderr []byte) string {
	for _, b := range [][]byte{stdout, stderr} {
		if m := smiInvalidField.FindSubmatch(b); m != nil {
			return string(m[1])
		}
	}
	return ""
}

// smiFieldsWithout replaces the rejected field by its fallback, or drops it.
func smiFieldsWithout(fields []string, bad string) ([]string, bool) {
	i := slices.Index(fields, bad)
	if i < 0 || bad == "index" {
		return nil, false
	}
	next := slices.Clone(fields)
	if alt, ok := smiFieldFallback[bad]; ok && !slices.Contains(fields, alt) {
		next[i] = alt
		return next, true
	}
	return slices.Delete(next, i, i+1), true
}

// run executes one nvidia-smi query. On timeout the whole process group is killed;
// a process that still does not exit is abandoned, and until it exits run refuses
// to start another, so a wedged driver costs one stuck process, not one per tick.
func (n *NvidiaSMI) run(ctx context.Context, fields []string, timeout time.Duration) (stdout, stderr []byte, err error) {
	n.mu.Lock()
	stuck := n.stuck
	n.mu.Unlock()
	if stuck {
		return nil, nil, errors.New("nvidia-smi: an earlier run was killed and has not exited yet (GPU driver hung?)")
	}

	path := n.Path
	if path == "" {
		path = "nvidia-smi"
	}
	args := append(slices.Clone(n.Args), "--query-gpu="+strings.Join(fields, ","), "--format=csv,noheader,nounits")
	// A flood past the output limit cancels the run at once: nothing after the
	// limit will be parsed, so there is no reason to wait for the timeout.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := exec.CommandContext(runCtx, path, args...)
	out := &cappedBuffer{limit: maxNvidiaSMIOutput, onOver: stop}
	errOut := &cappedBuffer{limit: maxNvidiaSMIStderr}
	cmd.Stdout, cmd.Stderr = out, errOut
	cmd.WaitDelay = nvidiaSMIWaitDelay
	killGroupOnCancel(cmd)
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("nvidia-smi not found at %q (is the NVIDIA driver installed? the agent's --nvidia-smi flag sets the path): %w", path, err)
		}
		return nil, nil, fmt.Errorf("starting nvidia-smi: %w", err)
	}

	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-runCtx.Done():
		select {
		case err = <-done:
		case <-time.After(nvidiaSMIWaitDelay + nvidiaSMIStuckGrace):
			n.mu.Lock()
			n.stuck = true
			n.mu.Unlock()
			go func() {
				<-done
				n.mu.Lock()
				n.stuck = false
				n.mu.Unlock()
			}()
			return nil, nil, fmt.Errorf("nvidia-smi (pid %d) timed out and did not exit when killed (GPU driver hung?)", cmd.Process.Pid)
		}
	}

	switch {
	case out.over:
		return nil, nil, fmt.Errorf("nvidia-smi printed more than %d bytes", maxNvidiaSMIOutput)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, nil, fmt.Errorf("nvidia-smi timed out after %s", timeout)
	case ctx.Err() != nil:
		return nil, nil, ctx.Err()
	case err != nil:
		return out.Bytes(), errOut.Bytes(), fmt.Errorf("nvidia-smi failed (%w): %s", err, smiMessage(out.Bytes(), errOut.Bytes()))
	}
	return out.Bytes(), errOut.Bytes(), nil
}

// smiMessage picks what nvidia-smi said about a failure ("NVIDIA-SMI has failed
// because it couldn't communicate with the NVIDIA driver...", "No devices were
// found"), short enough for an error string.
func smiMessage(stdout, stderr []byte) string {
	msg := strings.TrimSpace(string(stderr))
	if msg == "" {
		msg = strings.TrimSpace(string(stdout))
	}
	if msg == "" {
		return "no output"
	}
	msg = strings.Join(strings.Fields(msg), " ")
	return smiClip(msg, 300)
}

// cappedBuffer keeps the first limit bytes written and drops the rest. It never
// returns an error, so the child never blocks on a full pipe or dies of EPIPE
// before it can be waited for. The buffer is a field, not embedded: an embedded
// bytes.Buffer would give it a ReadFrom that io.Copy prefers over the capped Write.
type cappedBuffer struct {
	buf    bytes.Buffer
	limit  int
	over   bool
	onOver func() // called once, when the limit is first passed
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	room := b.limit - b.buf.Len()
	if len(p) > room {
		if !b.over && b.onOver != nil {
			b.onOver()
		}
		b.over = true
		if room > 0 {
			b.buf.Write(p[:room])
		}
		return len(p), nil
	}
	return b.buf.Write(p)
}

// Bytes returns what was kept.
func (b *cappedBuffer) Bytes() []byte { return b.buf.Bytes() }
