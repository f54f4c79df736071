package redisstore

import (
	"context"
	"encoding/json"
	"time"
)

// Drain is an operator's manual drain or undrain of a backend, as the
// gateways sharing a store see it.
type Drain struct {
	Drained bool      `json:"drained"` // false: an undrain
	At      time.Time `json:"at"`
	By      string    `json:"by"` // the gateway that took it
	Reason  string    `json:"reason,omitempty"`
}

func (s *Store) drainsKey() string { return s.cfg.Prefix + "drains" }

// PutDrain records a manual drain or undrain of addr for every gateway.
func (s *Store) PutDrain(addr string, d Drain) error {
	v, _ := json.Marshal(d)
	return s.call("drain", func(ctx context.Context) error {
		return putDrainScript.Run(ctx, s.client, []string{s.drainsKey()}, addr, v, keepFor.Milliseconds()).Err()
	})
}

// Drains returns the latest manual drain or undrain of every backend that
// had one, by address.
func (s *Store) Drains() (map[string]Drain, error) {
	var kv []string
	err := s.call("drain", func(ctx context.Context) error {
		var err error
		kv, err = drainsScript.Run(ctx, s.client, []string{s.drainsKey()}, keepFor.Milliseconds()).StringSlice()
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]Drain, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		var d Drain
		if json.Unmarshal([]byte(kv[i+1]), &d) == nil {
			out[kv[i]] = d
		}
	}
	return out, nil
}
