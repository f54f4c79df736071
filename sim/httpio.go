package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxBodyBytes bounds what a client can make the sim buffer.
const maxBodyBytes = 16 << 20

// writeError renders vLLM's error JSON in the configured shape.
func (i *Instance) writeError(w http.ResponseWriter, status int, typ, msg string) {
	var body any
	if i.cfg.OldErrorShape {
		body = struct {
			Object  string  `json:"object"`
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    int     `json:"code"`
		}{"error", msg, typ, nil, status}
	} else {
		type info struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    int     `json:"code"`
		}
		body = struct {
			Error info `json:"error"`
		}{info{msg, typ, nil, status}}
	}
	writeJSON(w, status, body)
}

func (i *Instance) badRequest(w http.ResponseWriter, msg string) {
	i.writeError(w, http.StatusBadRequest, "BadRequestError", msg)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// readBody enforces vLLM's JSON content type and the body size bound.
func (i *Instance) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	if !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
		i.badRequest(w, "Unsupported Media Type: Only 'application/json' is allowed")
		return nil, false
	}
	return i.readAdminBody(w, r)
}

// readAdminBody reads a /sim/* body: any content type, so that a plain
// `curl -d` works, but the same size bound.
func (i *Instance) readAdminBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			i.writeError(w, http.StatusRequestEntityTooLarge, "BadRequestError",
				fmt.Sprintf("request body exceeds %d bytes", maxBodyBytes))
		} else {
			i.badRequest(w, "could not read request body: "+err.Error())
		}
		return nil, false
	}
	return body, true
}
