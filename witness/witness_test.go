package witness

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
)

// testLog is a log in memory: a key and a Merkle tree it can sign at any size.
type testLog struct {
	t      *testing.T
	origin string
	vkey   string
	signer note.Signer
	tree   *testonly.Tree
}

func newTestLog(t *testing.T, origin string) *testLog {
	t.Helper()
	skey, vkey, err := checkpoint.GenerateLogKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := checkpoint.NewLogSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	l := &testLog{t: t, origin: origin, vkey: vkey, signer: s, tree: testonly.New(rfc6962.DefaultHasher)}
	l.grow(20, "main")
	return l
}

// fork returns a log with the same key whose tree holds other entries.
func (l *testLog) fork(entries int) *testLog {
	f := &testLog{t: l.t, origin: l.origin, vkey: l.vkey, signer: l.signer, tree: testonly.New(rfc6962.DefaultHasher)}
	f.grow(entries, fmt.Sprintf("fork%d", entries))
	return f
}

func (l *testLog) grow(n int, tag string) {
	for i := 0; i < n; i++ {
		l.tree.AppendData([]byte(fmt.Sprintf("%s entry %d", tag, l.tree.Size())))
	}
}

// checkpoint returns the log's signed checkpoint at size.
func (l *testLog) checkpoint(size uint64) []byte {
	l.t.Helper()
	b, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: l.origin, Size: size, Hash: l.tree.HashAt(size)}, l.signer)
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}

func (l *testLog) proof(from, to uint64) [][]byte {
	l.t.Helper()
	if from == 0 || from >= to {
		return nil
	}
	p, err := l.tree.ConsistencyProof(from, to)
	if err != nil {
		l.t.Fatal(err)
	}
	return p
}

// request is an add-checkpoint body from old to size with a valid proof.
func (l *testLog) request(old, size uint64) string {
	return body(old, l.proof(old, size), l.checkpoint(size))
}

func body(old uint64, proof [][]byte, signed []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "old %d\n", old)
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h) + "\n")
	}
	b.WriteString("\n")
	b.Write(signed)
	return b.String()
}

func logList(logs ...*testLog) string {
	s := "logs/v0\n"
	for _, l := range logs {
		s += "vkey " + l.vkey + "\nqpd 86400\ncontact test\n"
	}
	return s
}

// testWitness is a witness on a temporary directory behind a handler.
type testWitness struct {
	t   *testing.T
	cfg Config
	w   *Witness
	h   http.Handler
}

