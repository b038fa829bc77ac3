package log

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// commitmentLog is a commitment log with a writer, a reader and an admin
// token.
type commitmentLog struct {
	*testLog
	writer, reader, admin string // the tokens
}

func newCommitmentLog(t *testing.T, mod func(*Config)) *commitmentLog {
	t.Helper()
	dir := t.TempDir()
	cl := &commitmentLog{writer: "tdm_writer_secret", reader: "tdm_reader_secret", admin: "tdm_admin_secret"}
	tokens := func(name, tok string) *Tokens {
		path := filepath.Join(dir, name+".tokens")
		writeFile(t, path, TokenLine(name, tok)+"\n")
		tt, err := LoadTokens(path)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	w, a := tokens("writer", cl.writer), tokens("admin", cl.admin)
	cl.testLog = newTestLog(t, func(c *Config) {
		c.Leaves = LeavesCommitment
		c.Tokens, c.AdminTokens = w, a
		if mod != nil {
			mod(c)
		}
	})
	return cl
}

func bearerHeader(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// erase posts to /v1/erase.
func (tl *testLog) erase(body string, token string) response {
	tl.t.Helper()
	var h []string
	if token != "" {
		h = bearerHeader(token)
	}
	return tl.post("/v1/erase", "application/json", []byte(body), h...)
}

// payloadRows counts the payload store's rows.
func (tl *testLog) payloadRows() int64 {
	tl.t.Helper()
	n, err := tl.s.payloads.count(context.Background())
	if err != nil {
		tl.t.Fatal(err)
	}
	return n
}

// filesHolding returns the files under dir whose bytes contain secret.
func filesHolding(t *testing.T, dir string, secret []byte) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a temporary file gone meanwhile
		}
		if err != nil {
			return err
		}
		if bytes.Contains(b, secret) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// An erasure removes one entry's event from everywhere under --data, and
// every refusal before it changes nothing. The tree does not change:
// receipts handed out before still verify.
func TestEraseRemovesOneEventAndKeepsEveryProof(t *testing.T) {
	tl := newCommitmentLog(t, nil)
	const secret = "pasted-by-mistake-8c41f2d09e"
	w := bearerHeader(tl.writer)
	for i := range 3 {
		tl.postEvent(fmt.Sprintf(`{"actor":"alice","action":"login","n":%d}`, i), w...)
	}
	// The event to erase, with a receipt (and its opening) taken at once.
	r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(`{"actor":"bob","action":"paste","note":"`+secret+`"}`), w...)
	var a witnessedAnswer
	if r.status != 200 || json.Unmarshal(r.body, &a) != nil || a.Receipt == nil {
		t.Fatalf("wait=witnessed: %d %s", r.status, r.body)
	}
	target := a.Index
	if a.Receipt.Opening == nil {
		t.Fatalf("the receipt of a commitment log's event has no opening: %s", r.body)
	}
	if !bytes.Contains(a.Receipt.Opening.Leaf, []byte(secret)) || bytes.Contains(a.Receipt.Leaf, []byte(secret)) {
		t.Fatalf("the leaf must hold a commitment and the opening the event:\nleaf %s\nopening %s", a.Receipt.Leaf, a.Receipt.Opening.Leaf)
	}
	p := tl.policy()
	if _, _, err := a.Receipt.Verify(p); err != nil {
		t.Fatalf("the receipt does not verify: %v", err)
	}
	old := a.Receipt
	tl.postEvent(`{"actor":"carol","action":"logout"}`, w...)
	// A commitment log takes no raw entry: it would sit in the public
	// bundles, never erasable.
	before := tl.size()
	if raw := tl.post("/add", "application/octet-stream", []byte("raw entry"), w...); raw.status != 409 {
		t.Fatalf("/add on a commitment log: %d %s, want 409", raw.status, raw.body)
	}
	if tl.size() != before {
		t.Fatal("a refused /add changed the log")
	}
	tl.waitIndexed()
	if got := tl.search("q=" + secret).indexes(); len(got) != 1 || got[0] != target {
		t.Fatalf("search for the secret before the erasure: %v, want [%d]", got, target)
	}
	for _, leaf := range tl.leaves() {
		if bytes.Contains(leaf, []byte(secret)) || bytes.Contains(leaf, []byte("alice")) {
			t.Fatalf("a leaf of a commitment log holds an event: %s", leaf)
		}
	}
	if len(filesHolding(t, tl.dir, []byte(secret))) == 0 {
		t.Fatal("the secret is nowhere under --data before the erasure: the test finds nothing")
	}
	// The search index keeps the secret's words, not the secret: its
	// unique word is what must go from search.db.
	const word = "8c41f2d09e"
	if files := filesHolding(t, tl.dir, []byte(word)); !containsSuffix(files, searchFile) && !containsSuffix(files, searchFile+"-wal") {
		t.Fatalf("the secret's word is not in the search index's files before the erasure (%v): the test finds nothing", files)
	}

	// Hostile and mistaken requests: each refused, nothing changed.
	size, rows := tl.size(), tl.payloadRows()
	for _, c := range []struct {
		name, body, token string
		status            int
	}{
		{"no token", `{"index":3,"reason":"x"}`, "", 401},
		{"a writer's token", `{"index":3,"reason":"x"}`, tl.writer, 401},
		{"an unknown token", `{"index":3,"reason":"x"}`, "tdm_guess", 401},
		{"no reason", `{"index":3}`, tl.admin, 400},
		{"an empty reason", `{"index":3,"reason":""}`, tl.admin, 400},
		{"an oversized reason", `{"index":3,"reason":"` + strings.Repeat("r", checkpoint.MaxErasureReason+1) + `"}`, tl.admin, 400},
		{"no index", `{"reason":"x"}`, tl.admin, 400},
		{"a negative index", `{"index":-1,"reason":"x"}`, tl.admin, 400},
		{"an unknown member", `{"index":3,"reason":"x","entries":[[0,5]]}`, tl.admin, 400},
		{"two objects", `{"index":3,"reason":"x"}{"index":0,"reason":"x"}`, tl.admin, 400},
		{"not JSON", `index=3`, tl.admin, 400},
		{"an index past the tree", fmt.Sprintf(`{"index":%d,"reason":"x"}`, size), tl.admin, 404},
		{"a huge index", `{"index":18446744073709551615,"reason":"x"}`, tl.admin, 404},
	} {
		if r := tl.erase(c.body, c.token); r.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.status, r.body, c.status)
		}
		if tl.size() != size || tl.payloadRows() != rows {
			t.Fatalf("%s: the refusal changed the log (size %d → %d, payloads %d → %d)", c.name, size, tl.size(), rows, tl.payloadRows())
		}
	}

	r = tl.erase(fmt.Sprintf(`{"index":%d,"reason":"a secret pasted into an event (ticket 123)"}`, target), tl.admin)
	var ans EraseAnswer
	if r.status != 200 || json.Unmarshal(r.body, &ans) != nil || ans.Index != target || ans.ErasureIndex != size {
		t.Fatalf("erase: %d %s, want index %d at erasure index %d", r.status, r.body, target, size)
	}
	leaves := tl.leaves()
	e, err := checkpoint.ParseErasureLeaf(leaves[ans.ErasureIndex])
	if err != nil || e.Source != "admin" || len(e.Entries) != 1 || e.Entries[0] != (checkpoint.IndexRange{From: target, To: target + 1}) || !strings.Contains(e.Reason, "ticket 123") {
		t.Fatalf("the erasure leaf %s: %+v %v", leaves[ans.ErasureIndex], e, err)
	}
	if tl.payloadRows() != rows-1 {
		t.Fatalf("payload rows %d after the erasure, want %d", tl.payloadRows(), rows-1)
	}
	// Again: erased already; the erasure leaf itself is no commitment.
	for _, idx := range []uint64{target, ans.ErasureIndex} {
		if r := tl.erase(fmt.Sprintf(`{"index":%d,"reason":"again"}`, idx), tl.admin); r.status != 409 {
			t.Errorf("erase %d again: %d %s, want 409", idx, r.status, r.body)
		}
	}
	if tl.size() != ans.ErasureIndex+1 {
		t.Fatalf("the refused erasures appended entries: size %d", tl.size())
	}

	// Nowhere under --data, while the log runs: neither the event nor its
	// words in the full-text index.
	for _, b := range []string{secret, word} {
		if files := filesHolding(t, tl.dir, []byte(b)); len(files) > 0 {
			t.Fatalf("the erased event's bytes %q are still in %v", b, files)
		}
	}
	// The tree did not change: the old receipt, opening and all, verifies.
	if _, _, err := old.Verify(p); err != nil {
		t.Fatalf("a receipt handed out before the erasure no longer verifies: %v", err)
	}
	// A new receipt of the erased entry has no opening, and verifies.
	rc := tl.waitReceipt(target)
	if rc.Opening != nil {
		t.Fatalf("the receipt of an erased entry carries an opening: %+v", rc.Opening)
	}
	if _, _, err := rc.Verify(p); err != nil || !bytes.Equal(rc.Leaf, old.Leaf) {
		t.Fatalf("the erased entry's receipt: %v (leaf %s, was %s)", err, rc.Leaf, old.Leaf)
	}
	// The others still open.
	if rc := tl.waitReceipt(0); rc.Opening == nil {
		t.Fatal("entry 0's receipt lost its opening")
	}
	tl.waitIndexed()
	if got := tl.search("q=" + secret).indexes(); len(got) != 0 {
		t.Fatalf("search still finds the erased event: %v", got)
	}
	if got := tl.search("actor=bob").indexes(); len(got) != 0 {
		t.Fatalf("search by the erased event's actor still finds it: %v", got)
	}
	if got := tl.search("actor=alice").indexes(); len(got) != 3 {
		t.Fatalf("search for the other events: %v", got)
	}
	lines := tl.payloadLines(0, tl.size())
	if len(lines) != 5 {
		t.Fatalf("/v1/payloads: %d lines, want one for each of the 5 commitment leaves: %+v", len(lines), lines)
	}
	for _, l := range lines {
		switch {
		case l.Index == target && (!l.Erased || l.Opening != nil):
			t.Errorf("/v1/payloads for the erased entry: %+v", l)
		case l.Index != target && l.Opening == nil:
			t.Errorf("/v1/payloads for entry %d: no opening", l.Index)
		}
	}

	// Nor after a clean stop.
	tl.close()
	if files := filesHolding(t, tl.dir, []byte(secret)); len(files) > 0 {
		t.Fatalf("after a stop, the erased event's bytes are in %v", files)
	}
}

