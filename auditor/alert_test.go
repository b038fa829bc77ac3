package auditor

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestAlerterRetriesWithBackoff(t *testing.T) {
	var tries atomic.Int32
	got := make(chan Alert, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tries.Add(1) < 3 {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var a Alert
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("body: %v", err)
		}
		got <- a
	}))
	defer hook.Close()
	al := NewAlerter(AlerterConfig{URL: hook.URL, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond})
	al.Send(AlertFor(Finding{Kind: KindSplitView, Origin: "o", Message: "m", Evidence: "e.json"}))
	a := <-got
	if a.Kind != KindSplitView || a.Severity != "critical" || a.Origin != "o" || a.Evidence != "e.json" || tries.Load() != 3 {
		t.Fatalf("alert %+v after %d tries", a, tries.Load())
	}
	if dropped, failed := al.Close(context.Background()); dropped+failed != 0 {
		t.Fatalf("dropped %d failed %d", dropped, failed)
	}
}

func TestAlerterNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer hook.Close()
	al := NewAlerter(AlerterConfig{URL: hook.URL, QueueSize: 2, Attempts: 1})
	for range 100 {
		al.Send(Alert{Kind: KindRule}) // a stuck webhook must not hold this up
	}
	close(release)
	dropped, _ := al.Close(context.Background())
	if dropped < 97 {
		t.Fatalf("dropped %d of 100 with a queue of 2 and a stuck webhook", dropped)
	}
}
