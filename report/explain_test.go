package report

import (
	"strings"
	"testing"

	"github.com/llmgate/llmgate/diag"
)

// Every kind of reason the gateway gives has words for the page and for
// diagnose; an unknown one (a newer gateway) is quoted as it is.
func TestExplainEveryKind(t *testing.T) {
	for _, k := range diag.ReasonKinds() {
		e := Explain(string(k) + " gpu0")
		if e.Reason != string(k)+" gpu0" || e.What == "" || e.Check == "" || strings.Contains(e.What, "the gateway reports") {
			t.Errorf("reason kind %q: %+v", k, e)
		}
	}
	if e := Explain("brand_new 1x"); e.Reason != "brand_new 1x" || !strings.Contains(e.What, `"brand_new 1x"`) {
		t.Errorf("unknown kind: %+v", e)
	}
}
