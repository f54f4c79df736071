package diag

import (
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]string{
		`{"version":"0.11.0"}`:        "0.11.0",
		`{"version":" 0.6.3.post1 "}`: "0.6.3.post1",
		`{"version":""}`:              "",
		`{"detail":"Not Found"}`:      "",
		`not json`:                    "",
		`{"version":"` + strings.Repeat("9", 100) + `"}`: strings.Repeat("9", 64),
	} {
		got, err := ParseVersion(strings.NewReader(in))
		if got != want || (err != nil) != (want == "") {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
}
