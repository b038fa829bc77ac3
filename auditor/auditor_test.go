package auditor

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera/api/layout"
)

// mixedLeaves are event leaves with some raw ones among them.
func mixedLeaves(t *testing.T, tag string, n int) [][]byte {
	leaves := eventLeaves(t, tag, n)
	for i := 5; i < n; i += 50 {
		leaves[i] = []byte("raw entry " + tag + " " + string(rune('a'+i%26)))
	}
	return leaves
}

func countRaw(leaves [][]byte) uint64 {
	var n uint64
	for _, l := range leaves {
		if bytes.HasPrefix(l, []byte("raw ")) {
			n++
		}
	}
	return n
}

// honest publishes the log's checkpoint at its size, cosigned now by every
// witness, and has every witness serve it.
func honest(l *testLog) []byte {
	var all []int
	for i := range l.keys.witnesses {
		all = append(all, i)
	}
	s := l.signed(uint64(len(l.leaves)), time.Now(), all...)
	l.publish(s)
	for i := range l.keys.witnesses {
		l.keys.witnesses[i].served = s
	}
	return s
}

func TestHonestLogRaisesNothing(t *testing.T) {
	keys := newTestKeys(t, 3)
	leaves := mixedLeaves(t, "a", 1000)
	l := newTestLog(t, keys, leaves)
	honest(l)
	p := keys.policy(l.srv.URL, 2)
	state := t.TempDir()
	a := newTestAuditor(t, p, func(c *Config) { c.StateDir = state })

	r := check(t, a)
	wantExit(t, r, ExitVerified)
	if len(r.Findings) != 0 || !r.Witnessed || r.Checkpoint.Size != 1000 {
		t.Fatalf("report %+v", r)
	}
	r = full(t, a)
	wantExit(t, r, ExitVerified)
	f := r.Full
	if !f.Verified || f.Counts.Leaves != 1000 || f.Counts.Raw != countRaw(leaves) || f.Counts.Event != 1000-countRaw(leaves) || f.Counts.Bad != 0 {
		t.Fatalf("full %+v", f)
	}

	// The log grows (past a power of two and a tile boundary); the
	// auditor, restarted on its state, checks the new part only.
	a.Close()
	l.append(mixedLeaves(t, "b", 700)...)
	honest(l)
	a = newTestAuditor(t, p, func(c *Config) { c.StateDir = state })
	r = full(t, a)
	wantExit(t, r, ExitVerified)
	if f := r.Full; !f.Verified || f.Resumed != 1000 || f.Checked != 700 || f.Counts.Leaves != 1700 {
		t.Fatalf("resumed full %+v", f)
	}
	if len(kinds(r)) != 0 {
		t.Fatalf("findings %v", kinds(r))
	}
}