func newTestWitness(t *testing.T, list string, mod func(*Config)) *testWitness {
	t.Helper()
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.WriteFile(logs, []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dir: filepath.Join(dir, "state"), LogsFile: logs, Name: "witness.test/w1", PollInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	tw := &testWitness{t: t, cfg: cfg}
	tw.start()
	t.Cleanup(func() {
		if tw.w != nil {
			tw.w.Close()
		}
	})
	return tw
}

func (tw *testWitness) start() {
	tw.t.Helper()
	tw.cfg.Registry = nil
	w, err := New(context.Background(), tw.cfg)
	if err != nil {
		tw.t.Fatalf("New: %v", err)
	}
	tw.w, tw.h = w, w.Handler(true)
}

func (tw *testWitness) restart() {
	tw.t.Helper()
	if err := tw.w.Close(); err != nil {
		tw.t.Fatal(err)
	}
	tw.w = nil
	tw.start()
}

type response struct {
	code        int
	body        string
	contentType string
	header      http.Header
}

func (tw *testWitness) do(method, path, reqBody string) response {
	tw.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(reqBody))
	rec := httptest.NewRecorder()
	tw.h.ServeHTTP(rec, req)
	return response{rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"), rec.Header()}
}

func (tw *testWitness) addCheckpoint(reqBody string) response {
	tw.t.Helper()
	return tw.do(http.MethodPost, "/add-checkpoint", reqBody)
}

// cosigned checks that a 200's body is a valid cosignature of signed by the
// witness's key, and returns signed with it.
func (tw *testWitness) cosigned(signed []byte, r response) []byte {
	tw.t.Helper()
	if r.code != 200 {
		tw.t.Fatalf("got %d %q, want 200", r.code, r.body)
	}
	if r.contentType != "text/plain; charset=utf-8" {
		tw.t.Errorf("Content-Type %q", r.contentType)
	}
	v, err := fnote.NewVerifierForCosignatureV1(tw.w.VKey())
	if err != nil {
		tw.t.Fatal(err)
	}
	full := append(append([]byte{}, signed...), r.body...)
	n, err := note.Open(full, note.VerifierList(v))
	if err != nil {
		tw.t.Fatalf("cosignature %q does not verify: %v", r.body, err)
	}
	if len(n.Sigs) != 1 || strings.Count(r.body, "\n") != 1 || !strings.HasPrefix(r.body, "— witness.test/w1 ") {
		tw.t.Fatalf("want one cosignature line, got %q", r.body)
	}
	return full
}

func TestAddCheckpointStatuses(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	other := newTestLog(t, "example.com/other") // not listed
	impostor := newTestLog(t, "example.com/log")
	impostor.tree = l.tree // same tree, another key
	fork := l.fork(20)
	tw := newTestWitness(t, logList(l), nil)

	rows := []struct {
		name     string
		body     string
		wantCode int
		wantBody string // exact when set
		wantType string // exact when set
	}{
		{"unknown origin", other.request(0, 5), 404, "", ""},
		{"signed by another key", impostor.request(0, 5), 403, "", ""},
		{"old beyond the size", body(6, nil, l.checkpoint(5)), 400, "", ""},
		{"proof from 0", body(0, l.proof(3, 5), l.checkpoint(5)), 422, "", ""},
		{"first checkpoint", l.request(0, 5), 200, "", ""},
		{"old 0 after 5", l.request(0, 8), 409, "5\n", "text/x.tlog.size"},
		{"old too small", l.request(3, 8), 409, "5\n", "text/x.tlog.size"},
		{"old too large, within size", l.request(6, 8), 409, "5\n", "text/x.tlog.size"},
		{"same size, other root", body(5, nil, fork.checkpoint(5)), 409, "", "text/plain; charset=utf-8"},
		{"bad proof", body(5, fork.proof(5, 8), l.checkpoint(8)), 422, "", ""},
		{"proof of the wrong length", body(5, l.proof(5, 8)[1:], l.checkpoint(8)), 422, "", ""},
		{"next checkpoint", l.request(5, 8), 200, "", ""},
		{"repeat", l.request(8, 8), 200, "", ""},
		{"repeat with a proof", body(8, l.proof(5, 8), l.checkpoint(8)), 422, "", ""},
		{"rollback", l.request(5, 5), 409, "8\n", "text/x.tlog.size"},
		{"rollback with old beyond size", l.request(8, 5), 400, "", ""},
		{"power of two", l.request(8, 16), 200, "", ""},
		{"all the way", l.request(16, 20), 200, "", ""},
	}
	for _, r := range rows {
		got := tw.addCheckpoint(r.body)
		if got.code != r.wantCode {
			t.Errorf("%s: got %d %q, want %d", r.name, got.code, got.body, r.wantCode)
			continue
		}
		if r.wantBody != "" && got.body != r.wantBody {
			t.Errorf("%s: got body %q, want %q", r.name, got.body, r.wantBody)
		}
		if r.wantType != "" && got.contentType != r.wantType {
			t.Errorf("%s: got Content-Type %q, want %q", r.name, got.contentType, r.wantType)
		}
		if r.wantCode == 200 {
			signed := []byte(r.body[strings.Index(r.body, "\n\n")+2:])
			tw.cosigned(signed, got)
		}
	}
	// The state survives a restart, and a repeat is still a repeat.
	tw.restart()
	tw.cosigned(l.checkpoint(20), tw.addCheckpoint(l.request(20, 20)))
	if got := tw.addCheckpoint(l.request(16, 20)); got.code != 409 || got.body != "20\n" {
		t.Errorf("after restart: got %d %q, want 409 20", got.code, got.body)
	}
}

func TestEmptyTree(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	tw := newTestWitness(t, logList(l), nil)
	empty, _ := checkpoint.Sign(checkpoint.Checkpoint{Origin: l.origin, Size: 0, Hash: rfc6962.DefaultHasher.EmptyRoot()}, l.signer)
	notEmpty, _ := checkpoint.Sign(checkpoint.Checkpoint{Origin: l.origin, Size: 0, Hash: l.tree.HashAt(1)}, l.signer)
	if got := tw.addCheckpoint(body(0, nil, notEmpty)); got.code != 409 {
		t.Errorf("size 0 with a non-empty root: got %d, want 409", got.code)
	}
	tw.cosigned(empty, tw.addCheckpoint(body(0, nil, empty)))
	tw.cosigned(empty, tw.addCheckpoint(body(0, nil, empty)))
	tw.cosigned(l.checkpoint(3), tw.addCheckpoint(l.request(0, 3)))
}

func TestMalformedRequests(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	tw := newTestWitness(t, logList(l), nil)
	cp := string(l.checkpoint(5))
	h := base64.StdEncoding.EncodeToString(l.tree.HashAt(1))
	var many strings.Builder
	for i := 0; i < 64; i++ {
		many.WriteString(h + "\n")
	}
	for name, b := range map[string]string{
		"empty":                        "",
		"no old line":                  "\n" + cp,
		"old with leading zero":        "old 00\n\n" + cp,
		"old negative":                 "old -1\n\n" + cp,
		"old with two spaces":          "old  0\n\n" + cp,
		"old too large":                "old 18446744073709551616\n\n" + cp,
		"no blank line":                "old 0\n" + cp,
		"proof not base64":             "old 0\nnot base64!\n\n" + cp,
		"proof not 32 bytes":           "old 0\nAAAA\n\n" + cp,
		"proof non-canonical":          "old 0\n" + h[:42] + "F=\n\n" + cp,
		"64 proof lines":               "old 0\n" + many.String() + "\n" + cp,
		"no checkpoint":                "old 0\n\n",
		"checkpoint unsigned":          "old 0\n\nexample.com/log\n5\n" + h + "\n",
		"CRLF":                         strings.ReplaceAll("old 0\n\n"+cp, "\n", "\r\n"),
		"trailing garbage":             "old 0\n\n" + cp + "x",
		"checkpoint size leading zero": "old 0\n\n" + strings.Replace(cp, "\n5\n", "\n05\n", 1),
	} {
		if got := tw.addCheckpoint(b); got.code != 400 {
			t.Errorf("%s: got %d %q, want 400", name, got.code, got.body)
		}
	}
	huge := "old 0\n\n" + strings.Repeat("x", MaxRequestSize)
	if got := tw.addCheckpoint(huge); got.code != 413 {
		t.Errorf("huge body: got %d, want 413", got.code)
	}
	// 63 proof lines are allowed by the syntax (and then fail as a proof).
	if got := tw.addCheckpoint("old 0\n" + strings.Repeat(h+"\n", 63) + "\n" + cp); got.code != 422 {
		t.Errorf("63 proof lines: got %d %q, want 422", got.code, got.body)
	}
}

func TestForkIsRefusedForeverAndLeavesEvidence(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	fork := l.fork(20)
	tw := newTestWitness(t, logList(l), nil)
	tw.cosigned(l.checkpoint(5), tw.addCheckpoint(l.request(0, 5)))

	// The other tree at the same size: 409, and a split view.
	if got := tw.addCheckpoint(body(5, nil, fork.checkpoint(5))); got.code != 409 {
		t.Fatalf("fork at the same size: got %d", got.code)
	}
	// The other tree, later, with its own (valid for it) proof from size 5:
	// 422, and an inconsistent proof, since 5 is not a power of two.
	if got := tw.addCheckpoint(fork.request(5, 9)); got.code != 422 {
		t.Fatalf("fork later: got %d", got.code)
	}
	// Sent twice: still one item of each.
	tw.addCheckpoint(body(5, nil, fork.checkpoint(5)))
	tw.addCheckpoint(fork.request(5, 9))
	// A bad proof that anyone could send is not evidence.
	tw.addCheckpoint(body(5, l.proof(5, 9)[1:], l.checkpoint(9)))
	tw.addCheckpoint(body(5, fork.proof(4, 9), l.checkpoint(9)))
	// The fork from its start: 409 with the size, not cosigned.
	if got := tw.addCheckpoint(fork.request(0, 12)); got.code != 409 || got.body != "5\n" {
		t.Fatalf("fork from 0: got %d %q", got.code, got.body)
	}

	tw.restart()
	for _, req := range []string{body(5, nil, fork.checkpoint(5)), fork.request(5, 9), fork.request(5, 20)} {
		if got := tw.addCheckpoint(req); got.code == 200 {
			t.Fatalf("fork cosigned after restart")
		}
	}
	tw.cosigned(l.checkpoint(9), tw.addCheckpoint(l.request(5, 9)))
	if got := tw.addCheckpoint(body(9, nil, fork.checkpoint(9))); got.code != 409 {
		t.Fatalf("fork at 9: got %d", got.code)
	}

	var evs []Evidence
	r := tw.do("GET", "/evidence", "")
	if err := json.Unmarshal([]byte(r.body), &evs); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	v, _ := checkpoint.NewLogVerifier(l.vkey)
	for _, ev := range evs {
		kinds[ev.Kind]++
		if ev.Origin != l.origin || len(ev.Checkpoints) != 2 {
			t.Errorf("evidence %+v", ev)
		}
		// A stranger with the log's key checks it: both signed by the log,
		// and in conflict.
		var cs []checkpoint.Checkpoint
		for _, s := range ev.Checkpoints {
			c, _, err := checkpoint.Open([]byte(s), v)
			if err != nil {
				t.Fatalf("evidence checkpoint does not verify: %v", err)
			}
			cs = append(cs, c)
		}
		switch ev.Kind {
		case KindSplitView:
			if cs[0].Size != cs[1].Size || bytes.Equal(cs[0].Hash, cs[1].Hash) {
				t.Errorf("split view is not one: %+v", cs)
			}
		case KindInconsistentProof:
			var p [][]byte
			for _, s := range ev.Proof {
				h, _ := base64.StdEncoding.DecodeString(s)
				p = append(p, h)
			}
			r2, _ := base64.StdEncoding.DecodeString(ev.ProofOldRoot)
			if err := checkpoint.VerifyConsistency(cs[0].Size, r2, p, cs[1]); err != nil || bytes.Equal(r2, cs[0].Hash) {
				t.Errorf("inconsistent proof is not one: %v", err)
			}
		}
	}
	if kinds[KindSplitView] != 2 || kinds[KindInconsistentProof] != 2 {
		t.Errorf("evidence kinds %v, want 2 split views (sizes 5 and 9) and 2 inconsistent proofs (5 to 9 and 5 to 20):\n%s", kinds, r.body)
	}
	if m := tw.do("GET", "/metrics", ""); !strings.Contains(m.body, `tidemark_witness_evidence_total{kind="split-view"}`) {
		t.Errorf("no evidence metric")
	}
}

func TestEvidenceIsCapped(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	tw := newTestWitness(t, logList(l), func(c *Config) { c.MaxEvidence = 3 })
	tw.cosigned(l.checkpoint(5), tw.addCheckpoint(l.request(0, 5)))
	for i := 0; i < 6; i++ {
		tw.addCheckpoint(body(5, nil, l.fork(5+i).checkpoint(5)))
	}
	var evs []Evidence
	json.Unmarshal([]byte(tw.do("GET", "/evidence", "").body), &evs)
	if len(evs) != 3 {
		t.Errorf("%d items held, want the cap of 3", len(evs))
	}
}

func TestJunkSignaturesNeverComeBackOut(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	fork := l.fork(20)
	tw := newTestWitness(t, logList(l), nil)
	junkKey, _, _ := checkpoint.GenerateLogKey("junk.example/evil")
	junkSigner, _ := checkpoint.NewLogSigner(junkKey)
	otherWitness, _, _ := checkpoint.GenerateWitnessKey("junk.example/witness")
	otherWitnessSigner, _ := checkpoint.NewWitnessSigner(otherWitness)
	withJunk := func(tl *testLog, size uint64) []byte {
		b, err := checkpoint.Sign(checkpoint.Checkpoint{Origin: tl.origin, Size: size, Hash: tl.tree.HashAt(size)}, junkSigner, tl.signer, otherWitnessSigner)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	signed := withJunk(l, 5)
	got := tw.addCheckpoint(body(0, nil, signed))
	if got.code != 200 {
		t.Fatalf("got %d %q", got.code, got.body)
	}
	tw.addCheckpoint(body(5, nil, withJunk(fork, 5)))              // evidence
	tw.addCheckpoint(body(5, fork.proof(5, 9), withJunk(fork, 9))) // evidence

	want := string(l.checkpoint(5)) + got.body
	cp := tw.do("GET", "/"+originHash(l.origin)+"/checkpoint", "")
	if cp.code != 200 || cp.body != want {
		t.Errorf("GET checkpoint:\n%s\nwant\n%s", cp.body, want)
	}
	for _, path := range []string{"/" + originHash(l.origin) + "/checkpoint", "/logs", "/evidence", "/metrics"} {
		r := tw.do("GET", path, "")
		if strings.Contains(r.body, "junk.example") {
			t.Errorf("%s serves a junk signature:\n%s", path, r.body)
		}
	}
	if r := tw.do("GET", "/evidence", ""); !strings.Contains(r.body, KindSplitView) || !strings.Contains(r.body, KindInconsistentProof) {
		t.Errorf("evidence missing:\n%s", r.body)
	}
	if r := tw.do("GET", "/"+strings.Repeat("0", 64)+"/checkpoint", ""); r.code != 404 {
		t.Errorf("unknown origin hash: %d", r.code)
	}
}

func TestKeyAndStateAreOneIdentity(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	tw := newTestWitness(t, logList(l), nil)
	tw.cosigned(l.checkpoint(5), tw.addCheckpoint(l.request(0, 5)))
	vkey := tw.w.VKey()
	tw.w.Close()
	tw.w = nil
	dir := tw.cfg.Dir

	// Lost state: refused, unless --init.
	os.Rename(filepath.Join(dir, DBFile), filepath.Join(dir, "saved.db"))
	os.Remove(filepath.Join(dir, DBFile+"-wal"))
	os.Remove(filepath.Join(dir, DBFile+"-shm"))
	if _, err := New(context.Background(), tw.cfg); err == nil || !strings.Contains(err.Error(), "--init") {
		t.Fatalf("started with a key and no state: %v", err)
	}
	cfg := tw.cfg
	cfg.Init = true
	w, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	os.Rename(filepath.Join(dir, "saved.db"), filepath.Join(dir, DBFile))

	// Lost key: refused, and no new key is made.
	os.Rename(filepath.Join(dir, KeyFile), filepath.Join(dir, "saved.key"))
	if _, err := New(context.Background(), tw.cfg); err == nil {
		t.Fatal("started with state and no key")
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); err == nil {
		t.Fatal("made a new key for old state")
	}
	// Another key: refused.
	other, _, _ := checkpoint.GenerateWitnessKey("witness.test/w2")
	os.WriteFile(filepath.Join(dir, "other.key"), []byte(other+"\n"), 0o600)
	cfg = tw.cfg
	cfg.KeyFile = filepath.Join(dir, "other.key")
	cfg.Name = "" // the other key's name is not w1's, which alone is refused (TestNameMustBeTheKeys)
	if _, err := New(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "belongs to key") {
		t.Fatalf("started with another key: %v", err)
	}
	// The right key: the state is all there.
	os.Rename(filepath.Join(dir, "saved.key"), filepath.Join(dir, KeyFile))
	tw.start()
	if tw.w.VKey() != vkey {
		t.Fatal("key changed")
	}
	if got := tw.addCheckpoint(l.request(0, 8)); got.code != 409 || got.body != "5\n" {
		t.Fatalf("state lost: %d %q", got.code, got.body)
	}
	// Two processes on one state: refused.
	if _, err := New(context.Background(), tw.cfg); err == nil || !strings.Contains(err.Error(), "another witness") {
		t.Fatalf("second witness on the same state: %v", err)
	}
}

func TestSQLiteIsDurable(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	tw := newTestWitness(t, logList(l), nil)
	var mode string
	var sync int
	db := tw.w.state.db
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q (%v), want wal", mode, err)
	}
	if err := db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
		t.Errorf("synchronous %d (%v), want 2 (FULL)", sync, err)
	}
	if m := tw.do("GET", "/metrics", ""); !strings.Contains(m.body, `tidemark_witness_sqlite_settings{journal_mode="wal",synchronous="2"} 1`) {
		t.Errorf("metrics do not show the SQLite settings")
	}
}

