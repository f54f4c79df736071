package caddymodule

// Checks of deploy/: the Prometheus rules and the Grafana dashboard may only use
// metrics llmgate exports (or series the rules record), and must be well formed.
// The names come from collectors() itself, so renaming a metric without updating
// deploy/ fails here. When promtool is available (on PATH or in $PROMTOOL; .ci/run
// takes it from Debian's prometheus package) the PromQL is also parsed by
// Prometheus itself; otherwise the structural checks below are what CI has.

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

const (
	deployRulesGlob = "../deploy/prometheus/*.yml"
	deployDashboard = "../deploy/grafana/llmgate-fleet.json"
	deployReadme    = "../deploy/README.md"
)

// deployDescName finds the fqName in a Desc's String(), which is the only place
// client_golang shows it: Desc{fqName: "name", help: ..., ...}.
var deployDescName = regexp.MustCompile(`fqName: "([^"]+)"`)

// deployExportedNames returns every series name llmgate's collectors can
// export: family names, with _bucket/_sum/_count for histograms and _sum/_count
// for summaries.
func deployExportedNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, c := range collectors() {
		kind := deployCollectorKind(c)
		ch := make(chan *prometheus.Desc)
		go func() {
			c.Describe(ch)
			close(ch)
		}()
		for d := range ch {
			m := deployDescName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no fqName in %s", d)
			}
			names[m[1]] = true
			switch kind {
			case "histogram":
				names[m[1]+"_bucket"], names[m[1]+"_sum"], names[m[1]+"_count"] = true, true, true
			case "summary":
				names[m[1]+"_sum"], names[m[1]+"_count"] = true, true
			}
		}
	}
	return names
}

// deployCollectorKind says whether a collector exports histograms or summaries,
// whose families add suffixed series. Other collectors export plain series.
func deployCollectorKind(c prometheus.Collector) string {
	switch v := c.(type) {
	case *prometheus.HistogramVec:
		return "histogram"
	case *prometheus.SummaryVec:
		return "summary"
	case prometheus.Metric: // a lone Histogram or Summary: same interface, so ask it
		var m dto.Metric
		if v.Write(&m) == nil {
			if m.Histogram != nil {
				return "histogram"
			}
			if m.Summary != nil {
				return "summary"
			}
		}
	}
	return ""
}

// deployRecordName is the naming convention of recorded series: level:metric:ops
// with an llmgate metric in the middle, which is also how deployMetricRefs tells a
// recorded name from a label or function name.
var deployRecordName = regexp.MustCompile(`^[a-z_]+:llmgate_[a-z0-9_]+:[a-z0-9_]+$`)

var deployAlertName = regexp.MustCompile(`^LLMGate[A-Z][A-Za-z0-9]+$`)

// deployMetricRefs returns the series names a PromQL expression uses: the
// identifiers that start with llmgate_ or contain :llmgate_. Strings, comments and
// numbers (5m, 1e3) are skipped, so label values and durations never count; the
// brackets must balance.
func deployMetricRefs(expr string) ([]string, error) {
	var refs, stack []string
	closing := map[byte]string{')': "(", ']': "[", '}': "{"}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(expr) && expr[j] != c {
				if expr[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(expr) {
				return nil, fmt.Errorf("unterminated string at offset %d", i)
			}
			i = j + 1
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(expr) && expr[i+1] >= '0' && expr[i+1] <= '9':
			for i < len(expr) && deployIdentByte(expr[i], true) || i < len(expr) && expr[i] == '.' {
				i++
			}
		case deployIdentByte(c, false):
			j := i
			for j < len(expr) && deployIdentByte(expr[j], true) {
				j++
			}
			tok := expr[i:j]
			if strings.HasPrefix(tok, "llmgate_") || strings.Contains(tok, ":llmgate_") {
				refs = append(refs, tok)
			}
			i = j
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, string(c))
			i++
		case c == ')' || c == ']' || c == '}':
			if len(stack) == 0 || stack[len(stack)-1] != closing[c] {
				return nil, fmt.Errorf("unbalanced %q at offset %d", c, i)
			}
			stack = stack[:len(stack)-1]
			i++
		default:
			i++
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return refs, nil
}

func deployIdentByte(c byte, inside bool) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
		inside && (c >= '0' && c <= '9' || c == ':')
}

