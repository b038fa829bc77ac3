package auditor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// payloadStore is what a commitment-mode log serves at GET /v1/payloads:
// the openings of its commitment leaves, by index. An index without one is
// served as erased.
type payloadStore struct {
	l        *testLog
	mu       sync.Mutex
	openings map[uint64]checkpoint.Opening
	token    string // required as a bearer token, if set
}

// newCommitmentLog returns a log whose leaves are commitment leaves for n
// event leaves, with a payload store holding every opening.
func newCommitmentLog(t *testing.T, keys *testKeys, tag string, n int) (*testLog, *payloadStore) {
	t.Helper()
	ps := &payloadStore{openings: map[uint64]checkpoint.Opening{}}
	l := newTestLog(t, keys, nil)
	ps.l = l
	ps.appendEvents(t, eventLeaves(t, tag, n))
	l.wrap = func(files http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/payloads" {
				ps.serve(rw, r)
				return
			}
			files.ServeHTTP(rw, r)
		})
	}
	return l, ps
}

// appendEvents appends a commitment leaf for each event leaf, and its
// opening to the store.
func (ps *payloadStore) appendEvents(t *testing.T, events [][]byte) {
	t.Helper()
	var leaves [][]byte
	ps.mu.Lock()
	for i, e := range events {
		leaf, o := commit(t, e)
		ps.openings[uint64(len(ps.l.leaves)+i)] = o
		leaves = append(leaves, leaf)
	}
	ps.mu.Unlock()
	ps.l.append(leaves...)
}

// commit returns the commitment leaf for event leaf e and its opening.
func commit(t *testing.T, e []byte) ([]byte, checkpoint.Opening) {
	t.Helper()
	el, err := checkpoint.ParseLeaf(e)
	if err != nil {
		t.Fatal(err)
	}
	salt, err := checkpoint.NewSalt()
	if err != nil {
		t.Fatal(err)
	}
	c := checkpoint.CommitmentLeaf{Received: el.Received, Source: el.Source, Commitment: checkpoint.Commit(salt, e)}
	return checkpoint.AppendCommitmentLeaf(nil, c), checkpoint.Opening{Salt: salt, Leaf: e}
}

// erasureLeaf returns an erasure leaf for ranges [from, to), given as
// pairs.
func erasureLeaf(t *testing.T, pairs ...uint64) []byte {
	t.Helper()
	e := checkpoint.Erasure{Received: time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), Source: "admin", Reason: "GDPR request 17"}
	for i := 0; i+1 < len(pairs); i += 2 {
		e.Entries = append(e.Entries, checkpoint.IndexRange{From: pairs[i], To: pairs[i+1]})
	}
	b, err := checkpoint.AppendErasureLeaf(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// erase deletes the openings of [from, to) from the store.
func (ps *payloadStore) erase(from, to uint64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for i := from; i < to; i++ {
		delete(ps.openings, i)
	}
}

func (ps *payloadStore) set(i uint64, o checkpoint.Opening) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.openings[i] = o
}

func (ps *payloadStore) get(i uint64) checkpoint.Opening {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.openings[i]
}

// serve answers GET /v1/payloads as the spec says: NDJSON, one line per
// commitment leaf in [from, to), to-from <= 1024, to <= size.
func (ps *payloadStore) serve(rw http.ResponseWriter, r *http.Request) {
	if ps.token != "" && r.Header.Get("Authorization") != "Bearer "+ps.token {
		http.Error(rw, "a read token is required", http.StatusUnauthorized)
		return
	}
	from, err1 := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
	to, err2 := strconv.ParseUint(r.URL.Query().Get("to"), 10, 64)
	leaves := ps.l.leaves
	if err1 != nil || err2 != nil || from >= to || to-from > 1024 || to > uint64(len(leaves)) {
		http.Error(rw, "bad range", http.StatusBadRequest)
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	rw.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(rw)
	for i := from; i < to; i++ {
		if checkpoint.KindOf(leaves[i]) != checkpoint.KindCommitment {
			continue
		}
		if o, ok := ps.openings[i]; ok {
			_ = enc.Encode(map[string]any{"index": i, "opening": o})
		} else {
			_ = enc.Encode(map[string]any{"index": i, "erased": true})
		}
	}
}

func findingsOf(r *Report, k Kind) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Kind == k {
			out = append(out, f)
		}
	}
	return out
}

