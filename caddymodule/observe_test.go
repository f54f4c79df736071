package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// flushCounter is a response writer that counts flushes.
type flushCounter struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++; f.ResponseRecorder.Flush() }

const observedEvent = `data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}` + "\n\n"

// The observer reads a streamed event only after the flush that sends it, so
// parsing never sits between the backend's bytes and the client.
func TestObservingWriterReadsAfterFlush(t *testing.T) {
	rec := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	start := time.Now()
	ow := newObservingWriter(rec, r, &call{start: start}, time.Second)
	defer ow.release(true)
	ow.Header().Set("Content-Type", "text/event-stream")
	ow.WriteHeader(http.StatusOK)

	buf := []byte(observedEvent)
	ow.Write(buf)
	copy(buf, strings.Repeat("#", len(buf))) // the caller reuses its buffer
	if got := ow.obs.Finish(time.Now()).ContentEvents; got != 0 {
		t.Fatalf("observer saw %d content events before the flush", got)
	}
	if err := ow.FlushError(); err != nil {
		t.Fatal(err)
	}
	res := ow.obs.Finish(time.Now())
	if res.ContentEvents != 1 || rec.flushes != 1 {
		t.Fatalf("after the flush: %d content events, %d flushes; want 1 and 1", res.ContentEvents, rec.flushes)
	}
	if res.TTFT <= 0 {
		t.Fatalf("TTFT %v", res.TTFT)
	}
}

// A response that is never flushed is read in bounded pieces as it grows.
func TestObservingWriterBoundsUnflushed(t *testing.T) {
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
	ow := newObservingWriter(rec, r, &call{start: time.Now()}, time.Second)
	defer ow.release(true)
	ow.Header().Set("Content-Type", "application/json")
	chunk := []byte(strings.Repeat(" ", 4096))
	for range 64 {
		ow.Write(chunk)
		if len(ow.unseen) > unseenMax+len(chunk) {
			t.Fatalf("%d bytes held unseen", len(ow.unseen))
		}
	}
	ow.observe(time.Now())
	if got := ow.obs.Finish(time.Now()).Bytes; got != 64*4096 {
		t.Fatalf("observer counted %d bytes, want %d", got, 64*4096)
	}
}