func TestCommitBeforeAnswer(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	tw := newTestWitness(t, logList(l), nil)
	// Every answer comes after its own commit: the hook sees the row.
	var mu sync.Mutex
	committed := 0
	tw.w.state.afterCommit = func(n int) { mu.Lock(); committed += n; mu.Unlock() }
	for i, sizes := range [][2]uint64{{0, 3}, {3, 7}, {7, 7}, {7, 12}} {
		got := tw.addCheckpoint(l.request(sizes[0], sizes[1]))
		if got.code != 200 {
			t.Fatalf("%d: %d %q", i, got.code, got.body)
		}
		mu.Lock()
		c := committed
		mu.Unlock()
		var size int64
		tw.w.state.db.QueryRow("SELECT size FROM checkpoints WHERE origin = ?", l.origin).Scan(&size)
		if uint64(size) != sizes[1] {
			t.Errorf("%d: answered 200 for size %d with %d stored", i, sizes[1], size)
		}
		if want := []int{1, 2, 2, 3}[i]; c != want {
			t.Errorf("%d: %d commits, want %d (a repeat writes nothing)", i, c, want)
		}
	}
}

func TestRacingRequestsNeverBothWin(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	l.grow(40, "more")
	tw := newTestWitness(t, logList(l), nil)
	tw.cosigned(l.checkpoint(5), tw.addCheckpoint(l.request(0, 5)))
	var wg sync.WaitGroup
	codes := make([]int, 30)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = tw.addCheckpoint(l.request(5, uint64(6+i))).code
		}()
	}
	wg.Wait()
	wins := 0
	for _, c := range codes {
		switch c {
		case 200:
			wins++
		case 409:
		default:
			t.Errorf("status %d", c)
		}
	}
	if wins != 1 {
		t.Errorf("%d requests from old size 5 succeeded, want exactly 1", wins)
	}
}