// deployTextRefs finds series names in free text (annotation templates, where
// prose apostrophes would confuse the PromQL scanner).
var deployTextRef = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_:]*`)

func deployTextRefs(s string) []string {
	var refs []string
	for _, tok := range deployTextRef.FindAllString(s, -1) {
		if strings.HasPrefix(tok, "llmgate_") || strings.Contains(tok, ":llmgate_") {
			refs = append(refs, tok)
		}
	}
	return refs
}

type deployRuleFile struct {
	Groups []deployRuleGroup `yaml:"groups"`
}

type deployRuleGroup struct {
	Name     string       `yaml:"name"`
	Interval string       `yaml:"interval"`
	Limit    int          `yaml:"limit"`
	Rules    []deployRule `yaml:"rules"`
}

type deployRule struct {
	Record        string            `yaml:"record"`
	Alert         string            `yaml:"alert"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// deployRules is what checking rule files found: the problems, and the names
// recorded and alerted on, and every series name used.
type deployRules struct {
	problems []string
	recorded map[string]bool
	alerts   []string
	used     map[string]bool
}

func (r *deployRules) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// deployCheckRules checks Prometheus rule files (name → content) against the
// exported names.
func deployCheckRules(files map[string][]byte, exported map[string]bool) *deployRules {
	r := &deployRules{recorded: map[string]bool{}, used: map[string]bool{}}
	parsed := map[string]deployRuleFile{}
	names := slices.Sorted(maps.Keys(files))
	// Pass 1: parse, and learn every recorded name (any group may use any).
	recordedAt := map[string][2]int{} // name → group index, rule index
	groupOf := map[string]string{}
	for _, name := range names {
		var f deployRuleFile
		dec := yaml.NewDecoder(strings.NewReader(string(files[name])))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			r.problem("%s: %v", name, err)
			continue
		}
		if len(f.Groups) == 0 {
			r.problem("%s: no rule groups", name)
		}
		parsed[name] = f
		for gi, g := range f.Groups {
			for ri, rule := range g.Rules {
				if rule.Record == "" {
					continue
				}
				if r.recorded[rule.Record] {
					r.problem("%s: %s recorded twice", name, rule.Record)
				}
				r.recorded[rule.Record] = true
				recordedAt[rule.Record] = [2]int{gi, ri}
				groupOf[rule.Record] = name + "/" + g.Name
			}
		}
	}
	// Pass 2: each rule.
	groups := map[string]bool{}
	alerts := map[string]bool{}
	for _, name := range names {
		f, ok := parsed[name]
		if !ok {
			continue
		}
		for gi, g := range f.Groups {
			if g.Name == "" || groups[g.Name] {
				r.problem("%s: group name %q empty or repeated", name, g.Name)
			}
			groups[g.Name] = true
			if g.Interval != "" {
				if _, err := model.ParseDuration(g.Interval); err != nil {
					r.problem("%s: group %s: interval: %v", name, g.Name, err)
				}
			}
			if len(g.Rules) == 0 {
				r.problem("%s: group %s has no rules", name, g.Name)
			}
			for ri, rule := range g.Rules {
				id := rule.Record + rule.Alert
				where := fmt.Sprintf("%s: group %s: rule %d (%s)", name, g.Name, ri, id)
				if (rule.Record == "") == (rule.Alert == "") {
					r.problem("%s: needs exactly one of record and alert", where)
				}
				if strings.TrimSpace(rule.Expr) == "" {
					r.problem("%s: no expr", where)
				}
				refs, err := deployMetricRefs(rule.Expr)
				if err != nil {
					r.problem("%s: expr: %v", where, err)
				}
				for _, a := range rule.Annotations {
					refs = append(refs, deployTextRefs(a)...)
				}
				for _, ref := range refs {
					r.used[ref] = true
					switch {
					case exported[ref]:
					case r.recorded[ref]:
						// Within a group rules run in order: a recorded series used by
						// an earlier rule of the same group would lag one interval.
						at := recordedAt[ref]
						if groupOf[ref] == name+"/"+g.Name && at[0] == gi && at[1] >= ri {
							r.problem("%s: uses %s before the rule that records it", where, ref)
						}
					default:
						r.problem("%s: uses %s, which llmgate does not export and no rule records", where, ref)
					}
				}
				if rule.Record != "" {
					if !deployRecordName.MatchString(rule.Record) {
						r.problem("%s: recorded name does not match %s", where, deployRecordName)
					}
					if exported[rule.Record] {
						r.problem("%s: records a name llmgate exports", where)
					}
					if rule.For != "" || len(rule.Annotations) > 0 {
						r.problem("%s: a recording rule has no for or annotations", where)
					}
					continue
				}
				if rule.Alert == "" {
					continue
				}
				if !deployAlertName.MatchString(rule.Alert) || alerts[rule.Alert] {
					r.problem("%s: alert name must match %s and be unique", where, deployAlertName)
				}
				alerts[rule.Alert] = true
				r.alerts = append(r.alerts, rule.Alert)
				if d, err := model.ParseDuration(rule.For); err != nil || d <= 0 {
					r.problem("%s: for: %q is not a positive duration", where, rule.For)
				}
				switch rule.Labels["severity"] {
				case "critical", "warning", "info":
				default:
					r.problem("%s: labels.severity %q is not critical, warning or info", where, rule.Labels["severity"])
				}
				for _, k := range []string{"summary", "description"} {
					if strings.TrimSpace(rule.Annotations[k]) == "" {
						r.problem("%s: no annotations.%s", where, k)
					}
				}
			}
		}
	}
	return r
}

