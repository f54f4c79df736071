package diag

import (
	"encoding/json"
	"errors"
	"time"
)

// Duration is a time.Duration that JSON carries as a string ("30s", "5m") or as
// integer nanoseconds, the way Caddy configs write durations.
type Duration time.Duration

// MarshalJSON writes the duration as a string, e.g. "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts "30s"-style strings and integer nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return errors.New("duration must be a string like \"30s\" or integer nanoseconds")
	}
	*d = Duration(n)
	return nil
}
