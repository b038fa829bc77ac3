package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestWitnessDeadline: POST /add-checkpoint runs inline with a context
// deadline; anything else goes through http.TimeoutHandler, which answers
// 503 at the deadline even if the handler ignores it.
func TestWitnessDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	h := witnessDeadline(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/add-checkpoint" {
			if _, ok := r.Context().Deadline(); !ok {
				t.Error("add-checkpoint has no deadline")
			}
			<-r.Context().Done()
			http.Error(rw, "try again", http.StatusServiceUnavailable)
			return
		}
		<-release // ignores its context
	}), 50*time.Millisecond)
	for _, tc := range []struct{ method, path string }{{"POST", "/add-checkpoint"}, {"GET", "/logs"}, {"GET", "/add-checkpoint"}} {
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d, want 503", tc.method, tc.path, rec.Code)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s %s: answered after %v", tc.method, tc.path, d)
		}
	}
}