// waitReceipt fetches the receipt of index once a checkpoint covers it.
func (tl *testLog) waitReceipt(index uint64, header ...string) *checkpoint.Receipt {
	tl.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := tl.get(fmt.Sprintf("/v1/receipt/%d", index), header...)
		if r.status == 200 {
			rc, err := checkpoint.ParseReceipt(r.body)
			if err != nil {
				tl.t.Fatalf("receipt %d: %v\n%s", index, err, r.body)
			}
			return &rc
		}
		if r.status != 503 || time.Now().After(deadline) {
			tl.t.Fatalf("GET /v1/receipt/%d: %d %s", index, r.status, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// payloadLines reads GET /v1/payloads.
func (tl *testLog) payloadLines(from, to uint64, header ...string) []PayloadLine {
	tl.t.Helper()
	r := tl.get(fmt.Sprintf("/v1/payloads?from=%d&to=%d", from, to), header...)
	if r.status != 200 {
		tl.t.Fatalf("GET /v1/payloads: %d %s", r.status, r.body)
	}
	var out []PayloadLine
	d := json.NewDecoder(bytes.NewReader(r.body))
	for d.More() {
		var l PayloadLine
		if err := d.Decode(&l); err != nil {
			tl.t.Fatalf("GET /v1/payloads: %v\n%s", err, r.body)
		}
		out = append(out, l)
	}
	return out
}

// Retention erases, in one logged erasure of source "retention", every
// entry older than the period, and nothing younger.
func TestRetentionErasesOldEntriesInBatches(t *testing.T) {
	tl := newCommitmentLog(t, func(c *Config) { c.Retention = time.Hour })
	w := bearerHeader(tl.writer)
	const secret = "old-address-203.0.113.77"
	for i := range 5 {
		tl.postEvent(fmt.Sprintf(`{"actor":"alice","n":%d,"ip":"%s"}`, i, secret), w...)
	}
	rc := tl.waitReceipt(2)
	tl.waitIndexed()
	ctx := context.Background()
	// Not old yet: nothing happens.
	if _, err := tl.s.retentionRound(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if tl.size() != 5 || tl.payloadRows() != 5 {
		t.Fatalf("a round before the period erased something: size %d, payloads %d", tl.size(), tl.payloadRows())
	}
	// Two hours later they are.
	later := time.Now().Add(2 * time.Hour)
	if _, err := tl.s.retentionRound(ctx, later); err != nil {
		t.Fatal(err)
	}
	leaves := tl.leaves()
	if len(leaves) != 6 {
		t.Fatalf("%d entries after a retention round, want 5 and its erasure leaf", len(leaves))
	}
	e, err := checkpoint.ParseErasureLeaf(leaves[5])
	if err != nil || e.Source != RetentionSource || len(e.Entries) != 1 || e.Entries[0] != (checkpoint.IndexRange{From: 0, To: 5}) || e.Reason != "retention: older than 1h0m0s" {
		t.Fatalf("retention's erasure leaf: %+v %v", e, err)
	}
	if tl.payloadRows() != 0 {
		t.Fatalf("%d payload rows left", tl.payloadRows())
	}
	if files := filesHolding(t, tl.dir, []byte(secret)); len(files) > 0 {
		t.Fatalf("the erased events' bytes are still in %v", files)
	}
	if _, _, err := rc.Verify(tl.policy()); err != nil {
		t.Fatalf("a receipt from before retention no longer verifies: %v", err)
	}
	// A young event after them is kept, and the next round appends nothing.
	tl.postEvent(`{"actor":"bob"}`, w...)
	if _, err := tl.s.retentionRound(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if tl.size() != 7 || tl.payloadRows() != 1 {
		t.Fatalf("a round with nothing old: size %d, payloads %d", tl.size(), tl.payloadRows())
	}
	// Old too, later: only the new entry is erased (the round before
	// moved the mark past the erasure leaf at 5).
	if _, err := tl.s.retentionRound(ctx, later); err != nil {
		t.Fatal(err)
	}
	leaves = tl.leaves()
	e, err = checkpoint.ParseErasureLeaf(leaves[len(leaves)-1])
	if err != nil || e.Entries[0] != (checkpoint.IndexRange{From: 6, To: 7}) || tl.payloadRows() != 0 {
		t.Fatalf("the second retention erasure: %+v %v, %d payloads left", e, err, tl.payloadRows())
	}
	tl.waitIndexed()
	if got := tl.search("actor=alice").indexes(); len(got) != 0 {
		t.Fatalf("search finds entries retention erased: %v", got)
	}
}

// A crash between an erasure leaf's append and the deletes leaves the
// erasure logged and not applied; the next start applies it before it
// answers anything.
func TestErasureInterruptedByACrashIsRepairedAtStart(t *testing.T) {
	tl := newCommitmentLog(t, nil)
	const secret = "crash-window-5e0b7a"
	tl.postEvent(`{"actor":"alice","note":"`+secret+`"}`, bearerHeader(tl.writer)...)
	tl.waitIndexed()
	tl.s.afterErasureAppend = func() error { return errors.New("the process dies here") }
	if r := tl.erase(`{"index":0,"reason":"crash test"}`, tl.admin); r.status != 500 {
		t.Fatalf("erase with the process dying after the append: %d %s, want 500", r.status, r.body)
	}
	if tl.size() != 2 || tl.payloadRows() != 1 {
		t.Fatalf("after the crash: size %d (want the erasure leaf logged), payloads %d (want still there)", tl.size(), tl.payloadRows())
	}
	tl.kill()
	tl.start()
	if tl.payloadRows() != 0 {
		t.Fatalf("the restarted log did not apply the logged erasure: %d payload rows", tl.payloadRows())
	}
	if files := filesHolding(t, tl.dir, []byte(secret)); len(files) > 0 {
		t.Fatalf("after the repair, the erased event's bytes are still in %v", files)
	}
	if got := tl.search("q=" + secret).indexes(); len(got) != 0 {
		t.Fatalf("search finds the erased event after the repair: %v", got)
	}
	if r := tl.erase(`{"index":0,"reason":"again"}`, tl.admin); r.status != 409 {
		t.Fatalf("erasing the repaired entry again: %d %s, want 409", r.status, r.body)
	}
	mark, err := tl.s.payloads.mark(context.Background(), markErasuresApplied)
	if err != nil || mark != 2 {
		t.Fatalf("the applied mark is %d (%v), want 2", mark, err)
	}
}

// A log keeps the leaf mode it was created with; a log from before the
// record is an event log.
func TestLeafModeIsKeptForLife(t *testing.T) {
	tl := newTestLog(t, nil)
	tl.postEvent(`{"a":1}`)
	tl.close()
	tl.cfg.Leaves = LeavesCommitment
	if _, err := New(context.Background(), tl.cfg); err == nil || !strings.Contains(err.Error(), "--leaves event") {
		t.Fatalf("an event log started with --leaves commitment: %v, want a refusal naming --leaves event", err)
	}
	// Without the record (a log from before it), a log with entries is an
	// event log.
	if err := os.Remove(filepath.Join(tl.dir, stateDir, leavesFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), tl.cfg); err == nil || !strings.Contains(err.Error(), "--leaves event") {
		t.Fatalf("a log from before the record started with --leaves commitment: %v", err)
	}
	tl.cfg.Leaves = ""
	tl.start()
	tl.postEvent(`{"a":2}`)
	tl.close()

	cl := newCommitmentLog(t, nil)
	cl.close()
	cl.cfg.Leaves = LeavesEvent
	if _, err := New(context.Background(), cl.cfg); err == nil || !strings.Contains(err.Error(), "--leaves commitment") {
		t.Fatalf("a commitment log started with --leaves event: %v", err)
	}
	for _, c := range []Config{
		{Leaves: "hash"},
		{Leaves: LeavesEvent, Retention: time.Hour},
		{Leaves: LeavesCommitment, Retention: -time.Second},
	} {
		if err := c.checkErasure(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// A duplicate gets the original's salt, and with wait=witnessed the
// original's opening; events that differ get their own.
func TestCommitmentDuplicatesAnswerTheOriginalOpening(t *testing.T) {
	tl := newCommitmentLog(t, nil)
	w := append(bearerHeader(tl.writer), "Idempotency-Key", "k-1")
	first := tl.postEvent(`{"action":"deploy"}`, w...)
	if len(first.Salt) != checkpoint.SaltSize {
		t.Fatalf("the answer has no salt: %+v", first)
	}
	again := tl.postEvent(`{"action":"deploy"}`, w...)
	if !again.Duplicate || again.Index != first.Index || !bytes.Equal(again.Salt, first.Salt) {
		t.Fatalf("the duplicate: %+v, want index %d with the original salt", again, first.Index)
	}
	r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(`{"action":"deploy"}`), w...)
	var a witnessedAnswer
	if r.status != 200 || json.Unmarshal(r.body, &a) != nil || a.Receipt == nil || a.Receipt.Opening == nil {
		t.Fatalf("wait=witnessed duplicate: %d %s", r.status, r.body)
	}
	if !bytes.Equal(a.Receipt.Opening.Salt, first.Salt) {
		t.Fatal("the duplicate's receipt opens with another salt")
	}
	if _, _, err := a.Receipt.Verify(tl.policy()); err != nil {
		t.Fatal(err)
	}
	// The same event under another key is a new entry with its own salt.
	other := tl.postEvent(`{"action":"deploy"}`, append(bearerHeader(tl.writer), "Idempotency-Key", "k-2")...)
	if other.Duplicate || bytes.Equal(other.Salt, first.Salt) {
		t.Fatalf("a new event shares the salt: %+v", other)
	}
	if r := tl.post("/v1/events", "application/json", []byte(`{"action":"other"}`), w...); r.status != 422 {
		t.Fatalf("another event under a used key: %d %s, want 422", r.status, r.body)
	}
}

// With --read-tokens, receipts are public in a commitment log (the leaf
// holds no event), and only a reader gets the opening; payloads need a
// read token.
func TestCommitmentOpeningsNeedAReadToken(t *testing.T) {
	var reader string
	tl := newCommitmentLog(t, func(c *Config) {
		path := filepath.Join(t.TempDir(), "readers")
		reader = "tdm_reader_secret"
		writeFile(t, path, TokenLine("reader", reader)+"\n")
		rt, err := LoadTokens(path)
		if err != nil {
			t.Fatal(err)
		}
		c.ReadTokens = rt
	})
	r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(`{"actor":"alice"}`), bearerHeader(tl.writer)...)
	var a witnessedAnswer
	if r.status != 200 || json.Unmarshal(r.body, &a) != nil || a.Receipt == nil {
		t.Fatalf("wait=witnessed: %d %s", r.status, r.body)
	}
	if a.Receipt.Opening != nil || bytes.Contains(r.body, []byte("alice")) {
		t.Fatalf("a writer without a read token got the opening: %s", r.body)
	}
	if rc := tl.waitReceipt(0); rc.Opening != nil {
		t.Fatal("an anonymous receipt carries the opening")
	}
	r = tl.get("/v1/receipt/0", bearerHeader(reader)...)
	rc, err := checkpoint.ParseReceipt(r.body)
	if r.status != 200 || err != nil || rc.Opening == nil {
		t.Fatalf("a reader's receipt: %d %s", r.status, r.body)
	}
	// The entry bundles hold no content: they stay public under
	// --read-tokens, so anyone can check the tree (Tessera's fsck too).
	if r := tl.get("/tile/entries/000.p/1"); r.status != 200 || bytes.Contains(r.body, []byte("alice")) {
		t.Fatalf("a commitment log's entry bundle without a read token: %d %q", r.status, r.body)
	}
	if r := tl.get("/v1/payloads?from=0&to=1"); r.status != 401 {
		t.Fatalf("payloads without a read token: %d %s", r.status, r.body)
	}
	if l := tl.payloadLines(0, 1, bearerHeader(reader)...); len(l) != 1 || l[0].Opening == nil {
		t.Fatalf("payloads with a read token: %+v", l)
	}
	if r := tl.erase(`{"index":0,"reason":"x"}`, reader); r.status != 401 {
		t.Fatalf("a reader's token erases: %d %s", r.status, r.body)
	}
}

// /v1/payloads refuses ranges that are empty, too large or past the tree.
func TestPayloadsRefusesBadRanges(t *testing.T) {
	tl := newCommitmentLog(t, nil)
	tl.postEvent(`{"a":1}`, bearerHeader(tl.writer)...)
	for _, q := range []string{"", "from=0", "from=1&to=1", "from=1&to=0", "from=0&to=2", "from=0&to=1025", "from=00&to=1", "from=-1&to=1", "from=0&to=18446744073709551616"} {
		if r := tl.get("/v1/payloads?" + q); r.status != 400 {
			t.Errorf("?%s: %d %s, want 400", q, r.status, r.body)
		}
	}
}

// A payload row changed in the store is caught: receipts are not made
// from it, and the metric counts it; /v1/payloads serves it as it is, for
// the auditor to report.
func TestChangedPayloadIsRefused(t *testing.T) {
	tl := newCommitmentLog(t, nil)
	tl.postEvent(`{"actor":"alice"}`, bearerHeader(tl.writer)...)
	if _, err := tl.s.payloads.db.Exec(`UPDATE tidemark_payloads SET leaf = replace(leaf, 'alice', 'mallory')`); err != nil {
		t.Fatal(err)
	}
	// Served to auditors as it is, for them to catch.
	if l := tl.payloadLines(0, 1); len(l) != 1 || l[0].Opening == nil || !bytes.Contains(l[0].Opening.Leaf, []byte("mallory")) {
		t.Fatalf("payloads of a changed row: %+v", l)
	}
	if r := tl.get("/v1/receipt/0"); r.status == 200 {
		// A receipt waits for a witnessed checkpoint first: 503 then 500.
		t.Fatalf("a receipt from a changed row: %d %s", r.status, r.body)
	}
	// Search goes on without it; the metric counts every read of it.
	tl.postEvent(`{"actor":"bob"}`, bearerHeader(tl.writer)...)
	tl.waitIndexed()
	if got := tl.search("actor=mallory").indexes(); len(got) != 0 {
		t.Fatalf("search answers from a changed row: %v", got)
	}
	if got := tl.search("actor=bob").indexes(); len(got) != 1 {
		t.Fatalf("search after a changed row: %v", got)
	}
	if m := tl.get("/metrics"); !bytes.Contains(m.body, []byte("\ntidemark_log_payload_mismatch_total ")) || bytes.Contains(m.body, []byte("\ntidemark_log_payload_mismatch_total 0\n")) {
		t.Fatal("tidemark_log_payload_mismatch_total did not count the changed row")
	}
	// An admin can still erase it.
	if r := tl.erase(`{"index":0,"reason":"changed"}`, tl.admin); r.status != 200 {
		t.Fatalf("erasing a changed row: %d %s", r.status, r.body)
	}
}

// A POSIX commitment log rebuilds its idempotency index from the log
// after a crash by opening the commitment leaves: a retry after the
// restart is still answered with the first index and salt.
func TestCommitmentLogKeepsKeysAcrossACrash(t *testing.T) {
	tl := newCommitmentLog(t, nil)
	h := append(bearerHeader(tl.writer), "Idempotency-Key", "retry-me")
	first := tl.postEvent(`{"action":"deploy","id":"d-1"}`, h...)
	tl.postEvent(`{"action":"other","id":"o-1"}`, bearerHeader(tl.writer)...)
	tl.kill() // no watermark saved: the restart scans the log
	tl.start()
	again := tl.postEvent(`{"action":"deploy","id":"d-1"}`, h...)
	if !again.Duplicate || again.Index != first.Index || !bytes.Equal(again.Salt, first.Salt) {
		t.Fatalf("a retry after a crash: %+v, want a duplicate of %+v", again, first)
	}
	byID := tl.postEvent(`{"action":"other","id":"o-1"}`, bearerHeader(tl.writer)...)
	if !byID.Duplicate || byID.Index != 1 {
		t.Fatalf("an event with the id of one logged before the crash: %+v", byID)
	}
	if tl.size() != 2 {
		t.Fatalf("the retries appended: size %d", tl.size())
	}
}

// Only the server writes commitment and erasure leaves: /add refuses
// bodies that look like them, so nobody can forge an erasure.
func TestAddRefusesCommitmentAndErasureLeaves(t *testing.T) {
	// An event log, whose /add takes raw entries (a commitment log takes
	// none): an auditor must never find a forged erasure in it.
	tl := newCommitmentLog(t, func(c *Config) { c.Leaves = LeavesEvent })
	w := bearerHeader(tl.writer)
	for _, body := range []string{
		`{"commitment":"` + strings.Repeat("ab", 32) + `","received":"2026-01-01T00:00:00Z","source":"x","v":2}`,
		`{"erasure":{"entries":[[0,1]],"reason":"forged"},"received":"2026-01-01T00:00:00Z","source":"admin","v":2}`,
	} {
		if r := tl.post("/add", "application/octet-stream", []byte(body), w...); r.status != 400 {
			t.Errorf("/add %s: %d %s, want 400", body, r.status, r.body)
		}
	}
	if tl.size() != 0 {
		t.Fatalf("/add appended %d forged leaves", tl.size())
	}
}

// A payload row whose leaf was never appended (a crash between the two)
// holds an event nobody logged: retention deletes it once it is older
// than the period by orphanMargin, and leaves the young ones.
func TestRetentionDeletesOrphanPayloads(t *testing.T) {
	tl := newCommitmentLog(t, func(c *Config) { c.Retention = time.Hour })
	ctx := context.Background()
	old := time.Now().Add(-3 * time.Hour)
	const secret = "orphan-never-logged-9a7e"
	orphan := payload{key: payloadKey{receivedNS: old.UnixNano(), commitment: [32]byte{1}}, salt: make([]byte, 32), leaf: []byte(`{"event":{"note":"` + secret + `"}}`)}
	if err := tl.s.payloads.put(ctx, []payload{orphan}); err != nil {
		t.Fatal(err)
	}
	tl.postEvent(`{"actor":"alice"}`, bearerHeader(tl.writer)...)
	if _, err := tl.s.retentionRound(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := tl.payloadRows(); n != 1 {
		t.Fatalf("%d payload rows after retention, want the young event's only", n)
	}
	if files := filesHolding(t, tl.dir, []byte(secret)); len(files) > 0 {
		t.Fatalf("the orphan's bytes are still in %v", files)
	}
	if tl.size() != 1 {
		t.Fatalf("deleting an orphan appended an erasure: size %d", tl.size())
	}
}

// The indexer of a commitment log asks, after each commit, which entries
// it read lost their payloads meanwhile: an erasure between its read and
// its commit would otherwise leave their rows in the index.
func TestSearchSourceReportsPayloadsErasedAfterTheRead(t *testing.T) {
	tl := newCommitmentLog(t, func(c *Config) { c.NoSearch = true })
	for i := range 3 {
		tl.postEvent(fmt.Sprintf(`{"n":%d}`, i), bearerHeader(tl.writer)...)
	}
	ctx := context.Background()
	src := &openedSearchSource{s: tl.s, keys: map[uint64]payloadKey{}}
	b, err := src.Bundle(ctx, 0, 3)
	if err != nil || !bytes.Contains(b, []byte(`{"event":{"n":1}`)) {
		t.Fatalf("the opened bundle (%v): %q", err, b)
	}
	// Entry 1's payload goes after the read, as an erasure would.
	c, err := checkpoint.ParseCommitmentLeaf(tl.leaves()[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tl.s.payloads.delete(ctx, []payloadKey{payloadKeyOf(c)}); err != nil {
		t.Fatal(err)
	}
	gone, err := src.Vanished(ctx, []uint64{0, 1, 2})
	if err != nil || len(gone) != 1 || gone[0] != 1 {
		t.Fatalf("Vanished: %v %v, want [1]", gone, err)
	}
	// Entries it did not read are looked up from the log.
	gone, err = src.Vanished(ctx, []uint64{1, 2})
	if err != nil || len(gone) != 1 || gone[0] != 1 {
		t.Fatalf("Vanished without the read: %v %v, want [1]", gone, err)
	}
}

// Concurrent writers to a commitment log share group commits of the
// payload store, and every entry opens to its own event.
func TestConcurrentWritesToACommitmentLogEachOpen(t *testing.T) {
	tl := newCommitmentLog(t, nil)
	const writers, batches, perBatch = 6, 5, 40
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for b := range batches {
				var body bytes.Buffer
				for i := range perBatch {
					fmt.Fprintf(&body, "{\"w\":%d,\"b\":%d,\"i\":%d}\n", w, b, i)
				}
				r := tl.post("/v1/events", "application/x-ndjson", body.Bytes(), bearerHeader(tl.writer)...)
				if r.status != 200 {
					errs <- fmt.Errorf("writer %d: %d %s", w, r.status, r.body)
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	const n = writers * batches * perBatch
	if tl.size() != n || tl.payloadRows() != n {
		t.Fatalf("size %d, payload rows %d, want %d each", tl.size(), tl.payloadRows(), n)
	}
	seen := map[string]bool{}
	for from := uint64(0); from < n; from += maxPayloadsRange {
		for _, l := range tl.payloadLines(from, min(from+maxPayloadsRange, n)) {
			if l.Opening == nil {
				t.Fatalf("entry %d has no opening", l.Index)
			}
			leaf, err := checkpoint.ParseLeaf(l.Opening.Leaf)
			if err != nil || seen[string(leaf.Event)] {
				t.Fatalf("entry %d opens to %s (%v), seen before: %v", l.Index, l.Opening.Leaf, err, seen[string(leaf.Event)])
			}
			seen[string(leaf.Event)] = true
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct events open, want %d", len(seen), n)
	}
}

// containsSuffix says whether a path in paths ends with suffix.
func containsSuffix(paths []string, suffix string) bool {
	for _, p := range paths {
		if strings.HasSuffix(p, string(filepath.Separator)+suffix) {
			return true
		}
	}
	return false
}

// Migration copies tiles, not the payload store: a commitment log is
// refused rather than moved without its events.
func TestMigrateRefusesACommitmentLog(t *testing.T) {
	tl := newCommitmentLog(t, nil)
	tl.postEvent(`{"a":1}`, bearerHeader(tl.writer)...)
	tl.close()
	_, err := Migrate(context.Background(), MigrateConfig{From: tl.dir, MySQL: "nobody@tcp(127.0.0.1:1)/none"})
	if err == nil || !strings.Contains(err.Error(), "commitment log") {
		t.Fatalf("Migrate of a commitment log: %v", err)
	}
}
