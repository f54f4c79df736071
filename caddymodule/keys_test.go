package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/llmgate/llmgate/internal/testutil"
	"github.com/llmgate/llmgate/limiter"
	"github.com/llmgate/llmgate/patterns"
)

// TestKeySecrets is the check for secrets, through a real gateway: a
// tier given by its key's SHA-256 leaves no raw key (and the key_secret no
// secret) in the adapted config or GET /config/, and still gets its limits;
// llm_key and the patterns name keys by the configured keyed hash; the public
// health answer has no per-key figures unless show_keys is set.
func TestKeySecrets(t *testing.T) {
	freshLimiters(t)
	const (
		secret = "0123456789abcdef-test-key-secret"
		gold   = "Bearer sk-gold-e2e"
		other  = "Bearer sk-other-e2e"
	)
	t.Setenv("LLMGATE_TEST_KEY_SECRET", secret)
	goldSum := sha256.Sum256([]byte(gold))
	s := startSim(t, nil)
	admin, gw := testutil.FreeAddr(t), testutil.FreeAddr(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	src := fmt.Sprintf(`{
	admin %s
	persist_config off
	llm {
		scrape_interval 100ms
		key_secret {env.LLMGATE_TEST_KEY_SECRET}
	}
}
http://%s {
	log {
		output file %s
		format json
	}
	handle /llm/health {
		llm_health
	}
	handle /llm/health-keys {
		llm_health {
			show_keys
		}
	}
	llm {
		limit {http.request.header.Authorization} {
			requests 1/m
			tier sha256:%s {
				requests 3/m
			}
		}
	}
	reverse_proxy %s {
		lb_policy llm
	}
}`, admin, gw, logPath, hex.EncodeToString(goldSum[:]), s.Addr())

	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "test.Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"sk-gold", secret} {
		if strings.Contains(string(cfgJSON), leak) {
			t.Fatalf("adapted config holds %q:\n%s", leak, cfgJSON)
		}
	}
	loadCaddyfile(t, src)
	running := get(t, "http://"+admin+"/config/")
	if !strings.Contains(running, "sha256:") {
		t.Fatalf("GET /config/ is not the config: %s", running)
	}
	for _, leak := range []string{"sk-gold", secret} {
		if strings.Contains(running, leak) {
			t.Fatalf("GET /config/ holds %q:\n%s", leak, running)
		}
	}

	send := func(key string) int {
		resp := postJSON(t, context.Background(), "http://"+gw+"/v1/completions", `{"model":"m","prompt":"hi","max_tokens":4}`, "Authorization", key)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 3 {
		if code := send(gold); code != http.StatusOK {
			t.Fatalf("hashed-tier key, request %d of its 3/m: %d", i+1, code)
		}
	}
	if code := send(gold); code != http.StatusTooManyRequests {
		t.Fatalf("hashed-tier key past its 3/m: %d", code)
	}
	if code := send(other); code != http.StatusOK {
		t.Fatalf("default key, first request: %d", code)
	}
	if code := send(other); code != http.StatusTooManyRequests {
		t.Fatalf("default key past its 1/m: %d, so it got the tier's limits", code)
	}

	// The names are the configured secret's, which an operator can compute.
	want := limiter.NewHasher([]byte(secret)).HashKey(gold)
	testutil.Eventually(t, "llm_key "+want+" in the access log", func() (bool, string) {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), `"llm_key":"`+want+`"`), string(b)
	})
	var rep patterns.Report
	testutil.Eventually(t, "the gold key among the heavy keys", func() (bool, string) {
		body := get(t, "http://"+admin+"/llm/patterns")
		rep = patterns.Report{}
		json.Unmarshal([]byte(body), &rep)
		for _, k := range rep.HeavyKeys {
			if k.Key == want {
				return true, ""
			}
		}
		return false, body
	})

	public := get(t, "http://"+gw+"/llm/health")
	var pr struct {
		Patterns *struct {
			Models    []json.RawMessage `json:"models"`
			HeavyKeys []json.RawMessage `json:"heavy_keys"`
		} `json:"patterns"`
	}
	if err := json.Unmarshal([]byte(public), &pr); err != nil || pr.Patterns == nil || len(pr.Patterns.Models) == 0 {
		t.Fatalf("public health has no patterns (%v): %s", err, public)
	}
	if len(pr.Patterns.HeavyKeys) != 0 || strings.Contains(public, want) {
		t.Fatalf("public health shows per-key figures: %s", public)
	}
	if shown := get(t, "http://"+gw+"/llm/health-keys"); !strings.Contains(shown, want) {
		t.Fatalf("health with show_keys lacks %s: %s", want, shown)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestKeySecretCaddyfile(t *testing.T) {
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`llm {
		key_secret {env.LLMGATE_KEY_SECRET}
	}`)); err != nil || a.KeySecret != "{env.LLMGATE_KEY_SECRET}" {
		t.Fatalf("key_secret: %q %v", a.KeySecret, err)
	}
	var h Health
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`llm_health {
		show_keys
	}`)); err != nil || !h.ShowKeys {
		t.Fatalf("show_keys: %+v %v", h, err)
	}
	if err := new(Health).UnmarshalCaddyfile(caddyfile.NewTestDispenser(`llm_health`)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"llm {\n key_secret \n}",
		"llm {\n key_secret a b \n}",
	} {
		if err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	for _, bad := range []string{
		"llm_health {\n show_keys yes \n}",
		"llm_health {\n keys \n}",
	} {
		if err := new(Health).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	// A hashed tier key must be 64 hex digits: a typo is an error, not a tier
	// that never matches.
	for _, tier := range []string{"sha256:9f86d0", "sha256:" + strings.Repeat("g", 64)} {
		src := fmt.Sprintf("llm {\n limit {k} {\n tier %s {\n requests 1/s \n}\n}\n}", tier)
		if err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err == nil {
			t.Errorf("tier %s: accepted", tier)
		}
	}
}

// TestKeySecretResolves: a configured secret names keys as any gateway with
// it would, another secret differently; a short one is refused, and an
// unset variable leaves the per-process secret.
func TestKeySecretResolves(t *testing.T) {
	keysFor := func(secret string) (*limiter.Hasher, error) {
		t.Setenv("LLMGATE_TEST_KEY_SECRET", secret)
		a := &App{KeySecret: "{env.LLMGATE_TEST_KEY_SECRET}", logger: zap.NewNop()}
		if err := a.provisionKeys(); err != nil {
			return nil, err
		}
		return a.keyHasher(), nil
	}
	one, err := keysFor("a secret long enough to use")
	if err != nil {
		t.Fatal(err)
	}
	again, _ := keysFor("a secret long enough to use")
	two, _ := keysFor("another secret long enough")
	const key = "Bearer sk-abc"
	if one.HashKey(key) != again.HashKey(key) || one.HashKey(key) == two.HashKey(key) {
		t.Fatalf("hashes %s %s %s: want equal for one secret, different across", one.HashKey(key), again.HashKey(key), two.HashKey(key))
	}
	if _, err := keysFor("x7Qz9"); err == nil || strings.Contains(err.Error(), "short") {
		t.Fatalf("a 5-byte secret: %v (want an error that does not print it)", err)
	}
	unset, err := keysFor("")
	if err != nil || unset != processKeys(nil) {
		t.Fatalf("unset secret: %v; want the per-process hasher", err)
	}
}
