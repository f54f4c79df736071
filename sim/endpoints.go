package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// servesModel reports whether name is the base model or one of its adapters
// ("" means the base model, as vLLM allows an absent model).
func (i *Instance) servesModel(name string) bool {
	return name == "" || name == i.cfg.Model || slices.Contains(i.cfg.LoRAs, name)
}

func (i *Instance) notFoundModel(w http.ResponseWriter, name string) {
	i.writeError(w, http.StatusNotFound, "NotFoundError", fmt.Sprintf("The model `%s` does not exist.", name))
}

type modelPermission struct {
	ID                 string  `json:"id"`
	Object             string  `json:"object"`
	Created            int64   `json:"created"`
	AllowCreateEngine  bool    `json:"allow_create_engine"`
	AllowSampling      bool    `json:"allow_sampling"`
	AllowLogprobs      bool    `json:"allow_logprobs"`
	AllowSearchIndices bool    `json:"allow_search_indices"`
	AllowView          bool    `json:"allow_view"`
	AllowFineTuning    bool    `json:"allow_fine_tuning"`
	Organization       string  `json:"organization"`
	Group              *string `json:"group"`
	IsBlocking         bool    `json:"is_blocking"`
}

type modelCard struct {
	ID          string            `json:"id"`
	Object      string            `json:"object"`
	Created     int64             `json:"created"`
	OwnedBy     string            `json:"owned_by"`
	Root        string            `json:"root"`
	Parent      *string           `json:"parent"`
	MaxModelLen *int              `json:"max_model_len"`
	Permission  []modelPermission `json:"permission"`
}

func (i *Instance) handleModels(w http.ResponseWriter, r *http.Request) {
	now := time.Now().Unix()
	card := func(id, root string, parent *string, maxLen *int) modelCard {
		return modelCard{
			ID: id, Object: "model", Created: now, OwnedBy: "vllm", Root: root,
			Parent: parent, MaxModelLen: maxLen,
			Permission: []modelPermission{{
				ID: "modelperm-" + i.randomHex(8), Object: "model_permission", Created: now,
				AllowSampling: true, AllowLogprobs: true, AllowView: true, Organization: "*",
			}},
		}
	}
	maxLen := i.cfg.MaxModelLen
	data := []modelCard{card(i.cfg.Model, i.cfg.Model, nil, &maxLen)}
	base := i.cfg.Model
	for _, l := range i.cfg.LoRAs {
		data = append(data, card(l, "/adapters/"+l, &base, nil))
	}
	writeJSON(w, http.StatusOK, struct {
		Object string      `json:"object"`
		Data   []modelCard `json:"data"`
	}{"list", data})
}

func (i *Instance) handleVersion(w http.ResponseWriter, r *http.Request) {
	v := vllmVersionV1
	if i.cfg.V0Metrics {
		v = vllmVersionV0
	}
	writeJSON(w, http.StatusOK, map[string]string{"version": v})
}

func (i *Instance) handleTokenize(w http.ResponseWriter, r *http.Request) {
	body, ok := i.readBody(w, r)
	if !ok {
		return
	}
	var b struct {
		Model    *string         `json:"model"`
		Prompt   json.RawMessage `json:"prompt"`
		Messages *[]chatMessage  `json:"messages"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		i.badRequest(w, decodeError(err).Error())
		return
	}
	if b.Model != nil && !i.servesModel(*b.Model) {
		i.notFoundModel(w, *b.Model)
		return
	}
	var ids []int
	switch {
	case b.Messages != nil:
		msgs := *b.Messages
		for k := range msgs {
			t, err := contentText(msgs[k].Content)
			if err != nil {
				i.badRequest(w, fmt.Sprintf("messages[%d].content: %v", k, err))
				return
			}
			msgs[k].text = t
		}
		ids = chatTokenIDs(msgs)
	case len(b.Prompt) > 0:
		var s string
		if err := json.Unmarshal(b.Prompt, &s); err != nil {
			if err := json.Unmarshal(b.Prompt, &ids); err != nil {
				i.badRequest(w, "prompt must be a string or a list of token ids")
				return
			}
		} else {
			ids = appendTokenIDs([]int{}, s)
		}
	default:
		i.badRequest(w, missingField("prompt").Error())
		return
	}
	if ids == nil {
		ids = []int{}
	}
	writeJSON(w, http.StatusOK, struct {
		Count       int    `json:"count"`
		MaxModelLen int    `json:"max_model_len"`
		Tokens      []int  `json:"tokens"`
		TokenStrs   *[]int `json:"token_strs"`
	}{len(ids), i.cfg.MaxModelLen, ids, nil})
}
