package log

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// Attack (retention, clock skew): leaves are appended in index order, not
// in order of "received". A log that ran with its clock two hours fast
// (or a MySQL frontend whose clock is ahead) leaves a leaf stamped in the
// future; after the clock is corrected, later leaves carry earlier stamps.
// Retention stops at the first young leaf and then takes every payload
// row older than the cutoff by orphanMargin for an orphan: the row of a
// logged event past that leaf is deleted with no erasure leaf naming it,
// which an auditor can only call tampering.
func TestReview2RetentionNeverDeletesALoggedEventsRowAsAnOrphan(t *testing.T) {
	tl := newCommitmentLog(t, func(c *Config) { c.Retention = time.Hour })
	w := bearerHeader(tl.writer)
	now := time.Now()
	// Index 0: stamped by a clock two hours fast.
	tl.s.stamps.mu.Lock()
	tl.s.stamps.last = now.Add(2 * time.Hour)
	tl.s.stamps.mu.Unlock()
	tl.postEvent(`{"actor":"alice","n":0}`, w...)
	// Index 1: the clock corrected (a restart forgets the last stamp).
	tl.s.stamps.mu.Lock()
	tl.s.stamps.last = time.Time{}
	tl.s.stamps.mu.Unlock()
	tl.postEvent(`{"actor":"bob","n":1}`, w...)
	tl.waitReceipt(1)
	ctx := context.Background()
	// Cutoff: now+1.5h. Index 0 is young (now+2h), index 1 is old
	// (now) and older than cutoff-orphanMargin, but logged.
	if _, err := tl.s.retentionRound(ctx, now.Add(150*time.Minute)); err != nil {
		t.Fatal(err)
	}
	lines := tl.payloadLines(0, tl.size(), w...)
	for _, l := range lines {
		if l.Erased {
			t.Errorf("entry %d lost its payload, and the log holds %d entries: no erasure leaf names it", l.Index, tl.size())
		}
	}
	if n := tl.payloadRows(); n != 2 {
		t.Fatalf("%d payload rows after retention, want both logged events' (nothing was erased by a leaf)", n)
	}
	// Once both are old, retention erases both, with a logged erasure.
	if _, err := tl.s.retentionRound(ctx, now.Add(4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := tl.payloadRows(); n != 0 {
		t.Fatalf("%d payload rows after both are past the period", n)
	}
}

// Attack (memory, a reader, or anyone when the log has no --read-tokens):
// GET /v1/payloads of 1,024 entries read every opening of the range from
// the store at once, up to 1,024 event leaves of 64 KiB (64 MiB) held per
// request, with nothing bounding the requests: a few dozen at once
// exhaust the server's memory. Search bounds its answers to 4 MiB; the
// payloads stream must hold a bounded number of openings at a time.
func TestReview2PayloadsHoldsABoundedNumberOfOpenings(t *testing.T) {
	tl := newCommitmentLog(t, nil)
	w := bearerHeader(tl.writer)
	var batch bytes.Buffer
	for i := range 300 {
		fmt.Fprintf(&batch, "{\"actor\":\"alice\",\"n\":%d}\n", i)
	}
	if r := tl.post("/v1/events", "application/x-ndjson", batch.Bytes(), w...); r.status != 200 {
		t.Fatalf("POST /v1/events: %d %s", r.status, r.body)
	}
	tl.waitReceipt(299)
	tl.waitIndexed() // the indexer reads the store too, a bundle at a time
	var most atomic.Int64
	onGet := func(keys int) {
		for m := most.Load(); int64(keys) > m && !most.CompareAndSwap(m, int64(keys)); m = most.Load() {
		}
	}
	tl.s.payloads.onGet.Store(&onGet)
	lines := tl.payloadLines(0, 300)
	tl.s.payloads.onGet.Store(nil)
	if len(lines) != 300 {
		t.Fatalf("%d lines, want 300", len(lines))
	}
	for i, l := range lines {
		if l.Index != uint64(i) || l.Opening == nil {
			t.Fatalf("line %d: %+v", i, l)
		}
	}
	if most := most.Load(); most > payloadsChunk {
		t.Fatalf("one read of the payload store for GET /v1/payloads took %d openings at once, want at most %d", most, payloadsChunk)
	}
}

// Attack (a writer retrying after an erasure): an event sent again under
// its idempotency key after its entry was erased is a duplicate of the
// erased entry. With wait=witnessed the log built the receipt of the
// commitment leaf, found no opening to check the event against and
// answered 500, an internal error, to every retry, for ever.
func TestReview2DuplicateOfAnErasedEntryIsNotAnInternalError(t *testing.T) {
	tl := newCommitmentLog(t, nil)
	w := append(bearerHeader(tl.writer), "Idempotency-Key", "retry-after-erase")
	const ev = `{"actor":"alice","action":"login"}`
	if r := tl.post("/v1/events", "application/json", []byte(ev), w...); r.status != 200 {
		t.Fatalf("POST /v1/events: %d %s", r.status, r.body)
	}
	tl.waitReceipt(0)
	if r := tl.erase(`{"index":0,"reason":"GDPR request 7"}`, tl.admin); r.status != 200 {
		t.Fatalf("erase: %d %s", r.status, r.body)
	}
	tl.waitReceipt(1)
	r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(ev), w...)
	if r.status != 200 {
		t.Fatalf("the retry of an erased event, wait=witnessed: %d %s", r.status, r.body)
	}
	var res witnessedResult
	if err := json.Unmarshal(r.body, &res); err != nil {
		t.Fatal(err)
	}
	if res.Index != 0 || !res.Duplicate || res.Salt != nil || res.Receipt == nil || res.Receipt.Opening != nil {
		t.Fatalf("the retry of an erased event: %s, want a duplicate of 0 with the commitment's receipt and no salt or opening", r.body)
	}
	if _, _, err := res.Receipt.Verify(tl.policy()); err != nil {
		t.Fatalf("its receipt: %v", err)
	}
}

// Attack (retention's boundary): an event received exactly DURATION
// before the round is not "older than DURATION" and is kept; a
// nanosecond later it is erased. (Holds: a guard.)
func TestReview2RetentionCutoffIsExclusive(t *testing.T) {
	tl := newCommitmentLog(t, func(c *Config) { c.Retention = time.Hour })
	base := time.Now().Add(time.Hour).UTC().Round(0)
	tl.s.stamps.mu.Lock()
	tl.s.stamps.last = base
	tl.s.stamps.mu.Unlock()
	tl.postEvent(`{"actor":"alice"}`, bearerHeader(tl.writer)...)
	received := base.Add(time.Nanosecond)
	tl.waitReceipt(0)
	ctx := context.Background()
	if _, err := tl.s.retentionRound(ctx, received.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if tl.size() != 1 || tl.payloadRows() != 1 {
		t.Fatalf("an event exactly at the cutoff: size %d, payloads %d, want it kept", tl.size(), tl.payloadRows())
	}
	if _, err := tl.s.retentionRound(ctx, received.Add(time.Hour+time.Nanosecond)); err != nil {
		t.Fatal(err)
	}
	if tl.size() != 2 || tl.payloadRows() != 0 {
		t.Fatalf("an event a nanosecond past the cutoff: size %d, payloads %d, want it erased", tl.size(), tl.payloadRows())
	}
}