// deployDashboardExprs is what checking a dashboard found: the problems, and the
// PromQL expressions it holds.
type deployDashboardExprs struct {
	problems []string
	exprs    []string
}

// deployCheckDashboard checks a Grafana dashboard's JSON and that its queries use
// only exported or recorded names.
func deployCheckDashboard(data []byte, exported, recorded map[string]bool) *deployDashboardExprs {
	d := &deployDashboardExprs{}
	problem := func(format string, args ...any) { d.problems = append(d.problems, fmt.Sprintf(format, args...)) }
	var dash struct {
		Title         string  `json:"title"`
		UID           string  `json:"uid"`
		SchemaVersion float64 `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Type       string `json:"type"`
				Name       string `json:"name"`
				Query      any    `json:"query"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
		Panels []deployPanel `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		problem("dashboard: %v", err)
		return d
	}
	if dash.Title == "" || dash.UID == "" {
		problem("dashboard: no title or uid")
	}
	if dash.SchemaVersion < 36 {
		problem("dashboard: schemaVersion %v, want 36 or later", dash.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = v.Type
		switch q := v.Query.(type) {
		case string:
			if v.Type == "datasource" && q != "prometheus" {
				problem("dashboard: variable %s: datasource type %q, want prometheus", v.Name, q)
			}
			if v.Type == "query" {
				d.exprs = append(d.exprs, q)
			}
		case map[string]any:
			if s, ok := q["query"].(string); ok {
				d.exprs = append(d.exprs, s)
			}
		}
		if v.Definition != "" {
			d.exprs = append(d.exprs, v.Definition)
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "backend": "query", "model": "query"} {
		if vars[name] != typ {
			problem("dashboard: want a %s variable named %s", typ, name)
		}
	}
	for _, a := range dash.Annotations.List {
		if a.Expr != "" {
			d.exprs = append(d.exprs, a.Expr)
		}
	}
	ids := map[float64]bool{}
	var walk func([]deployPanel)
	walk = func(panels []deployPanel) {
		for _, p := range panels {
			id := "?"
			if p.ID != nil {
				id = strconv.FormatFloat(*p.ID, 'g', -1, 64)
			}
			where := fmt.Sprintf("dashboard: panel %s (%s)", id, p.Title)
			if p.ID == nil || ids[*p.ID] {
				problem("%s: id missing or repeated", where)
			} else {
				ids[*p.ID] = true
			}
			if p.GridPos == nil {
				problem("%s: no gridPos", where)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Title == "" {
				problem("%s: no title", where)
			}
			if len(p.Targets) == 0 {
				problem("%s: no targets", where)
			}
			refIDs := map[string]bool{}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					problem("%s: target %s has no expr", where, tg.RefID)
				}
				if tg.RefID == "" || refIDs[tg.RefID] {
					problem("%s: target refId %q empty or repeated", where, tg.RefID)
				}
				refIDs[tg.RefID] = true
				if tg.Datasource.UID != "${datasource}" {
					problem("%s: target %s: datasource uid %q, want ${datasource}", where, tg.RefID, tg.Datasource.UID)
				}
				d.exprs = append(d.exprs, tg.Expr)
			}
		}
	}
	walk(dash.Panels)
	for _, e := range d.exprs {
		refs, err := deployMetricRefs(e)
		if err != nil {
			problem("dashboard: %q: %v", e, err)
		}
		for _, ref := range refs {
			if !exported[ref] && !recorded[ref] {
				problem("dashboard: %q uses %s, which llmgate does not export and no rule records", e, ref)
			}
		}
	}
	return d
}

type deployPanel struct {
	ID      *float64       `json:"id"`
	Type    string         `json:"type"`
	Title   string         `json:"title"`
	GridPos map[string]any `json:"gridPos"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []deployPanel `json:"panels"` // a collapsed row's
}

func deployReadRules(t *testing.T) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(deployRulesGlob)
	if err != nil || len(paths) == 0 {
		t.Fatalf("no rule files at %s (%v)", deployRulesGlob, err)
	}
	files := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[p] = b
	}
	return files
}

