package diag

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// parseAgentDiag reads the llmgate agent's /diag JSON, keeping at most maxGPUs
// GPUs (DefaultMaxGPUs when maxGPUs < 1) and counting the rest as dropped.
// The document is walked token by token so that GPUs past the cap are skipped
// unbuilt: a 4 MiB answer listing 75,000 GPUs costs what 64 do. Keys match
// case-insensitively, as decoding into a struct would.
func parseAgentDiag(r io.Reader, maxGPUs int) (gpus []GPU, host *Host, dropped int, err error) {
	if maxGPUs < 1 {
		maxGPUs = DefaultMaxGPUs
	}
	fail := func(err error) ([]GPU, *Host, int, error) {
		return nil, nil, 0, fmt.Errorf("agent /diag: %w", err)
	}
	dec := json.NewDecoder(r)
	tok, err := dec.Token()
	if err != nil {
		return fail(err)
	}
	if tok == nil {
		return nil, nil, 0, nil // null reads as an empty document
	}
	if tok != json.Delim('{') {
		return fail(errors.New("want a JSON object"))
	}
	var errs map[string]string
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		key, _ := kt.(string)
		switch {
		case strings.EqualFold(key, "gpus"):
			gpus, dropped, err = decodeGPUs(dec, maxGPUs)
		case strings.EqualFold(key, "host"):
			host = nil
			err = dec.Decode(&host)
		case strings.EqualFold(key, "errors"):
			err = dec.Decode(&errs)
		default:
			err = skipJSON(dec)
		}
		if err != nil {
			return fail(err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return fail(err)
	}
	if msg := errs["nvidia_smi"]; msg != "" {
		err = errors.New("agent nvidia-smi: " + msg)
	}
	return gpus, host, dropped, err
}

// decodeGPUs reads the gpus array, building the first max elements.
func decodeGPUs(dec *json.Decoder, max int) (gpus []GPU, dropped int, err error) {
	tok, err := dec.Token()
	if err != nil || tok == nil {
		return nil, 0, err
	}
	if tok != json.Delim('[') {
		return nil, 0, errors.New("gpus: want an array")
	}
	for dec.More() {
		if len(gpus) == max {
			if err := skipJSON(dec); err != nil {
				return nil, 0, err
			}
			dropped++
			continue
		}
		var g GPU
		if err := dec.Decode(&g); err != nil {
			return nil, 0, err
		}
		gpus = append(gpus, g)
	}
	_, err = dec.Token() // ']'
	return gpus, dropped, err
}

// skipJSON reads past one value without building it.
func skipJSON(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}
