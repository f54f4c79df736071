package main

import (
	"context"
	"errors"
	"io"

	"github.com/llmgate/llmgate/diagnose"
	"github.com/llmgate/llmgate/sim"
)

func init() {
	register("diagnose", "[--admin localhost:2019] [--health URL] [--local] [--nvidia-smi PATH] [--json] [--out FILE] [--timeout 5s]",
		"Report what is wrong with a running gateway (and this GPU host): findings first, then the data", runDiagnose)
}

// runDiagnose maps a report with critical findings to exit status 2 (the
// report itself says why, so nothing more is printed); other errors exit 1.
func runDiagnose(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := diagnose.Main(ctx, args, stdout, stderr)
	if errors.Is(err, diagnose.ErrCritical) {
		return &sim.ExitError{Code: 2}
	}
	return err
}