func TestRateLimits(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	l.grow(100, "more")
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	list := "logs/v0\nvkey " + l.vkey + "\nqpd 1440\n" // one a minute: burst 10
	tw := newTestWitness(t, list, func(c *Config) { c.Now = clock })
	size := uint64(0)
	advance := func() response {
		r := tw.addCheckpoint(l.request(size, size+1))
		if r.code == 200 {
			size++
		}
		return r
	}
	for i := 0; i < 10; i++ {
		if r := advance(); r.code != 200 {
			t.Fatalf("request %d within the burst: %d %q", i, r.code, r.body)
		}
	}
	r := advance()
	if r.code != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("past the burst: %d %q, Retry-After %q", r.code, r.body, r.header.Get("Retry-After"))
	}
	// Repeats and refusals cost nothing.
	for i := 0; i < 50; i++ {
		tw.cosigned(l.checkpoint(size), tw.addCheckpoint(l.request(size, size)))
		tw.addCheckpoint(l.request(0, size+1))
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if r := advance(); r.code != 200 {
		t.Fatalf("a minute later: %d", r.code)
	}
	if r := advance(); r.code != 429 {
		t.Fatalf("right after: %d", r.code)
	}
}

func TestGlobalRateLimit(t *testing.T) {
	a, b := newTestLog(t, "example.com/a"), newTestLog(t, "example.com/b")
	now := time.Unix(1_800_000_000, 0)
	tw := newTestWitness(t, logList(a, b), func(c *Config) { c.GlobalQPS = 1; c.Now = func() time.Time { return now } })
	// Global burst is max(qps, 10).
	n := 0
	for i := uint64(0); i < 6; i++ {
		for _, l := range []*testLog{a, b} {
			if tw.addCheckpoint(l.request(i, i+1)).code == 200 {
				n++
			}
		}
	}
	if n != 10 {
		t.Errorf("%d advanced, want the global burst of 10", n)
	}
}