// An honest commitment-mode log: every opening verifies, and the two
// contents erased by an erasure leaf in a later bundle are accounted for.
func TestCommitmentLogVerifies(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, ps := newCommitmentLog(t, keys, "a", 600)
	l.append(eventLeaves(t, "e", 3)...) // a log may hold event leaves from before
	l.append(erasureLeaf(t, 3, 5, 601, 602))
	ps.erase(3, 5)
	honest(l)
	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), nil))
	wantExit(t, r, ExitVerified)
	want := Counts{Leaves: 604, Event: 3, Commitment: 600, Erasure: 1, Opened: 598, Erased: 2}
	if r.Full.Counts != want {
		t.Fatalf("counts %+v, want %+v", r.Full.Counts, want)
	}
}

// A payload store that changes an event, or serves one entry's content
// for another, is caught: the opening does not match the commitment.
func TestChangedPayloadIsCaught(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, ps := newCommitmentLog(t, keys, "a", 300)
	honest(l)

	o := ps.get(9)
	changed := strings.Replace(string(o.Leaf), `"actor":{"name":"alice"}`, `"actor":{"name":"mallory"}`, 1)
	if changed == string(o.Leaf) {
		t.Fatalf("leaf 9 has no alice: %s", o.Leaf)
	}
	ps.set(9, checkpoint.Opening{Salt: o.Salt, Leaf: []byte(changed)})
	ps.set(270, ps.get(271)) // another entry's content, in the second bundle

	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), nil))
	wantExit(t, r, ExitMisbehaviour)
	var got []any
	for _, f := range findingsOf(r, KindBadOpening) {
		got = append(got, f.Details["index"])
	}
	if !slices.Equal(got, []any{uint64(9), uint64(270)}) {
		t.Fatalf("bad openings at %v; findings %v", got, r.Findings)
	}
	if r.Full.Verified || r.Full.Counts.Opened != 298 {
		t.Fatalf("full %+v", r.Full)
	}
}

// Content deleted without an erasure leaf is caught, even when another
// erasure leaf erased something else.
func TestMissingPayloadWithoutErasureIsCaught(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, ps := newCommitmentLog(t, keys, "a", 300)
	l.append(erasureLeaf(t, 100, 101))
	ps.erase(100, 101)
	ps.erase(20, 23)
	honest(l)
	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), nil))
	wantExit(t, r, ExitMisbehaviour)
	ms := findingsOf(r, KindMissing)
	if len(ms) != 1 || ms[0].Details["from"] != uint64(20) || ms[0].Details["to"] != uint64(23) || !strings.Contains(ms[0].Message, "[20, 23)") {
		t.Fatalf("findings %+v", r.Findings)
	}
	if c := r.Full.Counts; c.Erased != 1 || c.Opened != 296 {
		t.Fatalf("counts %+v", c)
	}
}

// An erasure leaf whose ranges reach its own index or beyond is a bad
// leaf, and erases nothing.
func TestErasureOfTheFutureIsBad(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, ps := newCommitmentLog(t, keys, "a", 50)
	l.append(erasureLeaf(t, 40, 60)) // index 50: reaches past itself
	l.append(erasureLeaf(t, 51, 52)) // index 51: erases itself
	l.append(erasureLeaf(t, 10, 11)) // index 52: fine
	ps.appendEvents(t, eventLeaves(t, "b", 10))
	ps.erase(10, 11)
	ps.erase(55, 56)
	honest(l)
	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), nil))
	wantExit(t, r, ExitMisbehaviour)
	var bad []any
	for _, f := range findingsOf(r, KindBadLeaf) {
		bad = append(bad, f.Details["index"])
	}
	if !slices.Equal(bad, []any{uint64(50), uint64(51)}) {
		t.Fatalf("bad leaves %v; findings %+v", bad, r.Findings)
	}
	// 55 is missing: the bad erasure at 50 does not cover it.
	if ms := findingsOf(r, KindMissing); len(ms) != 1 || ms[0].Details["from"] != uint64(55) {
		t.Fatalf("findings %+v", r.Findings)
	}
	if c := r.Full.Counts; c.Bad != 2 || c.Erasure != 1 || c.Erased != 1 {
		t.Fatalf("counts %+v", c)
	}
}