func TestFullResumesAfterInterruption(t *testing.T) {
	keys := newTestKeys(t, 1)
	l := newTestLog(t, keys, eventLeaves(t, "a", 3000))
	honest(l)
	p := keys.policy(l.srv.URL, 1)
	state := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	a := newTestAuditor(t, p, func(c *Config) {
		c.StateDir, c.ProgressInterval, c.Workers = state, time.Nanosecond, 1
		c.OnProgress = func(p Progress) {
			if p.Done >= 1024 {
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
	wantExit(t, r, ExitVerified)
	if f := r.Full; !f.Verified || f.Resumed < 1024 || f.Resumed+f.Checked != 3000 || f.Counts.Event != 3000 {
		t.Fatalf("full %+v", f)
	}
}

func TestRollbackIsCaughtAcrossRestarts(t *testing.T) {
	keys := newTestKeys(t, 1)
	l := newTestLog(t, keys, eventLeaves(t, "a", 900))
	honest(l)
	p := keys.policy(l.srv.URL, 1)
	state := t.TempDir()
	a := newTestAuditor(t, p, func(c *Config) { c.StateDir = state })
	wantExit(t, check(t, a), ExitVerified)
	a.Close()

	// The log goes back to an older, validly signed and witnessed
	// checkpoint (a restore from backup): a new auditor process on the
	// same state catches it.
	l.publish(l.signed(600, time.Now(), 0))
	a = newTestAuditor(t, p, func(c *Config) { c.StateDir = state })
	r := check(t, a)
	wantExit(t, r, ExitMisbehaviour)
	if has(r, KindRollback) == nil {
		t.Fatalf("no rollback in %v", kinds(r))
	}
	// The rolled-back checkpoint was not accepted.
	if !strings.Contains(a.state.follow.Accepted, "\n900\n") {
		t.Fatalf("accepted %q", a.state.follow.Accepted)
	}
}

// A log that loses its data and is rebuilt with other entries, signed with
// its own key and cosigned by a quorum: the auditor's state proves it.
func TestRewrittenHistoryLeavesEvidence(t *testing.T) {
	for _, sizes := range [][2]int{{1000, 1300}, {1024, 1300}, {256, 257}} { // m not a power of two, and powers of two
		keys := newTestKeys(t, 1)
		l := newTestLog(t, keys, eventLeaves(t, "a", sizes[0]))
		honest(l)
		p := keys.policy(l.srv.URL, 1)
		state := t.TempDir()
		a := newTestAuditor(t, p, func(c *Config) { c.StateDir = state })
		wantExit(t, check(t, a), ExitVerified)
		a.Close()

		// Same entries but one dropped near the start, then more.
		rewritten := slices.Concat(l.leaves[:10], l.leaves[11:], eventLeaves(t, "b", sizes[1]-sizes[0]+1))
		l.leaves = nil
		l.append(rewritten...)
		s := l.signed(uint64(len(l.leaves)), time.Now(), 0)
		l.publish(s)
		keys.witnesses[0].served = s
		a = newTestAuditor(t, p, func(c *Config) { c.StateDir = state })
		r := check(t, a)
		wantExit(t, r, ExitMisbehaviour)
		f := has(r, KindSplitView)
		if f == nil {
			t.Fatalf("%v: no split view in %v", sizes, kinds(r))
		}
		if v, why := recheck(t, p, f); v != VerdictMisbehaviour {
			t.Fatalf("%v: evidence re-checks as %d: %s", sizes, v, why)
		}
	}
}

// The log signs two forks of one size with its own key: one is shown to
// witness w1, the other to the auditor, cosigned by w2. The policy lets any
// one witness vouch (two disjoint quorums), so both forks are witnessed;
// gossip with w1 catches it.
func TestForkShownToAWitnessAndTheAuditor(t *testing.T) {
	keys := newTestKeys(t, 2)
	forkA := newTestLog(t, keys, eventLeaves(t, "a", 500))
	forkB := newTestLog(t, keys, eventLeaves(t, "b", 500))
	keys.witnesses[0].served = forkA.signed(500, time.Now(), 0)
	sb := forkB.signed(500, time.Now(), 1)
	forkB.publish(sb)
	keys.witnesses[1].served = sb
	p := keys.policy(forkB.srv.URL, 1)
	dir := t.TempDir()
	a := newTestAuditor(t, p, func(c *Config) { c.EvidenceDir = dir })
	r := check(t, a)
	wantExit(t, r, ExitMisbehaviour)
	f := has(r, KindSplitView)
	if f == nil {
		t.Fatalf("no split view in %v", kinds(r))
	}
	if v, why := recheck(t, p, f); v != VerdictMisbehaviour {
		t.Fatalf("evidence re-checks as %d: %s", v, why)
	}

	// The witness is behind on its fork: the log's tiles prove the log's
	// tree does not extend it.
	keys.witnesses[0].served = forkA.signed(300, time.Now(), 0)
	r = check(t, newTestAuditor(t, p, func(c *Config) { c.EvidenceDir = dir }))
	wantExit(t, r, ExitMisbehaviour)
	f = has(r, KindSplitView)
	if f == nil {
		t.Fatalf("no split view in %v", kinds(r))
	}
	if v, why := recheck(t, p, f); v != VerdictMisbehaviour {
		t.Fatalf("evidence re-checks as %d: %s", v, why)
	}
	var ev Evidence
	b, _ := os.ReadFile(f.Evidence)
	if err := json.Unmarshal(b, &ev); err != nil || ev.Kind != EvidenceInconsistentProof {
		t.Fatalf("evidence %s: %v", b, err)
	}

	// The same evidence with a checkpoint replaced, or without the key in
	// the policy, proves nothing.
	ev.Checkpoints[1] = ev.Checkpoints[0]
	b, _ = json.Marshal(ev)
	if v, why := CheckEvidence(p, b); v != VerdictNoMisbehaviour {
		t.Fatalf("self-consistent evidence: %d %s", v, why)
	}
	other := newTestKeys(t, 1)
	if v, _ := CheckEvidence(other.policy("http://x", 1), b); v != VerdictCannotTell {
		t.Fatalf("evidence under another log's policy: %d", v)
	}
	if v, _ := CheckEvidence(p, []byte("{")); v != VerdictCannotTell {
		t.Fatalf("garbage: %d", v)
	}
}

func TestTamperedTileIsCaught(t *testing.T) {
	for _, path := range []string{layout.TilePath(0, 1, 0), layout.TilePath(1, 0, 0)} {
		keys := newTestKeys(t, 1)
		l := newTestLog(t, keys, eventLeaves(t, "a", 70000))
		honest(l)
		p := keys.policy(l.srv.URL, 1)
		file := filepath.Join(l.dir, filepath.FromSlash(path))
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		b[40] ^= 1
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
		r := full(t, newTestAuditor(t, p, nil))
		wantExit(t, r, ExitMisbehaviour)
		if has(r, KindBadTiles) == nil || r.Full.Verified {
			t.Fatalf("%s: findings %v, full %+v", path, kinds(r), r.Full)
		}
	}
}

func TestTamperedTileBreaksConsistencyProofs(t *testing.T) {
	keys := newTestKeys(t, 1)
	l := newTestLog(t, keys, eventLeaves(t, "a", 1000))
	honest(l)
	p := keys.policy(l.srv.URL, 1)
	a := newTestAuditor(t, p, nil)
	wantExit(t, check(t, a), ExitVerified)
	l.append(eventLeaves(t, "b", 100)...)
	honest(l)
	// The proof from 1000 to 1100 needs hashes of tile 0/3 (leaves 768+).
	file := filepath.Join(l.dir, filepath.FromSlash(layout.TilePath(0, 3, 0)))
	b, _ := os.ReadFile(file)
	for i := range b {
		b[i] ^= 0xff
	}
	os.WriteFile(file, b, 0o644)
	r := check(t, a)
	wantExit(t, r, ExitMisbehaviour)
	if has(r, KindBadTiles) == nil {
		t.Fatalf("findings %v", kinds(r))
	}
}

func TestDroppedEntryIsCaught(t *testing.T) {
	keys := newTestKeys(t, 1)
	l := newTestLog(t, keys, eventLeaves(t, "a", 600))
	honest(l)
	p := keys.policy(l.srv.URL, 1)
	// The bundle 0 served without its entry 17; every other file as before.
	bundle := filepath.Join(l.dir, filepath.FromSlash(layout.EntriesPath(0, 0)))
	leaves := slices.Concat(l.leaves[:17], l.leaves[18:256])
	var b []byte
	for _, leaf := range leaves {
		b = append(b, byte(len(leaf)>>8), byte(len(leaf)))
		b = append(b, leaf...)
	}
	os.WriteFile(bundle, b, 0o644)
	r := full(t, newTestAuditor(t, p, nil))
	wantExit(t, r, ExitMisbehaviour)
	if has(r, KindRootMismatch) == nil {
		t.Fatalf("findings %v", kinds(r))
	}

	// Entry 17 replaced by another one, the level-0 tile rewritten to match:
	// only the root gives it away.
	l2 := newTestLog(t, keys, eventLeaves(t, "a", 600))
	honest(l2)
	l2.leaves[17] = []byte("something else")
	l2.writeTree(l2.leaves)
	r = full(t, newTestAuditor(t, keys.policy(l2.srv.URL, 1), nil))
	wantExit(t, r, ExitMisbehaviour)
	if has(r, KindRootMismatch) == nil && has(r, KindBadTiles) == nil {
		t.Fatalf("findings %v", kinds(r))
	}
}

func TestStaleLogIsCaught(t *testing.T) {
	keys := newTestKeys(t, 3)
	l := newTestLog(t, keys, eventLeaves(t, "a", 10))
	now := time.Now()
	// Two fresh cosignatures would make a quorum of 2; here only one is
	// fresh and the others are an hour old.
	s := l.signed(10, now.Add(-time.Hour), 0, 1)
	s = cosign(t, s, keys.witnesses[2], now)
	l.publish(s)
	p := keys.policy(l.srv.URL, 2)
	r := check(t, newTestAuditor(t, p, func(c *Config) { c.Now = func() time.Time { return now } }))
	wantExit(t, r, ExitMisbehaviour)
	if has(r, KindStale) == nil {
		t.Fatalf("findings %v", kinds(r))
	}
	if want := now.Add(-time.Hour).Truncate(time.Second); !r.Fresh.Equal(want) {
		t.Fatalf("quorum time %v, want %v", r.Fresh, want)
	}

	// A witness whose clock runs ahead within the skew counts; beyond it,
	// not, so a fast clock cannot make a stale log look fresh.
	s = l.signed(10, now.Add(30*time.Second), 0, 1)
	l.publish(s)
	wantExit(t, check(t, newTestAuditor(t, p, func(c *Config) { c.Now = func() time.Time { return now } })), ExitVerified)
	s = l.signed(10, now.Add(time.Hour), 0, 1)
	l.publish(s)
	r = check(t, newTestAuditor(t, p, func(c *Config) { c.Now = func() time.Time { return now } }))
	if has(r, KindStale) == nil || has(r, KindClock) == nil {
		t.Fatalf("findings %v", kinds(r))
	}
}

func TestQuorumLostAndBadSignatures(t *testing.T) {
	keys := newTestKeys(t, 2)
	l := newTestLog(t, keys, eventLeaves(t, "a", 10))
	p := keys.policy(l.srv.URL, 2)
	l.publish(l.signed(10, time.Now(), 0))
	r := check(t, newTestAuditor(t, p, nil))
	wantExit(t, r, ExitMisbehaviour)
	if has(r, KindQuorum) == nil {
		t.Fatalf("findings %v", kinds(r))
	}

	// Signed by an impostor's key with the log's name.
	imp := newTestKeys(t, 0)
	imp.origin = keys.origin
	skey, _, _ := checkpoint.GenerateLogKey(keys.origin)
	imp.logSigner, _ = checkpoint.NewLogSigner(skey)
	forged, _ := checkpoint.Sign(checkpoint.Checkpoint{Origin: keys.origin, Size: 10, Hash: l.root(10)}, imp.logSigner)
	l.publish(forged)
	r = check(t, newTestAuditor(t, p, nil))
	wantExit(t, r, ExitMisbehaviour)
	if has(r, KindBadSignature) == nil {
		t.Fatalf("findings %v", kinds(r))
	}

	// A log that cannot be reached could not be checked.
	l.srv.Close()
	r = check(t, newTestAuditor(t, p, nil))
	wantExit(t, r, ExitUnchecked)
}

func TestNonCanonicalEventLeafIsReported(t *testing.T) {
	keys := newTestKeys(t, 1)
	leaves := eventLeaves(t, "a", 300)
	leaves[7] = []byte(`{"v":1,"event":{"action":"secret.read"},"received":"2026-11-25T22:00:00Z","source":"x"}`)
	leaves[8] = []byte(`{"not":"an event leaf"}`)
	l := newTestLog(t, keys, leaves)
	honest(l)
	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), nil))
	wantExit(t, r, ExitMisbehaviour)
	f := has(r, KindBadLeaf)
	if f == nil || f.Details["index"] != uint64(7) {
		t.Fatalf("findings %+v", r.Findings)
	}
	if c := r.Full.Counts; c.Bad != 1 || c.Raw != 1 || c.Event != 298 {
		t.Fatalf("counts %+v", c)
	}
}

func TestRulesMatchEvents(t *testing.T) {
	rules, err := ParseRules([]byte(`
# comment
prod-secret-read: action == "secret.read" && resource ^= "prod/db/3"
alice: actor.name == "alice" && leaf.source == "deploy-bot" && n ~= "^1[0-9]$"
`))
	if err != nil {
		t.Fatal(err)
	}
	keys := newTestKeys(t, 1)
	l := newTestLog(t, keys, eventLeaves(t, "a", 100))
	honest(l)
	p := keys.policy(l.srv.URL, 1)
	r := full(t, newTestAuditor(t, p, func(c *Config) { c.Rules = rules }))
	wantExit(t, r, ExitVerified)
	var hits []string
	for _, f := range r.Findings {
		if f.Kind == KindRule {
			hits = append(hits, f.Details["rule"].(string))
		}
	}
	// prod/db/3: i%7 == 3 among secret.read (i%3 != 1): 3, 17, 24, 38, 45, 59, 66, 80, 87
	// alice: secret.read leaves with n in 10..19: 11, 12, 14, 15, 17, 18
	if got := len(hits); got != 9+6 {
		t.Fatalf("%d hits: %v", got, hits)
	}

	// Following: rules see the entries new since the last round.
	state := t.TempDir()
	a := newTestAuditor(t, p, func(c *Config) { c.Rules, c.StateDir = rules, state })
	if r := check(t, a); len(r.Findings) != 0 {
		t.Fatalf("first round: %v", kinds(r))
	}
	l.append(eventLeaves(t, "b", 30)...) // n = 0..29 again: 3, 17, 24 and the six alices
	honest(l)
	r = check(t, a)
	hits = nil
	for _, f := range r.Findings {
		if f.Kind == KindRule {
			hits = append(hits, f.Details["rule"].(string))
		}
	}
	if len(hits) != 3+6 {
		t.Fatalf("hits %v, findings %v", hits, kinds(r))
	}
}

func TestParseRulesIsStrict(t *testing.T) {
	for _, bad := range []string{
		`no colon`,
		`x: action = "a"`,
		`x: action == a`,
		`x: action == "a" || b == "c"`,
		`x: action == "a" &&`,
		`x: 1bad == "a"`,
		`x: a ~= "("`,
		"x: a == \"b\"\nx: c == \"d\"",
		`bad name: a == "b"`,
	} {
		if _, err := ParseRules([]byte(bad)); err == nil {
			t.Errorf("ParseRules(%q) succeeded", bad)
		}
	}
	r, err := ParseRules([]byte(`r: a != "x" && b $= "y" && c *= "\u00e9"`))
	if err != nil || len(r) != 1 || len(r[0].Conds) != 3 || r[0].Conds[2].Value != "é" {
		t.Fatalf("%+v %v", r, err)
	}
}

func TestReadToken(t *testing.T) {
	keys := newTestKeys(t, 1)
	l := newTestLog(t, keys, eventLeaves(t, "a", 300))
	honest(l)
	l.wrap = func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/tile/entries/") && r.Header.Get("Authorization") != "Bearer s3cret" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	p := keys.policy(l.srv.URL, 1)
	r := full(t, newTestAuditor(t, p, nil))
	wantExit(t, r, ExitUnchecked)
	r = full(t, newTestAuditor(t, p, func(c *Config) { c.ReadToken = "s3cret" }))
	wantExit(t, r, ExitVerified)
}

func TestFollowAlertsOncePerProblem(t *testing.T) {
	keys := newTestKeys(t, 1)
	l := newTestLog(t, keys, eventLeaves(t, "a", 10))
	l.publish(l.signed(10, time.Now(), 0))
	l.publish(l.signed(10, time.Now())) // no cosignature: quorum lost
	var got []Finding
	a := newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.OnFinding = func(f Finding) { got = append(got, f) } })
	for range 3 {
		check(t, a)
	}
	n := 0
	for _, f := range got {
		if f.Kind == KindQuorum {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d quorum alerts over 3 rounds, want 1", n)
	}
}

func TestQuorumTime(t *testing.T) {
	keys := newTestKeys(t, 3)
	p := keys.policy("http://log", 2)
	now := time.Unix(1_800_000_000, 0)
	cos := map[string]time.Time{"w1": now.Add(-10 * time.Second), "w2": now.Add(-time.Minute), "w3": now.Add(30 * time.Second)}
	got, ok, future := quorumTime(p, cos, now, time.Minute)
	if !ok || !got.Equal(now.Add(-10*time.Second)) || len(future) != 0 {
		t.Fatalf("%v %v %v", got, ok, future)
	}
	got, ok, future = quorumTime(p, cos, now, 10*time.Second)
	if !ok || !got.Equal(now.Add(-time.Minute)) || !slices.Equal(future, []string{"w3"}) {
		t.Fatalf("%v %v %v", got, ok, future)
	}
}