func TestReloadKeepsState(t *testing.T) {
	a, b := newTestLog(t, "example.com/a"), newTestLog(t, "example.com/b")
	tw := newTestWitness(t, logList(a), nil)
	tw.cosigned(a.checkpoint(5), tw.addCheckpoint(a.request(0, 5)))
	if got := tw.addCheckpoint(b.request(0, 5)); got.code != 404 {
		t.Fatalf("b before reload: %d", got.code)
	}
	os.WriteFile(tw.cfg.LogsFile, []byte(logList(b)), 0o644)
	if err := tw.w.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := tw.addCheckpoint(a.request(5, 8)); got.code != 404 {
		t.Fatalf("a after it left the list: %d", got.code)
	}
	tw.cosigned(b.checkpoint(5), tw.addCheckpoint(b.request(0, 5)))
	// A broken list is refused and the one in force stays.
	os.WriteFile(tw.cfg.LogsFile, []byte("logs/v0\nvkey nonsense\n"), 0o644)
	if err := tw.w.Reload(); err == nil {
		t.Fatal("broken list accepted")
	}
	tw.cosigned(b.checkpoint(8), tw.addCheckpoint(b.request(5, 8)))
	// a comes back, where it was.
	os.WriteFile(tw.cfg.LogsFile, []byte(logList(a, b)), 0o644)
	tw.w.Reload()
	if got := tw.addCheckpoint(a.request(0, 8)); got.code != 409 || got.body != "5\n" {
		t.Fatalf("a after coming back: %d %q", got.code, got.body)
	}
	var logs []LogInfo
	json.Unmarshal([]byte(tw.do("GET", "/logs", "").body), &logs)
	if len(logs) != 2 || logs[0].Size != 5 || logs[1].Size != 8 {
		t.Errorf("/logs: %+v", logs)
	}
}