// Content an erasure leaf erased must no longer be served.
func TestErasedContentStillServedIsCaught(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, _ := newCommitmentLog(t, keys, "a", 300)
	l.append(erasureLeaf(t, 30, 32, 280, 281))
	honest(l)
	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), nil))
	wantExit(t, r, ExitMisbehaviour)
	fs := findingsOf(r, KindErasedServed)
	if len(fs) != 2 || fs[0].Details["from"] != uint64(30) || fs[0].Details["to"] != uint64(32) || fs[1].Details["from"] != uint64(280) || fs[0].Details["erasure_index"] != uint64(300) {
		t.Fatalf("findings %+v", r.Findings)
	}
}

// A log that refuses its contents stops the check with what to do; with
// the read token it verifies; with SkipPayloads the tree is checked and
// the contents counted as unchecked.
func TestPayloadsNeedAReadToken(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, ps := newCommitmentLog(t, keys, "a", 300)
	ps.token = "s3cret"
	honest(l)
	p := keys.policy(l.srv.URL, 1)

	r := full(t, newTestAuditor(t, p, nil))
	wantExit(t, r, ExitUnchecked)
	if f := has(r, KindUnavailable); f == nil || !strings.Contains(f.Message, "--read-token-file") || !strings.Contains(f.Message, "--skip-payloads") {
		t.Fatalf("findings %+v", r.Findings)
	}

	r = full(t, newTestAuditor(t, p, func(c *Config) { c.ReadToken = "s3cret" }))
	wantExit(t, r, ExitVerified)
	if r.Full.Counts.Opened != 300 {
		t.Fatalf("counts %+v", r.Full.Counts)
	}

	r = full(t, newTestAuditor(t, p, func(c *Config) { c.SkipPayloads = true }))
	wantExit(t, r, ExitVerified)
	if c := r.Full.Counts; c.Unchecked != 300 || c.Opened != 0 || c.Commitment != 300 {
		t.Fatalf("counts %+v", c)
	}
}

// Rules alert on opened events as on event leaves.
func TestRulesMatchOpenedEvents(t *testing.T) {
	rules, err := ParseRules([]byte(`prod-secret-read: action == "secret.read" && resource ^= "prod/db/3"`))
	if err != nil {
		t.Fatal(err)
	}
	keys := newTestKeys(t, 1)
	l, _ := newCommitmentLog(t, keys, "a", 100)
	honest(l)
	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.Rules = rules }))
	wantExit(t, r, ExitVerified)
	var hits []any
	for _, f := range findingsOf(r, KindRule) {
		hits = append(hits, f.Details["index"])
	}
	// i%7 == 3 among secret.read (i%3 != 1), as TestRulesMatchEvents.
	want := []any{uint64(3), uint64(17), uint64(24), uint64(38), uint64(45), uint64(59), uint64(66), uint64(80), uint64(87)}
	if !slices.Equal(hits, want) || r.Full.Counts.RuleHits != 9 {
		t.Fatalf("hits %v", hits)
	}
}

// A missing content is remembered across runs (the state directory) and
// settled by an erasure leaf appended later; and one interrupted run
// followed by another finds what a single run finds.
func TestMissingPayloadSettledByALaterErasure(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, ps := newCommitmentLog(t, keys, "a", 600)
	ps.erase(5, 6)
	honest(l)
	p := keys.policy(l.srv.URL, 1)
	state := t.TempDir()
	a := newTestAuditor(t, p, func(c *Config) { c.StateDir = state })
	r := full(t, a)
	wantExit(t, r, ExitMisbehaviour)
	if ms := findingsOf(r, KindMissing); len(ms) != 1 {
		t.Fatalf("findings %+v", r.Findings)
	}
	// Again, with nothing new: still missing.
	wantExit(t, full(t, a), ExitMisbehaviour)
	a.Close()

	l.append(erasureLeaf(t, 5, 6))
	honest(l)
	a = newTestAuditor(t, p, func(c *Config) { c.StateDir = state })
	r = full(t, a)
	wantExit(t, r, ExitVerified)
	if c := r.Full.Counts; c.Erased != 1 || c.Opened != 599 || c.Erasure != 1 || r.Full.Checked != 1 {
		t.Fatalf("full %+v", r.Full)
	}
}