func deployReport(t *testing.T, problems []string) {
	t.Helper()
	for _, p := range problems {
		t.Error(p)
	}
}

func TestDeployExportedNames(t *testing.T) {
	names := deployExportedNames(t)
	// A few that must be there, one per kind of collector, so a change in how
	// Desc prints cannot turn every later check into a vacuous pass.
	for _, want := range []string{
		"llmgate_backend_rotation", "llmgate_backend_kv_cache_usage_ratio", // fleetCollector
		"llmgate_scrape_duration_seconds_bucket", "llmgate_backend_drains_total", // vecs
		"llmgate_ttft_seconds_count", "llmgate_refusals_total", "llmgate_admission_queue_requests",
	} {
		if !names[want] {
			t.Errorf("%s not among the exported names %v", want, slices.Sorted(maps.Keys(names)))
		}
	}
	if names["llmgate_backend_rotation_bucket"] {
		t.Error("a gauge got histogram suffixes")
	}
}

func TestDeployRules(t *testing.T) {
	r := deployCheckRules(deployReadRules(t), deployExportedNames(t))
	deployReport(t, r.problems)
	if len(r.alerts) < 10 || len(r.recorded) == 0 {
		t.Errorf("%d alerts and %d recorded series: the rule files did not parse into what they hold", len(r.alerts), len(r.recorded))
	}
	// Every alert has its runbook lines in deploy/README.md.
	readme, err := os.ReadFile(deployReadme)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range r.alerts {
		if !strings.Contains(string(readme), a) {
			t.Errorf("alert %s is not explained in %s", a, deployReadme)
		}
	}
}

func TestDeployDashboard(t *testing.T) {
	exported := deployExportedNames(t)
	r := deployCheckRules(deployReadRules(t), exported)
	data, err := os.ReadFile(deployDashboard)
	if err != nil {
		t.Fatal(err)
	}
	d := deployCheckDashboard(data, exported, r.recorded)
	deployReport(t, d.problems)
	if len(d.exprs) < 20 {
		t.Errorf("only %d queries found in the dashboard", len(d.exprs))
	}
}

// TestDeployCoverage: every metric llmgate exports is on the dashboard or in the
// rules, so a new metric gets a panel or an alert.
func TestDeployCoverage(t *testing.T) {
	exported := deployExportedNames(t)
	r := deployCheckRules(deployReadRules(t), exported)
	data, err := os.ReadFile(deployDashboard)
	if err != nil {
		t.Fatal(err)
	}
	used := r.used
	for _, e := range deployCheckDashboard(data, exported, r.recorded).exprs {
		refs, _ := deployMetricRefs(e)
		for _, ref := range refs {
			used[ref] = true
		}
	}
	families := map[string]bool{}
	for n := range exported {
		families[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] = true
	}
	var missing []string
	for f := range families {
		if !exported[f] {
			continue // a suffix trimmed off a name that is not a family
		}
		if !used[f] && !used[f+"_bucket"] && !used[f+"_sum"] && !used[f+"_count"] {
			missing = append(missing, f)
		}
	}
	sort.Strings(missing)
	for _, f := range missing {
		t.Errorf("%s is exported but on no panel of %s and in no rule of %s", f, deployDashboard, deployRulesGlob)
	}
}

