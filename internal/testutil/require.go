package testutil

import (
	"os"
	"testing"
)

// Missing handles a real component a test needs (redis-server, chromium)
// that this machine lacks: the test skips on a developer's machine, and
// fails where the component is required: with requireEnv set to 1, as
// .ci/run sets it after installing the component, or under any CI (CI set),
// so that a missing component can never turn CI's run into a skip.
func Missing(t testing.TB, requireEnv, msg string) {
	t.Helper()
	if os.Getenv(requireEnv) == "1" || os.Getenv("CI") != "" {
		t.Fatalf("%s (required here: %s=1 or CI set)", msg, requireEnv)
	}
	t.Skip(msg)
}