func TestIndexSet(t *testing.T) {
	var s indexSet
	for _, i := range []uint64{1, 2, 3, 5, 6, 9, 10, 11, 12} {
		s.add(i)
	}
	str := func(rs []checkpoint.IndexRange) string { return fmt.Sprint(rs) }
	if got := str(s.runs); got != "[{1 4} {5 7} {9 13}]" {
		t.Fatalf("runs %s", got)
	}
	if got := str(s.remove(checkpoint.IndexRange{From: 2, To: 10})); got != "[{2 4} {5 7} {9 10}]" {
		t.Fatalf("removed %s", got)
	}
	if got := str(s.runs); got != "[{1 2} {10 13}]" {
		t.Fatalf("runs %s", got)
	}
	if got := s.remove(checkpoint.IndexRange{From: 2, To: 10}); got != nil {
		t.Fatalf("removed %v again", got)
	}
	s.remove(checkpoint.IndexRange{From: 11, To: 12})
	if got := str(s.runs); got != "[{1 2} {10 11} {12 13}]" || s.count() != 3 {
		t.Fatalf("runs %s", got)
	}
}

// An interrupted check keeps, in its saved progress, which contents were
// missing and which were served: after it resumes, an erasure leaf at the
// end still settles the one and convicts the other.
func TestContentsAcrossAnInterruption(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, ps := newCommitmentLog(t, keys, "a", 1500)
	l.append(erasureLeaf(t, 5, 6, 10, 11))
	ps.erase(5, 6) // 10 is still served
	honest(l)
	p := keys.policy(l.srv.URL, 1)
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	a := newTestAuditor(t, p, func(c *Config) {
		c.StateDir, c.ProgressInterval, c.Workers = state, time.Nanosecond, 1
		c.OnProgress = func(p Progress) {
			if p.Done >= 768 {
				cancel()
			}
		}
	})
	if _, err := a.Full(ctx); err == nil {
		t.Fatal("Full did not stop when cancelled")
	}
	a.Close()
	a = newTestAuditor(t, p, func(c *Config) { c.StateDir = state })
	r := full(t, a)
	if r.Full.Resumed < 768 {
		t.Fatalf("not resumed: %+v", r.Full)
	}
	if ks := kinds(r); !slices.Equal(ks, []Kind{KindErasedServed}) {
		t.Fatalf("findings %+v", r.Findings)
	}
	if c := r.Full.Counts; c.Erased != 1 || c.Opened != 1499 {
		t.Fatalf("counts %+v", c)
	}
}

// Following a commitment-mode log with rules: the new entries' events are
// opened and checked, rules match them, and a bad content is reported once
// however many rounds see it.
func TestFollowChecksContents(t *testing.T) {
	rules, err := ParseRules([]byte(`prod-secret-read: action == "secret.read" && resource ^= "prod/db/3"`))
	if err != nil {
		t.Fatal(err)
	}
	keys := newTestKeys(t, 1)
	l, ps := newCommitmentLog(t, keys, "a", 100)
	honest(l)
	var reported []Kind
	a := newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) {
		c.Rules, c.StateDir = rules, t.TempDir()
		c.OnFinding = func(f Finding) { reported = append(reported, f.Kind) }
	})
	wantExit(t, check(t, a), ExitVerified)
	ps.appendEvents(t, eventLeaves(t, "b", 30)) // 100..129: rule hits at n = 3, 17, 24
	o := ps.get(110)
	ps.set(110, checkpoint.Opening{Salt: o.Salt, Leaf: ps.get(111).Leaf})
	honest(l)
	for range 2 {
		r := check(t, a)
		wantExit(t, r, ExitMisbehaviour)
		if f := has(r, KindBadOpening); f == nil || f.Details["index"] != uint64(110) || len(findingsOf(r, KindRule)) != 3 {
			t.Fatalf("findings %+v", r.Findings)
		}
	}
	n := 0
	for _, k := range reported {
		if k == KindBadOpening {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("bad opening reported %d times: %v", n, reported)
	}
}

