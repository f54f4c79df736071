package testutil

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireRedisEnv, set to 1 (as .ci/run does), turns a missing redis-server
// from a skipped test into a failed one.
const RequireRedisEnv = "LLMGATE_REQUIRE_REDIS"

// Redis is a redis-server started for a test on a free loopback port,
// without persistence. It is stopped when the test ends.
type Redis struct {
	Addr string

	t    testing.TB
	bin  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// RedisServer returns the redis-server binary ($REDIS_SERVER, else PATH), or
// skips the test without one (fails it when $LLMGATE_REQUIRE_REDIS is 1).
func RedisServer(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("REDIS_SERVER")
	if bin == "" {
		bin, _ = exec.LookPath("redis-server")
	}
	if bin == "" {
		Missing(t, RequireRedisEnv, "redis-server not found on PATH or in $REDIS_SERVER (apt-get install redis-server); this test needs a real Redis")
	}
	return bin
}

// StartRedis starts a redis-server for the test.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: RedisServer(t), Addr: FreeAddr(t)}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start starts the server (again) on its address and waits until it
// answers PING.
func (r *Redis) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return
	}
	_, port, _ := net.SplitHostPort(r.Addr)
	cmd := exec.Command(r.bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning", "--dir", r.t.TempDir())
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if pingRedis(r.Addr) == nil {
			break
		}
		select {
		case <-done:
			r.t.Fatalf("redis-server on %s exited: %s", r.Addr, out.String())
		default:
		}
		if time.Now().After(end) {
			cmd.Process.Kill()
			r.t.Fatalf("redis-server on %s did not answer PING in 10s: %s", r.Addr, out.String())
		}
	}
	r.cmd, r.done = cmd, done
}

// Stop stops the server (SIGKILL: no goodbye to clients, as in a crash).
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

// Pause freezes the server (SIGSTOP): connections stay open and nothing
// answers, as when a host hangs; Resume (SIGCONT) ends it.
func (r *Redis) Pause() { r.signal("-STOP") }

// Resume continues a paused server.
func (r *Redis) Resume() { r.signal("-CONT") }

func (r *Redis) signal(sig string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		exec.Command("kill", sig, fmt.Sprint(r.cmd.Process.Pid)).Run()
	}
}

// Do sends one command (space-separated words, no quoting) and returns the
// first line of the answer, for tests that look into the store.
func (r *Redis) Do(cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", r.Addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	words := strings.Fields(cmd)
	fmt.Fprintf(c, "*%d\r\n", len(words))
	for _, w := range words {
		fmt.Fprintf(c, "$%d\r\n%s\r\n", len(w), w)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	fmt.Fprint(c, "PING\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING: %q", line)
	}
	return nil
}
