// Package testutil holds the test helpers several packages share.
package testutil

import (
	"net"
	"testing"
	"time"
)

// deadline bounds a wait that never ends; it is generous because it measures
// nothing: a loaded 2-core CI machine must not fail a test that only waits.
const (
	deadline = 60 * time.Second
	poll     = 10 * time.Millisecond
)

// Eventually polls cond until it holds, or fails the test with what it waited
// for and the last state cond reported.
func Eventually(t testing.TB, what string, cond func() (ok bool, state string)) {
	t.Helper()
	var last string
	for end := time.Now().Add(deadline); time.Now().Before(end); time.Sleep(poll) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
	}
	t.Fatalf("timed out waiting for %s; last state:\n%s", what, last)
}

// WaitFor is Eventually for a condition with no state worth showing.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	Eventually(t, what, func() (bool, string) { return cond(), "" })
}

// FreeAddr is a loopback address the kernel just handed out and nothing
// listens on now: for servers that must be told their address before they
// listen (a Caddy config, a command's flag). The window in which another
// process could take the port is tiny.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