// Attack (false alarm): a check is interrupted after it was served leaf
// 10's content; the log then erases leaf 10, as it may (retention does so
// all the time). The resumed check, against the newer tree, must not take
// the new erasure for one that the log ignored: the content was served
// before the erasure existed.
func TestErasureAfterAnInterruptionIsNoFalseAlarm(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, ps := newCommitmentLog(t, keys, "a", 1500)
	honest(l)
	p := keys.policy(l.srv.URL, 1)
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	a := newTestAuditor(t, p, func(c *Config) {
		c.StateDir, c.ProgressInterval, c.Workers = state, time.Nanosecond, 1
		c.OnProgress = func(p Progress) {
			if p.Done >= 768 {
				cancel()
			}
		}
	})
	if _, err := a.Full(ctx); err == nil {
		t.Fatal("Full did not stop when cancelled")
	}
	a.Close()
	// Erased after it was served, and honestly: leaf and content go.
	l.append(erasureLeaf(t, 10, 11))
	ps.erase(10, 11)
	ps.appendEvents(t, eventLeaves(t, "b", 5))
	honest(l)
	a = newTestAuditor(t, p, func(c *Config) { c.StateDir = state })
	r := full(t, a)
	if r.Full.Resumed < 768 {
		t.Fatalf("not resumed: %+v", r.Full)
	}
	wantExit(t, r, ExitVerified)
	// Served once, erased since: counted as opened, not as erased.
	if c := r.Full.Counts; c.Opened != 1505 || c.Erasure != 1 {
		t.Fatalf("counts %+v", c)
	}
}

// Attack: the log commits to an event leaf larger than any leaf it may
// write (checkpoint.MaxLeafSize), and serves it. It opens the commitment,
// but is no event the log could have taken; it is a bad opening, and it
// must not jam the export of the others.
func TestOversizedOpeningIsBad(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, ps := newCommitmentLog(t, keys, "a", 3)
	big, _, _, err := checkpoint.AppendEventLeaf(nil, []byte(`{"blob":"`+strings.Repeat("x", checkpoint.MaxLeafSize)+`"}`),
		time.Date(2026, 11, 25, 23, 0, 0, 0, time.UTC), "deploy-bot", "")
	if err != nil {
		t.Fatal(err)
	}
	ps.appendEvents(t, [][]byte{big})
	ps.appendEvents(t, eventLeaves(t, "b", 2))
	honest(l)
	var shipped []uint64
	sink := SinkFunc(func(ctx context.Context, cp VerifiedCheckpoint, leaves *LeafReader) error {
		for {
			v, err := leaves.Next()
			if err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			shipped = append(shipped, v.Index)
		}
	})
	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.Sink = sink }))
	if ks := kinds(r); !slices.Equal(ks, []Kind{KindBadOpening}) {
		t.Fatalf("findings %+v", r.Findings)
	}
	if f := has(r, KindBadOpening); f.Details["index"] != uint64(3) {
		t.Fatalf("finding %+v", f)
	}
	if !slices.Equal(shipped, []uint64{0, 1, 2, 4, 5}) {
		t.Fatalf("shipped %v", shipped)
	}
}

