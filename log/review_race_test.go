package log

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
)

// Senders that reuse one id for different events, all at once, then a crash
// before any index row or watermark is written: after Rebuild every event
// is answered with the index it was answered before, whose leaf holds it,
// and nothing is logged twice.
func TestReusedIDsRacingThenCrashAnswerAsBefore(t *testing.T) {
	tl := newTestLog(t, nil)
	// No row and no watermark reaches the file: everything is rebuilt.
	tl.s.dedup.frozen.Store(true)
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
