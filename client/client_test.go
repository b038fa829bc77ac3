package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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

// TestRefusalIsNotRetriedAndCarriesNoResults: a 4xx other than 429 is
// answered at once (the same request would be refused again), and the
// *Error of a refusal holds no Results, whatever its body says: only a 504
// after Wait means the events were logged.
func TestRefusalIsNotRetriedAndCarriesNoResults(t *testing.T) {
	for _, status := range []int{400, 401, 403, 404, 405, 409, 413, 415, 422} {
		var attempts atomic.Int32
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			attempts.Add(1)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			// A body with an index, as a confused proxy might send: a
			// refusal must not turn it into a result.
			w.Write([]byte(`{"error":"refused","index":3,"results":[{"index":3}]}`))
		}))
		c, _ := New(hs.URL, &Options{MinBackoff: time.Millisecond})
		for _, batch := range []bool{false, true} {
			attempts.Store(0)
			var err error
			if batch {
				_, err = c.SubmitBatch(context.Background(), []any{map[string]int{"a": 1}, map[string]int{"b": 2}}, Wait())
			} else {
				_, err = c.Submit(context.Background(), []byte(`{}`), Wait())
			}
			var e *Error
			if !errors.As(err, &e) || e.Status != status {
				t.Errorf("%d (batch %t): %v, want an *Error with that status", status, batch, err)
				continue
			}
			if n := attempts.Load(); n != 1 {
				t.Errorf("%d (batch %t): %d attempts, want 1", status, batch, n)
			}
			if len(e.Results) != 0 {
				t.Errorf("%d (batch %t): the refusal carries results %+v", status, batch, e.Results)
			}
		}
		hs.Close()
	}
}

// TestNotWitnessedCarriesTheIndexes: a 504 after Wait is logged, not
// refused: its *Error holds the indexes, for one event and for a batch.
func TestNotWitnessedCarriesTheIndexes(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusGatewayTimeout)
		if r.Header.Get("Content-Type") == "application/x-ndjson" {
			w.Write([]byte(`{"error":"logged, not witnessed","results":[{"index":0},{"index":1}]}`))
		} else {
			w.Write([]byte(`{"error":"logged, not witnessed","index":0}`))
		}
	}))
	defer hs.Close()
	c, _ := New(hs.URL, nil)
	_, err := c.Submit(context.Background(), []byte(`{}`), Wait())
	var e *Error
	if !errors.As(err, &e) || e.Status != 504 || len(e.Results) != 1 || e.Results[0].Index != 0 {
		t.Errorf("Submit: %v (%+v), want a 504 with index 0", err, e)
	}
	_, err = c.SubmitBatch(context.Background(), []any{1, 2}, Wait())
	if !errors.As(err, &e) || e.Status != 504 || len(e.Results) != 2 || e.Results[1].Index != 1 {
		t.Errorf("SubmitBatch: %v (%+v), want a 504 with indexes 0 and 1", err, e)
	}
}

// TestAnswerWithoutAnIndexIsAnError: a 200 that holds no index (not a
// Tidemark log) is an error, not index 0.
func TestAnswerWithoutAnIndexIsAnError(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	defer hs.Close()
	c, _ := New(hs.URL, nil)
	if r, err := c.Submit(context.Background(), []byte(`{}`)); err == nil {
		t.Errorf("Submit = %+v, want an error", r)
	}
}

// Reads carry the read token when there is one; writes carry the writer's
// token, or nothing.
func TestReadTokenOnReadsOnly(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Method] = r.Header.Get("Authorization")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			w.Write([]byte(`{"index":0}`))
			return
		}
		w.Write([]byte(`{"results":[],"complete_to":0}`))
	}))
	defer hs.Close()
	for _, tc := range []struct{ token, read, wantPost, wantGet string }{
		{"", "r", "", "Bearer r"},
		{"w", "r", "Bearer w", "Bearer r"},
		{"w", "", "Bearer w", "Bearer w"},
	} {
		c, _ := New(hs.URL, &Options{Token: tc.token, ReadToken: tc.read})
		if _, err := c.Submit(context.Background(), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Search(context.Background(), SearchQuery{}); err != nil {
			t.Fatal(err)
		}
		if got["POST"] != tc.wantPost || got["GET"] != tc.wantGet {
			t.Errorf("Token %q, ReadToken %q: POST sent %q, GET %q; want %q and %q", tc.token, tc.read, got["POST"], got["GET"], tc.wantPost, tc.wantGet)
		}
	}
}