func TestKeyRotation(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	newKey := newTestLog(t, "example.com/log")
	newKey.tree = l.tree
	tw := newTestWitness(t, logList(l, newKey), nil)
	tw.cosigned(l.checkpoint(5), tw.addCheckpoint(l.request(0, 5)))
	tw.cosigned(newKey.checkpoint(8), tw.addCheckpoint(newKey.request(5, 8)))
}

func TestOriginLineOtherThanKeyName(t *testing.T) {
	l := newTestLog(t, "example.com/key-name")
	tl := *l
	tl.origin = "example.com/origin"
	list := "logs/v0\nvkey " + l.vkey + "\norigin example.com/origin\nqpd 100\n"
	tw := newTestWitness(t, list, nil)
	tw.cosigned(tl.checkpoint(5), tw.addCheckpoint(tl.request(0, 5)))
	if got := tw.addCheckpoint(l.request(0, 5)); got.code != 404 {
		t.Errorf("the key's name as origin: %d", got.code)
	}
}

func TestBodyReadFailures(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	tw := newTestWitness(t, logList(l), nil)
	srv := httptest.NewServer(tw.h)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/add-checkpoint", "text/plain", io.MultiReader(strings.NewReader(l.request(0, 5))))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("over real HTTP: %d", resp.StatusCode)
	}
	if r := tw.do("GET", "/add-checkpoint", ""); r.code != 405 {
		t.Errorf("GET /add-checkpoint: %d", r.code)
	}
}