// TestDeployChecksCatchMistakes feeds the checks broken rules and a broken
// dashboard, so that they cannot pass by checking nothing.
func TestDeployChecksCatchMistakes(t *testing.T) {
	exported := deployExportedNames(t)
	rules := `
groups:
  - name: g
    rules:
      - record: backend:llmgate_ok:rate5m
        expr: sum by (backend) (rate(llmgate_requests_total[5m]))
      - record: backend:llmgate_early:rate5m
        expr: backend:llmgate_late:rate5m
      - record: backend:llmgate_late:rate5m
        expr: llmgate_backend_stale
      - record: not_a_convention
        expr: llmgate_backend_stale
      - alert: LLMGateUnknownMetric
        expr: rate(llmgate_not_a_metric_total{reason="x"}[5m]) > 0 and backend:llmgate_ok:rate5m > 1
        for: 5m
        labels: {severity: warning}
        annotations: {summary: s, description: d}
      - alert: LLMGateUnknownRecording
        expr: backend:llmgate_nope:rate5m > 1
        for: 5m
        labels: {severity: warning}
        annotations: {summary: s, description: "see llmgate_nor_this"}
      - alert: LLMGateSloppy
        expr: (sum(llmgate_backend_stale) > 0
        labels: {team: x}
`
	typo := `
groups:
  - name: h
    rules:
      - alert: LLMGateTypo
        expr: llmgate_backend_stale == 1
        for: 5m
        label: {severity: warning}
`
	r := deployCheckRules(map[string][]byte{"fake.yml": []byte(rules), "typo.yml": []byte(typo)}, exported)
	wantRuleProblems := []string{
		"uses llmgate_not_a_metric_total, which",
		"uses backend:llmgate_nope:rate5m, which",
		"uses llmgate_nor_this, which", // in an annotation
		"uses backend:llmgate_late:rate5m before the rule that records it",
		"recorded name does not match",
		`unclosed "("`,
		`for: "" is not a positive duration`,
		`labels.severity "" is not`,
		"no annotations.summary",
		"field label not found", // strict YAML: the typo is caught, not ignored
	}
	deployExpectProblems(t, "rules", r.problems, wantRuleProblems)
	if r.recorded["backend:llmgate_ok:rate5m"] != true {
		t.Error("a recorded name was not learned")
	}
	// A valid file checks clean, so the list above is not just noise.
	clean := deployCheckRules(map[string][]byte{"clean.yml": []byte(`
groups:
  - name: g
    rules:
      - record: backend:llmgate_ok:rate5m
        expr: sum by (backend) (rate(llmgate_requests_total{outcome="ok"}[5m]))
      - alert: LLMGateFine
        expr: backend:llmgate_ok:rate5m > 1 # llmgate_in_a_comment
        for: 5m
        labels: {severity: info}
        annotations: {summary: "{{ $labels.backend }}", description: "llmgate_backend_stale is 1"}
`)}, exported)
	deployReport(t, clean.problems)

	dash := `{
  "title": "t", "uid": "u", "schemaVersion": 39,
  "templating": {"list": [
    {"type": "datasource", "name": "datasource", "query": "prometheus"},
    {"type": "query", "name": "backend", "definition": "label_values(llmgate_backend_rotation, backend)"},
    {"type": "query", "name": "model", "query": {"query": "label_values(llmgate_no_such, model)"}}
  ]},
  "panels": [
    {"type": "row", "id": 1, "title": "r", "gridPos": {}, "panels": [
      {"type": "timeseries", "id": 2, "title": "nested", "gridPos": {},
       "targets": [{"refId": "A", "expr": "rate(llmgate_ghost_total[5m])", "datasource": {"uid": "${datasource}"}}]}
    ]},
    {"type": "timeseries", "id": 2, "title": "dup id", "gridPos": {},
     "targets": [{"refId": "A", "expr": "fleet:llmgate_unrecorded:count", "datasource": {"uid": "${datasource}"}}]},
    {"type": "timeseries", "id": 3, "title": "no targets", "gridPos": {}},
    {"type": "stat", "id": 4, "title": "empty expr", "gridPos": {},
     "targets": [{"refId": "A", "expr": " ", "datasource": {"uid": "${datasource}"}},
                 {"refId": "A", "expr": "llmgate_backend_stale", "datasource": {"uid": "prom"}}]}
  ]
}`
	d := deployCheckDashboard([]byte(dash), exported, r.recorded)
	deployExpectProblems(t, "dashboard", d.problems, []string{
		"uses llmgate_no_such, which",
		"uses llmgate_ghost_total, which", // inside a row
		"uses fleet:llmgate_unrecorded:count, which",
		"panel 2 (dup id): id missing or repeated",
		"panel 3 (no targets): no targets",
		"target A has no expr",
		`target refId "A" empty or repeated`,
		`datasource uid "prom"`,
	})
	if d := deployCheckDashboard([]byte(`{"panels": [`), exported, nil); len(d.problems) == 0 {
		t.Error("a dashboard that is not JSON passed")
	}
}

