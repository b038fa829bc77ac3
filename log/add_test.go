package log

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

// TestAddRefusesAnEmptyBody: POST /add with no bytes (plain, or gzip of
// nothing) is a 400 that says why, and appends nothing: the next entry is
// index 0.
func TestAddRefusesAnEmptyBody(t *testing.T) {
	tl := newTestLog(t, nil)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Close()
	for name, r := range map[string]response{
		"empty":         tl.post("/add", "", nil),
		"gzip, nothing": tl.post("/add", "", gz.Bytes(), "Content-Encoding", "gzip"),
	} {
		if r.status != 400 || !strings.Contains(string(r.body), "the body is empty") {
			t.Errorf("/add, %s: %d %s, want 400 saying the body is empty", name, r.status, r.body)
		}
	}
	if r := tl.post("/add", "", []byte("x")); r.status != 200 || string(r.body) != "0" {
		t.Errorf("/add after the empty ones: %d %q, want index 0 (nothing appended before)", r.status, r.body)
	}
}
