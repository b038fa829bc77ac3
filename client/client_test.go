package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeLog answers POST /v1/events with the scripted statuses in turn, then
// 200, and records each request's Idempotency-Key.
type fakeLog struct {
	mu      sync.Mutex
	script  []int
	keys    []string
	answers int
}

func (f *fakeLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, r.Header.Get("Idempotency-Key"))
	if len(f.script) > 0 {
		status := f.script[0]
		f.script = f.script[1:]
		switch status {
		case -1: // drop the connection: a transport error
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		case 429, 503:
			w.Header().Set("Retry-After", "0")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(`{"error":"try again"}`))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"index":7}`))
}

func TestSubmitRetriesWithOneKey(t *testing.T) {
	f := &fakeLog{script: []int{503, -1, 429}}
	hs := httptest.NewServer(f)
	defer hs.Close()
	c, err := New(hs.URL, &Options{MinBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Submit(context.Background(), map[string]string{"a": "b"})
	if err != nil || res.Index != 7 {
		t.Fatalf("Submit = %+v, %v", res, err)
	}
	if len(f.keys) != 4 || f.keys[0] == "" || f.keys[1] != f.keys[0] || f.keys[2] != f.keys[0] || f.keys[3] != f.keys[0] {
		t.Fatalf("Idempotency-Keys over the attempts: %q, want one key, four times", f.keys)
	}
	// A new call is a new event: a new key.
	if _, err := c.Submit(context.Background(), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if f.keys[4] == f.keys[0] {
		t.Fatalf("two Submits shared key %q", f.keys[0])
	}
}

func TestSubmitGivesUp(t *testing.T) {
	f := &fakeLog{script: []int{503, 503, 503}}
	hs := httptest.NewServer(f)
	defer hs.Close()
	c, _ := New(hs.URL, &Options{MinBackoff: time.Millisecond, MaxAttempts: 3})
	_, err := c.Submit(context.Background(), []byte(`{}`), IdempotencyKey("k1"))
	var e *Error
	if !errors.As(err, &e) || e.Status != 503 || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("Submit = %v, want the 503 after 3 attempts", err)
	}
	if f.keys[0] != "k1" {
		t.Fatalf("key %q, want k1", f.keys[0])
	}
	// A 400 is not retried.
	f = &fakeLog{script: []int{400}}
	hs2 := httptest.NewServer(f)
	defer hs2.Close()
	c, _ = New(hs2.URL, &Options{MinBackoff: time.Millisecond})
	if _, err := c.Submit(context.Background(), []byte(`{}`)); !errors.As(err, &e) || e.Status != 400 || len(f.keys) != 1 {
		t.Fatalf("400: %v after %d attempts", err, len(f.keys))
	}
}

func TestNewRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://x", "http://"} {
		if _, err := New(u, nil); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}
