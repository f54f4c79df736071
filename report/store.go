package report

import "time"

// StoreStatus is the shared limit store as one gateway sees it (llm_health's
// limit_store; absent without a store).
type StoreStatus struct {
	Store string `json:"store"` // e.g. redis 10.0.0.5:6379 db 0 prefix "llmgate:"
	// Up is false while the store's circuit is open: limits then follow
	// OnStoreError (local at limit/Replicas, allow or deny) and manual
	// drains stay on this gateway.
	Up           bool      `json:"up"`
	Since        time.Time `json:"since,omitzero"`
	LastError    string    `json:"last_error,omitempty"`
	Outages      int64     `json:"outages"`
	OnStoreError string    `json:"on_store_error"`
	Replicas     int       `json:"replicas"`
}
