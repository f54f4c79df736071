package diag

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// maxVersionBytes bounds a GET /version answer: vLLM's is {"version":"0.11.0"}.
const maxVersionBytes = 4 << 10

// ParseVersion reads vLLM's GET /version answer, {"version": "0.11.0"}, into
// the version string (at most 64 bytes of it).
func ParseVersion(r io.Reader) (string, error) {
	var v struct {
		Version string `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(r, maxVersionBytes)).Decode(&v); err != nil {
		return "", err
	}
	v.Version = strings.TrimSpace(v.Version)
	if v.Version == "" {
		return "", errors.New("no version")
	}
	if len(v.Version) > 64 {
		v.Version = v.Version[:64]
	}
	return v.Version, nil
}
