package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// swappingLog answers POST /v1/events?wait=witnessed with a receipt whose
// leaf holds the event the log chose (leafEvent), under the request's key:
// a log, or a bug, that answers for someone else's event.
func swappingLog(t *testing.T, leafEvent string, keySuffix string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaf := checkpoint.AppendLeaf(nil, checkpoint.Leaf{
			Received: time.Now(), Source: "svc", Event: []byte(leafEvent),
			IdempotencyKey: r.Header.Get("Idempotency-Key") + keySuffix,
		})
		proof := "c2sp.org/tlog-proof@v1\nindex 0\n\nexample.com/log\n1\n" + strings.Repeat("A", 43) + "=\n\n— example.com/log AAAAAA==\n"
		rc := checkpoint.Receipt{Index: 0, Leaf: leaf, Proof: proof}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"index": 0, "duplicate": true, "receipt": rc})
	}))
}

// Hole 2 of issue 9: a client that waits for a receipt must check that the
// receipt's leaf holds the event it sent, not just any event at its index.
func TestSubmitRefusesAReceiptForAnotherEvent(t *testing.T) {
	hs := swappingLog(t, `{"action":"login","id":1}`, "")
	defer hs.Close()
	c, _ := New(hs.URL, nil)
	_, err := c.Submit(context.Background(), json.RawMessage(`{"id":"1","action":"login"}`), Wait())
	if !errors.Is(err, ErrNotOurEvent) {
		t.Fatalf("receipt for {\"id\":1} accepted for {\"id\":\"1\"}: err = %v", err)
	}
	// The same event, formatted differently, is ours.
	if _, err := c.Submit(context.Background(), json.RawMessage(` {"id":1, "action":"login"} `), Wait()); err != nil {
		t.Fatalf("receipt for the event sent refused: %v", err)
	}
}

func TestSubmitRefusesAReceiptUnderAnotherKey(t *testing.T) {
	hs := swappingLog(t, `{"a":1}`, "-other")
	defer hs.Close()
	c, _ := New(hs.URL, nil)
	if _, err := c.Submit(context.Background(), json.RawMessage(`{"a":1}`), Wait()); !errors.Is(err, ErrNotOurEvent) {
		t.Fatalf("receipt under another idempotency key accepted: %v", err)
	}
}

// A refused request carries no results: nothing was logged.
func TestRefusedSubmitHasNoResults(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		w.Write([]byte(`{"error":"too large"}`))
	}))
	defer hs.Close()
	c, _ := New(hs.URL, nil)
	_, err := c.Submit(context.Background(), json.RawMessage(`{"a":1}`), Wait())
	var ce *Error
	if !errors.As(err, &ce) || ce.Status != 413 || len(ce.Results) != 0 {
		t.Fatalf("413: err = %#v, want an *Error of status 413 without results", err)
	}
}