func deployExpectProblems(t *testing.T, what string, got, want []string) {
	t.Helper()
	for _, w := range want {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, w) }) {
			t.Errorf("%s: no problem reported containing %q; got:\n%s", what, w, strings.Join(got, "\n"))
		}
	}
}

func TestDeployMetricRefs(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`histogram_quantile(0.99, sum by (backend, le) (rate(llmgate_ttft_seconds_bucket{model=~"$model"}[$__rate_interval])))`,
			[]string{"llmgate_ttft_seconds_bucket"}},
		{`backend:llmgate_x:p99_5m / (backend:llmgate_x:p99_5m offset 7d > 0) > 1.5`,
			[]string{"backend:llmgate_x:p99_5m", "backend:llmgate_x:p99_5m"}},
		{`max_over_time(llmgate_a[1h:5m]) + 1e3 - 0.5 # llmgate_comment`, []string{"llmgate_a"}},
		{`llmgate_a{reason="llmgate_b", x='llmgate_c\'', y=` + "`llmgate_d`" + `}`, []string{"llmgate_a"}},
		{`sum(rate(vllm:num_preemptions_total[5m]))`, nil},
	} {
		got, err := deployMetricRefs(tc.expr)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("deployMetricRefs(%s) = %q, %v; want %q", tc.expr, got, err, tc.want)
		}
	}
	for _, bad := range []string{`sum(llmgate_a`, `llmgate_a{x="y"]`, `llmgate_a{x="y}`} {
		if _, err := deployMetricRefs(bad); err == nil {
			t.Errorf("deployMetricRefs(%s): no error", bad)
		}
	}
}

// TestDeployPromtool lets Prometheus' own parser judge the rules and every
// dashboard query, when promtool is at hand ($PROMTOOL, else PATH). Dashboard
// queries go through `promtool check rules` as recording rules, with Grafana's
// variables replaced by values PromQL accepts.
func TestDeployPromtool(t *testing.T) {
	promtool := os.Getenv("PROMTOOL")
	if promtool == "" {
		var err error
		if promtool, err = exec.LookPath("promtool"); err != nil {
			t.Skip("no promtool ($PROMTOOL or PATH); the other TestDeploy checks stand in")
		}
	}
	paths, _ := filepath.Glob(deployRulesGlob)
	out, err := exec.Command(promtool, append([]string{"check", "rules"}, paths...)...).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}

	exported := deployExportedNames(t)
	data, err := os.ReadFile(deployDashboard)
	if err != nil {
		t.Fatal(err)
	}
	d := deployCheckDashboard(data, exported, deployCheckRules(deployReadRules(t), exported).recorded)
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
		"${backend}", ".*", "$backend", ".*", "${model}", ".*", "$model", ".*")
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range d.exprs {
		if strings.HasPrefix(e, "label_values(") {
			continue // Grafana's, not PromQL
		}
		fmt.Fprintf(&b, "      - record: dashboard:llmgate_query:%d\n        expr: %s\n", i, strconv.Quote(vars.Replace(e)))
	}
	f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("dashboard queries: promtool check rules: %v\n%s", err, out)
	}
}