func TestProfilerOnlyOnTheAdminListener(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	tw := newTestWitness(t, logList(l), nil)
	if got := tw.do("GET", "/debug/pprof/", ""); got.code != 404 {
		t.Errorf("/debug/pprof/ on the API: %d, want 404", got.code)
	}
	rec := httptest.NewRecorder()
	tw.w.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "goroutine") {
		t.Errorf("/debug/pprof/ on the admin listener: %d", rec.Code)
	}
}

// TestAddAnswers503AtItsDeadline: a request that waits for its origin's lock
// past its context's deadline (the command's per-request deadline) gets a
// 503 with Retry-After, and nothing changes.
func TestAddAnswers503AtItsDeadline(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	tw := newTestWitness(t, logList(l), nil)
	tw.cosigned(l.checkpoint(5), tw.addCheckpoint(l.request(0, 5)))
	o := tw.w.state.entry(l.origin)
	if err := o.lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/add-checkpoint", strings.NewReader(l.request(5, 8)))
	rec := httptest.NewRecorder()
	start := time.Now()
	tw.h.ServeHTTP(rec, req)
	o.unlock()
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("got %d (Retry-After %q) %q, want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered after %v", d)
	}
	if rec := tw.w.state.lookup(l.origin); rec.Size != 5 {
		t.Errorf("size %d stored, want 5", rec.Size)
	}
}

