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
	raw := tl.post("/add", "application/octet-stream", []byte("raw entry"), w...)
	if raw.status != 200 {
		t.Fatalf("/add: %d %s", raw.status, raw.body)
	}
	rawIndex := tl.size() - 1
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
		{"a raw /add entry", fmt.Sprintf(`{"index":%d,"reason":"x"}`, rawIndex), tl.admin, 409},
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

	// Nowhere under --data, while the log runs.
	if files := filesHolding(t, tl.dir, []byte(secret)); len(files) > 0 {
		t.Fatalf("the erased event's bytes are still in %v", files)
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
func (tl *testLog) waitReceipt(index uint64) *checkpoint.Receipt {
	tl.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := tl.get(fmt.Sprintf("/v1/receipt/%d", index))
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
