package diag

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ModelCard is one entry of a server's /v1/models: a served model or, with Parent
// set, a LoRA adapter on it.
type ModelCard struct {
	ID     string `json:"id"`
	Parent string `json:"parent,omitempty"`
	// MaxModelLen is the context length; 0 when not given (adapters, old vLLM).
	MaxModelLen int `json:"max_model_len,omitempty"`
}

// maxModelsBytes bounds a /v1/models answer: a server with hundreds of adapters
// answers in tens of KiB.
const maxModelsBytes = 1 << 20

// ParseModels reads an OpenAI-style /v1/models answer. Adapters without a
// context length inherit their parent's.
func ParseModels(r io.Reader) ([]ModelCard, error) {
	var doc struct {
		Data []struct {
			ID          string  `json:"id"`
			Parent      *string `json:"parent"`
			MaxModelLen *int    `json:"max_model_len"`
		} `json:"data"`
	}
	lr := &io.LimitedReader{R: r, N: maxModelsBytes + 1}
	if err := json.NewDecoder(lr).Decode(&doc); err != nil {
		if lr.N <= 0 {
			return nil, errors.New("/v1/models: answer larger than 1 MiB")
		}
		return nil, fmt.Errorf("/v1/models: %w", err)
	}
	cards := make([]ModelCard, 0, len(doc.Data))
	maxLen := map[string]int{}
	for _, d := range doc.Data {
		if d.ID == "" {
			continue
		}
		c := ModelCard{ID: d.ID}
		if d.Parent != nil {
			c.Parent = *d.Parent
		}
		if d.MaxModelLen != nil && *d.MaxModelLen > 0 {
			c.MaxModelLen = *d.MaxModelLen
			maxLen[c.ID] = c.MaxModelLen
		}
		cards = append(cards, c)
	}
	for i := range cards {
		if cards[i].MaxModelLen == 0 && cards[i].Parent != "" {
			cards[i].MaxModelLen = maxLen[cards[i].Parent]
		}
	}
	if len(cards) == 0 {
		return nil, errors.New("/v1/models: no models listed")
	}
	return cards, nil
}