// TestConcurrentForksNeverBothWin: many logs at once, so that their writes
// share transactions (group commit), each sent two sets of concurrent
// requests from the same cosigned size: one set for a checkpoint of the
// log, one for a conflicting checkpoint of the same size (a fork). Exactly
// one request per log is cosigned, every other is refused, and what is
// stored after a restart is what was cosigned.
func TestConcurrentForksNeverBothWin(t *testing.T) {
	const nLogs, perBranch = 24, 4
	logs := make([]*testLog, nLogs)
	forks := make([]*testLog, nLogs)
	for i := range logs {
		logs[i] = newTestLog(t, fmt.Sprintf("example.com/log%d", i))
		forks[i] = logs[i].fork(0)
		forks[i].tree = testonly.New(rfc6962.DefaultHasher)
		for j := uint64(0); j < 5; j++ {
			forks[i].tree.AppendData([]byte(fmt.Sprintf("main entry %d", j)))
		}
		forks[i].grow(15, "fork")
	}
	tw := newTestWitness(t, logList(logs...), func(c *Config) { c.GlobalQPS = -1 })
	var batched sync.Mutex
	maxBatch := 0
	tw.w.state.afterCommit = func(n int) { batched.Lock(); maxBatch = max(maxBatch, n); batched.Unlock() }
	for i, l := range logs {
		tw.cosigned(l.checkpoint(5), tw.addCheckpoint(l.request(0, 5)))
		if !bytes.Equal(l.tree.HashAt(5), forks[i].tree.HashAt(5)) || bytes.Equal(l.tree.HashAt(12), forks[i].tree.HashAt(12)) {
			t.Fatal("the fork does not share the first 5 entries only")
		}
	}
	type answer struct {
		log, branch int
		code        int
		body        string
	}
	answers := make(chan answer, nLogs*2*perBranch)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range logs {
		for b, tl := range []*testLog{logs[i], forks[i]} {
			for range perBranch {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					r := tw.addCheckpoint(tl.request(5, 12))
					answers <- answer{i, b, r.code, r.body}
				}()
			}
		}
	}
	close(start)
	wg.Wait()
	close(answers)
	won := make([]int, nLogs)
	winner := make([]int, nLogs)
	for a := range answers {
		switch a.code {
		case 200:
			won[a.log]++
			winner[a.log] = a.branch
		case 409:
		default:
			t.Errorf("log %d branch %d: %d %q", a.log, a.branch, a.code, a.body)
		}
	}
	for i, n := range won {
		if n != 1 {
			t.Errorf("log %d: %d requests cosigned, want exactly 1", i, n)
		}
	}
	t.Logf("the largest transaction carried %d writes", maxBatch)
	tw.restart()
	for i := range logs {
		want := []*testLog{logs[i], forks[i]}[winner[i]].tree.HashAt(12)
		if rec := tw.w.state.lookup(logs[i].origin); rec == nil || rec.Size != 12 || !bytes.Equal(rec.Root, want) {
			t.Errorf("log %d: after a restart the state is %+v, want size 12 and the cosigned root", i, rec)
		}
	}
}

// TestWriterGathersComingWrites: the writer holding a write waits for the
// write of a request that is past its checks (expect) and commits the two in
// one transaction; it stops waiting when such a request gives up; and with
// nothing coming it commits at once.
func TestWriterGathersComingWrites(t *testing.T) {
	l := newTestLog(t, "example.com/log")
	tw := newTestWitness(t, logList(l), nil)
	s := tw.w.state
	s.gather = time.Minute // only coming writes and retractions end the wait here
	batches := make(chan int, 10)
	s.afterCommit = func(n int) { batches <- n }
	noop := func(*sql.Tx) error { return nil }
	write := func(retract func()) chan error {
		c := make(chan error, 1)
		go func() { c <- s.commit(context.Background(), retract, noop) }()
		return c
	}
	quiet := func(what string) {
		t.Helper()
		select {
		case n := <-batches:
			t.Fatalf("%s: a transaction of %d committed while a write was coming", what, n)
		case <-time.After(100 * time.Millisecond):
		}
	}
	batch := func(what string, want int) {
		t.Helper()
		select {
		case n := <-batches:
			if n != want {
				t.Errorf("%s: a transaction of %d writes, want %d", what, n, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no commit", what)
		}
	}

	retract := s.expect()
	first := write(nil)
	quiet("one write coming")
	second := write(retract)
	batch("the coming write arrived", 2)
	if err := errors.Join(<-first, <-second); err != nil {
		t.Fatal(err)
	}

	giveUp := s.expect()
	third := write(nil)
	quiet("one write coming")
	giveUp()
	giveUp() // only the first call counts
	batch("the coming write was given up", 1)
	if err := <-third; err != nil {
		t.Fatal(err)
	}
	if n := s.coming.Load(); n != 0 {
		t.Errorf("%d writes still coming", n)
	}

	fourth := write(nil)
	batch("nothing coming", 1)
	if err := <-fourth; err != nil {
		t.Fatal(err)
	}
}
