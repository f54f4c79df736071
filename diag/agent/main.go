package agent

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/llmgate/llmgate/diag"
	"github.com/llmgate/llmgate/internal/cli"
)

// Main is the `llmgate agent` command: it parses args (without the command name),
// then serves until ctx is done, or with --once collects once, prints the /diag
// JSON to stdout and returns (with an error, after printing, if a source failed).
// Logs go to stderr as JSON lines.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmgate agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: llmgate agent [flags]\n\n"+
			"Serves this GPU host's nvidia-smi, Xid and /proc state on GET /diag (JSON)\n"+
			"and GET /metrics (Prometheus) for the llmgate gateway.\n\n")
		fs.PrintDefaults()
	}
	listen := fs.String("listen", DefaultListen, "address to serve /diag and /metrics on")
	smiPath := fs.String("nvidia-smi", "nvidia-smi", "nvidia-smi binary (path, or name looked up in PATH)")
	var smiArgs stringList
	fs.Var(&smiArgs, "nvidia-smi-arg", "argument put before the query arguments of nvidia-smi (repeatable), e.g. for a wrapper")
	interval := fs.Duration("interval", DefaultInterval, "time between collections")
	timeout := fs.Duration("timeout", 5*time.Second, "limit for one nvidia-smi run; a hung one is killed")
	root := fs.String("root", "/", "filesystem root holding /proc and /sys (the host's root mounted in a container)")
	kmsg := fs.String("kmsg", "/dev/kmsg", "kernel log to read Xid errors from; empty to skip")
	once := fs.Bool("once", false, "collect once, print the /diag JSON to stdout and exit")
	if help, err := cli.ParseFlags(fs, args); help || err != nil {
		return err
	}
	if *interval <= 0 || *timeout <= 0 {
		return errors.New("--interval and --timeout must be positive")
	}

	a := &Agent{
		Listen:    *listen,
		NvidiaSMI: &diag.NvidiaSMI{Path: *smiPath, Args: smiArgs, Timeout: *timeout},
		Host:      &diag.HostReader{Root: *root},
		Interval:  *interval,
		Logger:    newLogger(stderr),
	}
	if *kmsg != "" {
		a.XID = &diag.XIDWatcher{Path: *kmsg}
		defer a.XID.Close()
	}
	defer func() { _ = a.Logger.Sync() }() // a failed flush at exit has nowhere to be reported

	if !*once {
		return a.ListenAndServe(ctx)
	}
	r := a.Collect(ctx)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return err
	}
	if len(r.Errors) > 0 {
		var msgs []string
		for _, source := range slices.Sorted(maps.Keys(r.Errors)) {
			msgs = append(msgs, source+": "+r.Errors[source])
		}
		return fmt.Errorf("collection failed: %s", strings.Join(msgs, "; "))
	}
	return nil
}

func newLogger(w io.Writer) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	// Lock: the collector and the HTTP server log from different goroutines, and
	// w need not be safe for that (os.Stderr is, a test's buffer is not).
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(zapcore.AddSync(w)), zap.InfoLevel)
	return zap.New(core).Named("agent")
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, " ") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}
