package log

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera"
)

// Senders that reuse one id for different events, all at once, then a crash
// before any claim is completed: after recovery every event is answered
// with the index it was answered before, whose leaf holds it, and nothing
// is logged twice.
func TestReusedIDsRacingThenCrashAnswerAsBefore(t *testing.T) {
	tl := newTestLog(t, nil)
	// No claim is completed in the store: recovery finds them all.
	tl.s.idempotency.lossy.Store(true)
	events := []string{}
	for i := range 6 {
		events = append(events, fmt.Sprintf(`{"id":"X","n":%d}`, i))
	}
	type answer struct {
		ev  string
		idx uint64
	}
	var mu sync.Mutex
	var answers []answer
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := events[g%len(events)]
			r := tl.post("/v1/events", "application/json", []byte(ev))
			var res eventResult
			if r.status != http.StatusOK || json.Unmarshal(r.body, &res) != nil {
				t.Errorf("%s: %d %s", ev, r.status, r.body)
				return
			}
			mu.Lock()
			answers = append(answers, answer{ev, res.Index})
			mu.Unlock()
		}()
	}
	wg.Wait()
	first := map[string]uint64{}
	for _, a := range answers {
		if i, ok := first[a.ev]; ok && i != a.idx {
			t.Errorf("%s answered %d and %d", a.ev, i, a.idx)
		}
		first[a.ev] = a.idx
		if got := tl.eventOf(a.idx); got != canonical(t, a.ev) {
			t.Errorf("%s answered index %d, which holds %s", a.ev, a.idx, got)
		}
	}
	if n := tl.size(); n != uint64(len(events)) {
		t.Errorf("tree size %d, want %d: each event once", n, len(events))
	}
	tl.kill()
	tl.start()
	for _, ev := range events {
		got := tl.postEvent(ev)
		if !got.Duplicate || got.Index != first[ev] {
			t.Errorf("after the crash %s: %+v, want duplicate of %d", ev, got, first[ev])
		}
	}
	if n := tl.size(); n != uint64(len(events)) {
		t.Errorf("tree size %d after retries, want %d", n, len(events))
	}
}

// Two requests reuse an id for two events: A claims the key, B (a
// different event) claims the variant hash, and B's entry comes first in
// the log (index 0, A at 1). The process dies before either claim is
// completed. Recovery must complete each claim with its own event's entry
// (the key with A's, the variant with B's), not the first entry under the
// key, and keep doing so over more restarts: a retry of B (or of A) is
// then answered, not logged a second time.
func TestReusedIDRetryAfterTwoRestartsIsNotLoggedAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "idempotency.db")
	const src, key = "svc", "i:s:K"
	evA, evB := []byte(`{"id":"K","n":"a"}`), []byte(`{"id":"K","n":"b"}`)
	var bundle []byte
	for i, ev := range [][]byte{evB, evA} {
		leaf, _, _, err := checkpoint.AppendEventLeaf(nil, ev, time.Unix(int64(i), 0), src, "")
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, tessera.NewEntry(leaf).MarshalBundleData(uint64(i))...)
	}
	ls := fixedLeaves(bundle, 2)
	hA, hB := eventHash(evA), eventHash(evB)

	// What the dead process left: both claims open.
	d := openTestIndex(t, path)
	if err := inTx(context.Background(), d.store, func(tx keyTx) error {
		_, err := tx.insertClaims(context.Background(), d.owner, 0, []newClaim{{keyOf(keyHash(src, key)), hA}, {variantOf(keyHash(src, key), hB), hB}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	d.halt()
	d.Close()

	for start := 1; start <= 2; start++ {
		d := openTestIndex(t, path)
		if _, _, err := d.Recover(context.Background(), ls, 0); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name string
			ev   [16]byte
			idx  uint64
		}{{"B", hB, 0}, {"A", hA, 1}} {
			b, err := d.begin(context.Background(), src, []keyedEvent{{key: key, ev: c.ev}})
			if err != nil {
				t.Fatal(err)
			}
			if st := b.states[0]; !st.found || st.idx != c.idx {
				t.Errorf("start %d: a retry of %s is %+v, want found at index %d (else it is logged again)", start, c.name, st, c.idx)
			}
			b.finish(nil, nil)
		}
		d.Close()
	}
}

// openTestIndex opens an idempotency index in the SQLite file at path.
func openTestIndex(t testing.TB, path string) *idempotencyIndex {
	t.Helper()
	d, _, err := openSQLiteIndex(path, slog.Default(), func() (uint64, error) { return 0, nil })
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fixedLeaves is a log of size entries, all in one bundle.
func fixedLeaves(bundle []byte, size uint64) leafSource {
	return leafSource{
		size:   func(context.Context) (uint64, error) { return size, nil },
		next:   func(context.Context) (uint64, error) { return size, nil },
		bundle: func(context.Context, uint64, uint8) ([]byte, error) { return bundle, nil },
	}
}