// Attacks on GET /v1/payloads: a log that serves a line twice, out of
// order, outside the range asked, a line that is both or neither opening
// and erased, one entry's content for a raw entry, "erased" for content it
// deleted without an erasure leaf, or an endless answer. None passes for
// a verified log: an answer that breaks the format cannot be checked, and
// a well-formed lie is misbehaviour.
func TestHostilePayloadAnswers(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, ps := newCommitmentLog(t, keys, "a", 5)
	l.append([]byte("raw entry 5"))
	ps.appendEvents(t, eventLeaves(t, "b", 4)) // 6..9
	honest(l)
	line := func(lines []string, i int) string {
		for _, s := range lines {
			if strings.HasPrefix(s, fmt.Sprintf(`{"index":%d,`, i)) {
				return s
			}
		}
		t.Fatalf("no line for %d in %q", i, lines)
		return ""
	}
	for _, c := range []struct {
		name   string
		mangle func(lines []string) []string
		want   Kind
	}{
		{"twice", func(ls []string) []string { return append(ls[:4:4], append([]string{ls[3]}, ls[4:]...)...) }, KindUnavailable},
		{"reordered", func(ls []string) []string { ls[2], ls[3] = ls[3], ls[2]; return ls }, KindUnavailable},
		{"beyond", func(ls []string) []string {
			return append(ls, strings.Replace(line(ls, 9), `"index":9`, `"index":10`, 1))
		}, KindUnavailable},
		{"before", func(ls []string) []string {
			return append([]string{`{"erased":true,"index":18446744073709551615}`}, ls...)
		}, KindUnavailable},
		{"both", func(ls []string) []string {
			ls[4] = strings.Replace(ls[4], `{"index":4,`, `{"erased":true,"index":4,`, 1)
			return ls
		}, KindUnavailable},
		{"neither", func(ls []string) []string { ls[4] = `{"index":4}`; return ls }, KindUnavailable},
		{"no index", func(ls []string) []string { ls[4] = strings.Replace(ls[4], `"index":4,`, ``, 1); return ls }, KindUnavailable},
		{"raw entry served", func(ls []string) []string {
			return append(ls[:5:5], append([]string{strings.Replace(line(ls, 4), `"index":4`, `"index":5`, 1)}, ls[5:]...)...)
		}, KindBadOpening},
		{"lies erased", func(ls []string) []string { ls[4] = `{"erased":true,"index":4}`; return ls }, KindMissing},
		{"omits", func(ls []string) []string { return append(ls[:4:4], ls[5:]...) }, KindMissing},
		{"endless", func(ls []string) []string {
			return append(ls, strings.Repeat(" ", 10*maxPayloadLine+4096))
		}, KindUnavailable},
	} {
		t.Run(c.name, func(t *testing.T) {
			l.wrap = func(files http.Handler) http.Handler {
				return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
					if r.URL.Path != "/v1/payloads" {
						files.ServeHTTP(rw, r)
						return
					}
					rec := httptest.NewRecorder()
					ps.serve(rec, r)
					lines := strings.Split(strings.TrimSuffix(rec.Body.String(), "\n"), "\n")
					if len(lines) != 9 {
						t.Errorf("honest answer %q", lines)
					}
					fmt.Fprint(rw, strings.Join(c.mangle(lines), "\n")+"\n")
				})
			}
			r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), nil))
			if ks := kinds(r); !slices.Equal(ks, []Kind{c.want}) || r.Full.Verified {
				t.Fatalf("findings %+v, full %+v", r.Findings, r.Full)
			}
		})
	}
}

// Attack: the log appends an erasure leaf for old entries, as a data
// subject or a retention policy asks, and keeps serving their content. An
// auditor that checks each new part of the log as it comes (a state
// directory, run from a timer, or following) fetched that content long
// before the erasure: it must ask again when it meets the erasure leaf.
func TestErasedLaterButStillServedIsCaught(t *testing.T) {
	rules, err := ParseRules([]byte(`never: action == "nothing"`))
	if err != nil {
		t.Fatal(err)
	}
	for _, follow := range []bool{false, true} {
		keys := newTestKeys(t, 1)
		l, ps := newCommitmentLog(t, keys, "a", 300)
		honest(l)
		a := newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.StateDir, c.Rules = t.TempDir(), rules })
		run := func() *Report {
			if follow {
				return check(t, a)
			}
			return full(t, a)
		}
		wantExit(t, run(), ExitVerified)
		l.append(erasureLeaf(t, 10, 12, 250, 251)) // index 300
		ps.erase(250, 251)                         // 10 and 11 are still served
		ps.appendEvents(t, eventLeaves(t, "b", 3))
		honest(l)
		r := run()
		fs := findingsOf(r, KindErasedServed)
		if len(fs) != 1 || fs[0].Details["from"] != uint64(10) || fs[0].Details["to"] != uint64(12) || fs[0].Details["erasure_index"] != uint64(300) {
			t.Fatalf("follow %t: findings %+v", follow, r.Findings)
		}
		if ks := kinds(r); !slices.Equal(ks, []Kind{KindErasedServed}) {
			t.Fatalf("follow %t: findings %+v", follow, r.Findings)
		}
	}
}
