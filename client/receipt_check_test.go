package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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

// Submit sends one event, a JSON object. A JSON array under
// application/json is a batch to the log (issue 6): it logs every element
// and answers {"results":[...]}, which Submit then reported as an error ("the
// log answered 200 without an index"), so a caller that passed a slice by
// mistake saw a failure for events that were logged, and its retry (with a
// new Idempotency-Key) logged them again. Anything but an object must be
// refused before it is sent.
func TestSubmitOfAJSONArrayIsRefusedBeforeSending(t *testing.T) {
	var posts atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		posts.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"results":[{"index":0},{"index":1}]}`)) // what the log answers an array
	}))
	defer hs.Close()
	c, _ := New(hs.URL, nil)
	for _, ev := range []any{
		[]map[string]string{{"action": "a"}, {"action": "b"}},
		json.RawMessage(` [{"action":"a"},{"action":"b"}]`),
		[]byte(`"a string"`),
	} {
		if _, err := c.Submit(context.Background(), ev); err == nil {
			t.Errorf("Submit(%T %v) succeeded", ev, ev)
		}
	}
	if n := posts.Load(); n != 0 {
		t.Errorf("%d requests sent for events that are not JSON objects, want none: the log logs an array's elements", n)
	}
}

// committingLog is swappingLog for a log in commitment mode: its receipt's
// leaf is a commitment leaf, and the opening holds leafEvent under a salt
// (or, with badSalt, an opening that does not open the leaf).
func committingLog(t *testing.T, leafEvent string, badSalt bool) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		ev := checkpoint.AppendLeaf(nil, checkpoint.Leaf{Received: now, Source: "svc", Event: []byte(leafEvent),
			IdempotencyKey: r.Header.Get("Idempotency-Key")})
		salt, _ := checkpoint.NewSalt()
		leaf := checkpoint.AppendCommitmentLeaf(nil, checkpoint.CommitmentLeaf{Received: now, Source: "svc", Commitment: checkpoint.Commit(salt, ev)})
		if badSalt {
			salt[0] ^= 1
		}
		proof := "c2sp.org/tlog-proof@v1\nindex 0\n\nexample.com/log\n1\n" + strings.Repeat("A", 43) + "=\n\n— example.com/log AAAAAA==\n"
		rc := checkpoint.Receipt{Index: 0, Leaf: leaf, Proof: proof, Opening: &checkpoint.Opening{Salt: salt, Leaf: ev}}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"index": 0, "receipt": rc})
	}))
}

// In commitment mode the event is in the receipt's opening: the client
// checks that the opening opens the leaf and holds the event sent.
func TestSubmitChecksTheOpeningOfACommitmentLeaf(t *testing.T) {
	for name, tc := range map[string]struct {
		logged  string
		badSalt bool
		ok      bool
	}{
		"ours":          {`{"action":"login","id":1}`, false, true},
		"another event": {`{"action":"logout","id":1}`, false, false},
		"bad opening":   {`{"action":"login","id":1}`, true, false},
	} {
		hs := committingLog(t, tc.logged, tc.badSalt)
		c, _ := New(hs.URL, nil)
		_, err := c.Submit(context.Background(), json.RawMessage(`{"id":1,"action":"login"}`), Wait())
		hs.Close()
		if tc.ok && err != nil {
			t.Errorf("%s: refused: %v", name, err)
		}
		if !tc.ok && !errors.Is(err, ErrNotOurEvent) {
			t.Errorf("%s: err = %v, want ErrNotOurEvent", name, err)
		}
	}
}
