package diagnose

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/llmgate/llmgate/internal/cli"
)

// ErrCritical is what Main returns after writing a report with a critical
// finding, so that the command can exit 2 and a script can tell "the gateway
// has a problem" from "diagnose could not run" (1).
var ErrCritical = errors.New("diagnose: critical findings")

// Main is `llmgate diagnose`: it parses args (without the command name),
// collects, and writes the report to stdout or --out. It returns ErrCritical
// when the report has a critical finding, another error for bad usage or an
// unwritable --out, nil otherwise.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("llmgate diagnose", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: llmgate diagnose [flags]\n\n"+
			"Reads a running gateway (admin API or health endpoint, metrics, request patterns)\n"+
			"and, with --local, this host's GPUs and kernel log, and writes one report:\n"+
			"findings first, then the data. Exit status 2 when a finding is critical.\n\n")
		fs.PrintDefaults()
	}
	var opts Options
	fs.StringVar(&opts.Admin, "admin", "localhost:2019", "Caddy admin API address or URL; empty to skip it")
	fs.StringVar(&opts.Health, "health", "", "URL of the llm_health endpoint, used when the admin API does not answer")
	fs.StringVar(&opts.Metrics, "metrics", "", "URL of a page with the llmgate_* metrics (default: the admin API's /metrics)")
	fs.BoolVar(&opts.Local, "local", false, "also read this host: nvidia-smi, /proc, kernel log (Xid errors)")
	fs.StringVar(&opts.NvidiaSMI, "nvidia-smi", "nvidia-smi", "nvidia-smi binary for --local (path, or name looked up in PATH)")
	fs.StringVar(&opts.HostRoot, "root", "/", "filesystem root holding /proc and /sys for --local")
	fs.StringVar(&opts.Kmsg, "kmsg", "/dev/kmsg", "kernel log to read Xid errors from for --local; - to skip")
	fs.DurationVar(&opts.Timeout, "timeout", DefaultTimeout, "limit for each source")
	asJSON := fs.Bool("json", false, "write JSON (the snapshot and findings) instead of Markdown")
	out := fs.String("out", "", "write the report to this file instead of stdout")
	if help, err := cli.ParseFlags(fs, args); help || err != nil {
		return err
	}
	if opts.Timeout <= 0 {
		return errors.New("--timeout must be positive")
	}

	snap, err := Collect(ctx, opts)
	if err != nil {
		return err
	}
	report := NewReport(snap)
	var buf bytes.Buffer
	if *asJSON {
		err = report.JSON(&buf)
	} else {
		err = report.Markdown(&buf)
	}
	if err != nil {
		return err
	}
	if *out != "" {
		if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "diagnose: %s written to %s\n", tally(report.Findings), *out)
	} else if _, err := stdout.Write(buf.Bytes()); err != nil {
		return err
	}
	if report.Critical() {
		return ErrCritical
	}
	return nil
}

func tally(fs []Finding) string {
	n := map[Severity]int{}
	for _, f := range fs {
		n[f.Severity]++
	}
	return fmt.Sprintf("%d critical, %d warning, %d info", n[Critical], n[Warning], n[Info])
}
