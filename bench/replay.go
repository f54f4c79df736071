package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Prompt is one replayed request: a completion prompt or a list of chat
// messages, and optionally its own max_tokens.
type Prompt struct {
	Prompt    string          `json:"prompt,omitempty"`
	Messages  json.RawMessage `json:"messages,omitempty"`
	MaxTokens int             `json:"max_tokens,omitempty"`
}

// maxPromptLine bounds one JSONL line; a long-context chat log fits.
const maxPromptLine = 64 << 20

// LoadPrompts reads JSONL, one {"prompt": "..."} or {"messages": [...]}
// object per line, each with an optional "max_tokens". Blank lines are
// skipped; other fields are ignored, so request logs replay as they are.
func LoadPrompts(r io.Reader) ([]Prompt, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxPromptLine)
	var out []Prompt
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var p Prompt
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no prompts")
	}
	return out, nil
}

// LoadPromptFile is LoadPrompts on a file.
func LoadPromptFile(path string) ([]Prompt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ps, err := LoadPrompts(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ps, nil
}

func (p *Prompt) validate() error {
	hasMsgs := len(p.Messages) > 0 && string(p.Messages) != "null"
	switch {
	case p.Prompt == "" && !hasMsgs:
		return errors.New(`want "prompt" or "messages"`)
	case p.Prompt != "" && hasMsgs:
		return errors.New(`want "prompt" or "messages", not both`)
	case p.MaxTokens < 0:
		return errors.New("max_tokens must be >= 1")
	}
	if hasMsgs {
		var msgs []json.RawMessage
		if err := json.Unmarshal(p.Messages, &msgs); err != nil || len(msgs) == 0 {
			return errors.New(`"messages" must be a non-empty array`)
		}
	}
	return nil
}

// chatJSON is the value of "messages" for this prompt: its own messages, or
// its prompt as one user message.
func (p *Prompt) chatJSON() []byte {
	if p.Prompt == "" {
		return p.Messages
	}
	b, _ := json.Marshal([]map[string]string{{"role": "user", "content": p.Prompt}})
	return b
}

// completionJSON is the value of "prompt": its prompt, or the text of its
// messages one per line, since the completions API has no roles.
func (p *Prompt) completionJSON() []byte {
	text := p.Prompt
	if text == "" {
		var msgs []struct {
			Content json.RawMessage `json:"content"`
		}
		_ = json.Unmarshal(p.Messages, &msgs) // checked by validate
		var sb strings.Builder
		for k, m := range msgs {
			if k > 0 {
				sb.WriteByte('\n')
			}
			sb.WriteString(contentText(m.Content))
		}
		text = sb.String()
	}
	b, _ := json.Marshal(text)
	return b
}

// contentText keeps a message content's text: a string, or the text parts
// of a list of content parts.
func contentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var texts []string
	for _, p := range parts {
		if p.Type == "text" {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, " ")
}
