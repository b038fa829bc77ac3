package log

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
)

// testLog is a log server on a temporary directory behind httptest.
type testLog struct {
	t   *testing.T
	dir string
	cfg Config
	s   *Server
	hs  *httptest.Server
}

func newTestLog(t *testing.T, mod func(*Config)) *testLog {
	t.Helper()
	dir := t.TempDir()
	keys, _, err := LoadKeys(dir, nil, "test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Dir: dir, Keys: keys, BatchAge: 5 * time.Millisecond, CheckpointInterval: 100 * time.Millisecond, RepublishInterval: time.Second}
	if mod != nil {
		mod(&cfg)
	}
	tl := &testLog{t: t, dir: dir, cfg: cfg}
	tl.start()
	t.Cleanup(func() {
		if tl.s != nil {
			tl.close()
		}
	})
	return tl
}

func (tl *testLog) start() {
	tl.t.Helper()
	s, err := New(context.Background(), tl.cfg)
	if err != nil {
		tl.t.Fatalf("New: %v", err)
	}
	tl.s = s
	tl.hs = httptest.NewServer(s.Handler(true))
}

// close stops the log gracefully.
func (tl *testLog) close() {
	tl.t.Helper()
	tl.hs.Close()
	if err := tl.s.Close(context.Background()); err != nil {
		tl.t.Errorf("Close: %v", err)
	}
	tl.s = nil
}

// kill stops the log as a crash would, after whatever Tessera has already
// made durable: no watermark saved, nothing flushed by the server.
func (tl *testLog) kill() {
	tl.hs.Close()
	tl.s.cancel()
	<-tl.s.done
	if tl.s.indexReady.Load() {
		tl.s.idempotency.crash() // a dead process commits nothing more
	}
	tl.s = nil
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (tl *testLog) post(path, contentType string, body []byte, header ...string) response {
	tl.t.Helper()
	req, err := http.NewRequest(http.MethodPost, tl.hs.URL+path, bytes.NewReader(body))
	if err != nil {
		tl.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return tl.do(req)
}

func (tl *testLog) get(path string, header ...string) response {
	tl.t.Helper()
	req, err := http.NewRequest(http.MethodGet, tl.hs.URL+path, nil)
	if err != nil {
		tl.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return tl.do(req)
}

func (tl *testLog) do(req *http.Request) response {
	tl.t.Helper()
	resp, err := http.DefaultTransport.RoundTrip(req) // no transparent gzip
	if err != nil {
		tl.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tl.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// postEvent posts one JSON event and returns its index.
func (tl *testLog) postEvent(event string, header ...string) eventResult {
	tl.t.Helper()
	r := tl.post("/v1/events", "application/json", []byte(event), header...)
	if r.status != http.StatusOK {
		tl.t.Fatalf("POST /v1/events %s: %d %s", event, r.status, r.body)
	}
	var res eventResult
	if err := json.Unmarshal(r.body, &res); err != nil {
		tl.t.Fatal(err)
	}
	return res
}

func (tl *testLog) size() uint64 {
	tl.t.Helper()
	n, err := tl.s.integratedSize()
	if err != nil {
		tl.t.Fatal(err)
	}
	return n
}

// leaves reads every entry of the integrated tree from the data directory.
func (tl *testLog) leaves() [][]byte {
	tl.t.Helper()
	size := tl.size()
	var out [][]byte
	for i := uint64(0); i*layout.EntryBundleWidth < size; i++ {
		raw, err := tl.s.reader.ReadEntryBundle(context.Background(), i, layout.PartialTileSize(0, i, size))
		if err != nil {
			tl.t.Fatal(err)
		}
		var b api.EntryBundle
		if err := b.UnmarshalText(raw); err != nil {
			tl.t.Fatal(err)
		}
		out = append(out, b.Entries...)
	}
	return out[:size]
}

func TestEventsAreWrappedInCanonicalLeaves(t *testing.T) {
	tl := newTestLog(t, nil)
	before := time.Now()
	res := tl.postEvent(` {"id":"e1", "action":"secret.read", "resource":"prod/db/users", "n": 1.50 } `)
	if res.Index != 0 || res.Duplicate {
		t.Fatalf("first event: %+v, want index 0", res)
	}
	r := tl.post("/v1/events", "application/x-ndjson", []byte("{\"b\":2}\n\n{\"a\":1}\n"))
	if r.status != 200 || string(bytes.TrimSpace(r.body)) != `{"results":[{"index":1},{"index":2}]}` {
		t.Fatalf("NDJSON: %d %s", r.status, r.body)
	}
	leaves := tl.leaves()
	if len(leaves) != 3 {
		t.Fatalf("log has %d leaves, want 3", len(leaves))
	}
	l, err := checkpoint.ParseLeaf(leaves[0])
	if err != nil {
		t.Fatalf("leaf 0 is not a canonical leaf: %v\n%s", err, leaves[0])
	}
	if got, want := string(l.Event), `{"action":"secret.read","id":"e1","n":1.5,"resource":"prod/db/users"}`; got != want {
		t.Errorf("event = %s, want %s", got, want)
	}
	if l.Source != OpenSource {
		t.Errorf("source = %q, want %q", l.Source, OpenSource)
	}
	if l.Received.Before(before.Add(-time.Second)) || l.Received.After(time.Now()) {
		t.Errorf("received = %v, not the server's time of receipt", l.Received)
	}
	var last time.Time
	for i, b := range leaves {
		l, err := checkpoint.ParseLeaf(b)
		if err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		if !l.Received.After(last) {
			t.Errorf("leaf %d received %v is not after the previous %v", i, l.Received, last)
		}
		last = l.Received
	}
}

func TestIdenticalEventsAreTwoEntries(t *testing.T) {
	tl := newTestLog(t, nil)
	r := tl.post("/v1/events", "application/x-ndjson", []byte("{\"a\":1}\n{\"a\":1}\n"))
	if r.status != 200 || string(bytes.TrimSpace(r.body)) != `{"results":[{"index":0},{"index":1}]}` {
		t.Fatalf("two identical events without ids: %d %s", r.status, r.body)
	}
}

func TestBadRequestsAppendNothing(t *testing.T) {
	tl := newTestLog(t, func(c *Config) { c.MaxBody = 100_000 })
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	big := `{"x":"` + strings.Repeat("a", 70_000) + `"}`
	for _, tc := range []struct {
		name, ctype string
		body        []byte
		header      []string
		status      int
		want        string
	}{
		{"no content type", "", []byte(`{}`), nil, 415, "Content-Type"},
		{"text/plain", "text/plain", []byte(`{}`), nil, 415, "application/json"},
		{"not JSON", "application/json", []byte(`{"a":`), nil, 400, "I-JSON"},
		{"duplicate names", "application/json", []byte(`{"a":1,"a":2}`), nil, 400, "duplicate member name"},
		{"inexact number", "application/json", []byte(`{"a":9007199254740993}`), nil, 400, "exactly"},
		{"lone surrogate", "application/json", []byte(`{"a":"\ud800"}`), nil, 400, "surrogate"},
		{"not an object", "application/json", []byte(`[1]`), nil, 400, "object"},
		{"empty NDJSON", "application/x-ndjson", []byte("\n\n"), nil, 400, "no events"},
		{"one bad line spoils the batch", "application/x-ndjson", []byte("{\"a\":1}\n{\"b\":2}\n{oops}\n"), nil, 400, "line 3"},
		{"body over the limit", "application/json", []byte(`{"x":"` + strings.Repeat("a", 100_001) + `"}`), nil, 413, "at most 100000"},
		{"gzip past the limit", "application/json", gz([]byte(`{"x":"` + strings.Repeat("a", 200_000) + `"}`)), []string{"Content-Encoding", "gzip"}, 413, "after decompression"},
		{"bad gzip", "application/json", []byte("not gzip at all"), []string{"Content-Encoding", "gzip"}, 400, "gzip"},
		{"unknown encoding", "application/json", []byte(`{}`), []string{"Content-Encoding", "br"}, 415, "Content-Encoding"},
		{"leaf too large", "application/json", []byte(big), nil, 413, "room for 6"},
		{"key too long", "application/json", []byte(`{}`), []string{"Idempotency-Key", strings.Repeat("k", 256)}, 400, "Idempotency-Key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tl.post("/v1/events", tc.ctype, tc.body, tc.header...)
			if r.status != tc.status {
				t.Errorf("status %d, want %d (%s)", r.status, tc.status, r.body)
			}
			var e struct{ Error string }
			if err := json.Unmarshal(r.body, &e); err != nil || !strings.Contains(e.Error, tc.want) {
				t.Errorf("body %s: want a JSON error mentioning %q", r.body, tc.want)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	// Gzip within the limit is fine.
	if r := tl.post("/v1/events", "application/json", gz([]byte(`{"zipped":true}`)), "Content-Encoding", "gzip"); r.status != 200 {
		t.Errorf("gzip event: %d %s", r.status, r.body)
	}
	if n := tl.size(); n != 1 {
		t.Errorf("tree size %d after refused requests and one good one, want 1", n)
	}
	m := tl.get("/metrics")
	if !bytes.Contains(m.body, []byte(`tidemark_log_rejected_total{cause="bad_json"}`)) {
		t.Errorf("rejections are not counted by cause in /metrics")
	}
}

func TestIdempotency(t *testing.T) {
	tl := newTestLog(t, nil)
	a := tl.postEvent(`{"action":"x"}`, "Idempotency-Key", "key-1")
	b := tl.postEvent(` {"action": "x"}`, "Idempotency-Key", "key-1")
	if b.Index != a.Index || !b.Duplicate {
		t.Errorf("same Idempotency-Key, same event: %+v then %+v, want the first index back", a, b)
	}
	c := tl.postEvent(`{"id":"evt-9","action":"y"}`)
	d := tl.postEvent(`{"id":"evt-9","action":"y"}`)
	if d.Index != c.Index || !d.Duplicate {
		t.Errorf("same event id: %+v then %+v, want the first index back", c, d)
	}
	// A batch retried with the same key gets the same indexes back.
	batch := []byte("{\"n\":1}\n{\"n\":2}\n{\"id\":\"evt-9\"}\n")
	r1 := tl.post("/v1/events", "application/x-ndjson", batch, "Idempotency-Key", "batch-7")
	r2 := tl.post("/v1/events", "application/x-ndjson", batch, "Idempotency-Key", "batch-7")
	var b1, b2 struct{ Results []eventResult }
	json.Unmarshal(r1.body, &b1)
	json.Unmarshal(r2.body, &b2)
	if len(b1.Results) != 3 || len(b2.Results) != 3 {
		t.Fatalf("batch answers %s / %s", r1.body, r2.body)
	}
	for i := range b1.Results {
		if b1.Results[i].Index != b2.Results[i].Index || !b2.Results[i].Duplicate {
			t.Errorf("batch retry event %d: %+v then %+v", i, b1.Results[i], b2.Results[i])
		}
	}
	// The same id twice in one request is one entry.
	r := tl.post("/v1/events", "application/x-ndjson", []byte("{\"id\":\"twice\"}\n{\"id\":\"twice\"}\n"))
	var tw struct{ Results []eventResult }
	json.Unmarshal(r.body, &tw)
	if len(tw.Results) != 2 || tw.Results[0].Index != tw.Results[1].Index || !tw.Results[1].Duplicate {
		t.Errorf("same id twice in a batch: %s", r.body)
	}
	if n := tl.size(); n != 2+3+1 {
		t.Errorf("tree size %d, want 6", n)
	}
	// Keys are per source: the leaf records the header key.
	leaves := tl.leaves()
	l, _ := checkpoint.ParseLeaf(leaves[a.Index])
	if l.IdempotencyKey != "key-1" {
		t.Errorf("leaf idempotency_key = %q", l.IdempotencyKey)
	}
	l, _ = checkpoint.ParseLeaf(leaves[b1.Results[1].Index])
	if l.IdempotencyKey != "batch-7/1" {
		t.Errorf("batch leaf idempotency_key = %q, want batch-7/1", l.IdempotencyKey)
	}
}

func TestConcurrentRetriesMakeOneEntry(t *testing.T) {
	tl := newTestLog(t, nil)
	var wg sync.WaitGroup
	results := make([]eventResult, 20)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = tl.postEvent(`{"action":"deploy"}`, "Idempotency-Key", "same")
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.Index != results[0].Index {
			t.Fatalf("concurrent requests with one key got different indexes: %+v", results)
		}
	}
	if n := tl.size(); n != 1 {
		t.Errorf("tree size %d, want 1", n)
	}
}

func TestIdempotencySurvivesRestart(t *testing.T) {
	tl := newTestLog(t, nil)
	a := tl.postEvent(`{"id":"r1"}`)
	tl.close()
	tl.start()
	b := tl.postEvent(`{"id":"r1"}`)
	if b.Index != a.Index || !b.Duplicate {
		t.Errorf("after a restart: %+v, want index %d again", b, a.Index)
	}
}

// TestCrashBetweenAppendAndAnswer covers the window where the entry is in
// the log but the process dies before its index row is written and before
// the client hears back: the client's retry must get the same index.
func TestCrashBetweenAppendAndAnswer(t *testing.T) {
	tl := newTestLog(t, nil)
	tl.postEvent(`{"id":"before"}`)
	tl.s.afterAppend = func() error { return fmt.Errorf("simulated crash") }
	r := tl.post("/v1/events", "application/x-ndjson", []byte("{\"id\":\"lost-1\"}\n{\"n\":2}\n"), "Idempotency-Key", "k")
	if r.status != http.StatusInternalServerError {
		t.Fatalf("crashed request answered %d %s", r.status, r.body)
	}
	r = tl.post("/v1/events", "application/json", []byte(`{"id":"lost-2"}`))
	if r.status != http.StatusInternalServerError {
		t.Fatalf("crashed request answered %d %s", r.status, r.body)
	}
	if n := tl.size(); n != 4 {
		t.Fatalf("tree size %d, want 4: the entries are in the log", n)
	}
	tl.kill()
	tl.start()
	r = tl.post("/v1/events", "application/x-ndjson", []byte("{\"id\":\"lost-1\"}\n{\"n\":2}\n"), "Idempotency-Key", "k")
	if string(bytes.TrimSpace(r.body)) != `{"results":[{"index":1,"duplicate":true},{"index":2,"duplicate":true}]}` {
		t.Errorf("retry of the batch: %d %s", r.status, r.body)
	}
	if res := tl.postEvent(`{"id":"lost-2"}`); res.Index != 3 || !res.Duplicate {
		t.Errorf("retry of the event: %+v, want index 3", res)
	}
	if res := tl.postEvent(`{"id":"before"}`); res.Index != 0 || !res.Duplicate {
		t.Errorf("event before the crash: %+v, want index 0", res)
	}
	if n := tl.size(); n != 4 {
		t.Errorf("tree size %d after retries, want still 4", n)
	}
}

func TestTokens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	os.WriteFile(path, []byte("# writers\n"+TokenLine("deploy-bot", "s3cret")+"\n"), 0o600)
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	tl := newTestLog(t, func(c *Config) { c.Tokens = tokens })
	if r := tl.post("/v1/events", "application/json", []byte(`{}`)); r.status != 401 {
		t.Errorf("no token: %d", r.status)
	}
	if r := tl.post("/v1/events", "application/json", []byte(`{}`), "Authorization", "Bearer wrong"); r.status != 403 {
		t.Errorf("wrong token: %d", r.status)
	}
	if r := tl.post("/add", "", []byte(`raw`)); r.status != 401 {
		t.Errorf("/add without a token: %d", r.status)
	}
	res := tl.postEvent(`{"a":1}`, "Authorization", "Bearer s3cret")
	l, err := checkpoint.ParseLeaf(tl.leaves()[res.Index])
	if err != nil || l.Source != "deploy-bot" {
		t.Errorf("source %q (%v), want deploy-bot", l.Source, err)
	}
	// Reload picks up a new token; the old one stops working.
	os.WriteFile(path, []byte(TokenLine("ci", "other")+"\n"), 0o600)
	if err := tokens.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := tl.post("/v1/events", "application/json", []byte(`{}`), "Authorization", "Bearer s3cret"); r.status != 403 {
		t.Errorf("revoked token: %d", r.status)
	}
	tl.postEvent(`{}`, "Authorization", "Bearer other")
	// A broken file keeps the tokens in force.
	os.WriteFile(path, []byte("garbage\n"), 0o600)
	if err := tokens.Reload(); err == nil {
		t.Error("Reload accepted a broken file")
	}
	tl.postEvent(`{}`, "Authorization", "Bearer other")
}

func TestTilesAndReadTokens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "read-tokens")
	os.WriteFile(path, []byte(TokenLine("auditor", "r3ad")+"\n"), 0o600)
	readTokens, _ := LoadTokens(path)
	tl := newTestLog(t, func(c *Config) { c.ReadTokens = readTokens })
	for i := 0; i < 3; i++ {
		tl.postEvent(`{"i":1}`)
	}
	waitForCheckpoint(t, tl, 3)
	cp := tl.get("/checkpoint")
	if cp.status != 200 || cp.header.Get("Content-Type") != "text/plain; charset=utf-8" || cp.header.Get("Cache-Control") != "no-cache" {
		t.Errorf("/checkpoint: %d %v", cp.status, cp.header)
	}
	if _, _, err := checkpoint.Open(cp.body, mustVerifier(t, tl.cfg.Keys.VKeys[0])); err != nil {
		t.Errorf("checkpoint does not verify: %v", err)
	}
	tile := tl.get("/tile/0/000.p/3")
	if tile.status != 200 || len(tile.body) != 3*32 || tile.header.Get("Content-Type") != "application/octet-stream" || !strings.Contains(tile.header.Get("Cache-Control"), "immutable") {
		t.Errorf("hash tile: %d %d bytes %v", tile.status, len(tile.body), tile.header)
	}
	if r := tl.get("/tile/entries/000.p/3"); r.status != 401 {
		t.Errorf("entry bundle without a read token: %d", r.status)
	}
	if r := tl.get("/tile/entries/000.p/3", "Authorization", "Bearer nope"); r.status != 403 {
		t.Errorf("entry bundle with a bad read token: %d", r.status)
	}
	r := tl.get("/tile/entries/000.p/3", "Authorization", "Bearer r3ad", "Accept-Encoding", "gzip")
	if r.status != 200 || r.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("entry bundle: %d %v", r.status, r.header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	var eb api.EntryBundle
	if err := eb.UnmarshalText(raw); err != nil || len(eb.Entries) != 3 {
		t.Errorf("entry bundle: %d entries, %v", len(eb.Entries), err)
	}
	// Only canonical tlog-tiles paths, and nothing else in the directory.
	for _, p := range []string{
		"/tile/0/00.p/3", "/tile/0/0.p/3", "/tile/00/000.p/3", "/tile/0/000.p/03", "/tile/0/000.p/3/",
		"/tile/0/x000/000.p/3", "/tile/entries/00.p/3", "/tile/0/000.p/0", "/tile/0/000.p/256", "/tile/64/000",
		"/tile/0/../log.key", "/tile/../log.key", "/log.key", "/.state/treeState", "/.tidemark/idempotency.db", "/.tidemark/idempotency/CURRENT",
		"/tile/0/000", "/tile/entries/000", "/tile/1/000.p/1", "/tile/x/000",
	} {
		if r := tl.get(p, "Authorization", "Bearer r3ad"); r.status != 404 {
			t.Errorf("GET %s: %d, want 404", p, r.status)
		}
	}
}

func mustVerifier(t *testing.T, vkey string) note.Verifier {
	t.Helper()
	v, err := checkpoint.NewLogVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func waitForCheckpoint(t *testing.T, tl *testLog, size uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := tl.s.reader.ReadCheckpoint(context.Background())
		if err == nil {
			if c, _, err := checkpoint.Open(b, mustVerifier(t, tl.cfg.Keys.VKeys[0])); err == nil && c.Size >= size {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no checkpoint of size %d within 10s", size)
}

func TestAdd(t *testing.T) {
	tl := newTestLog(t, nil)
	r := tl.post("/add", "", []byte("raw entry"))
	if r.status != 200 || string(r.body) != "0" {
		t.Fatalf("/add: %d %q", r.status, r.body)
	}
	// /add is at least once, like any raw append: the same bytes again are
	// a second entry (keys, on /v1/events, are how retries are recognised).
	if r := tl.post("/add", "", []byte("raw entry")); r.status != 200 || string(r.body) != "1" {
		t.Errorf("/add of the same bytes: %d %q, want index 1", r.status, r.body)
	}
	leaf := checkpoint.AppendLeaf(nil, checkpoint.Leaf{Received: time.Now(), Source: "admin", Event: []byte(`{}`)})
	if r := tl.post("/add", "", leaf); r.status != 400 {
		t.Errorf("/add of a forged event leaf: %d %s", r.status, r.body)
	}
	if r := tl.post("/add", "", []byte(` {"event":{"x":1}, "v":1, "source":"root"}`)); r.status != 400 {
		t.Errorf("/add of a non-canonical forged event leaf: %d %s", r.status, r.body)
	}
	if r := tl.post("/add", "", make([]byte, checkpoint.MaxLeafSize+1)); r.status != 413 {
		t.Errorf("/add of 65,536 bytes: %d", r.status)
	}
	if n := tl.size(); n != 2 {
		t.Errorf("tree size %d, want 2", n)
	}
}

func TestOverloadAnswers503(t *testing.T) {
	tl := newTestLog(t, func(c *Config) { c.MaxInFlight = 3 })
	hold, held := make(chan struct{}), make(chan struct{}, 1)
	tl.s.afterAppend = func() error {
		held <- struct{}{}
		<-hold
		return nil
	}
	done := make(chan response)
	go func() {
		done <- tl.post("/v1/events", "application/x-ndjson", []byte("{}\n{}\n"))
	}()
	<-held
	r := tl.post("/v1/events", "application/x-ndjson", []byte("{}\n{}\n"))
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Errorf("over the in-flight bound: %d %v %s", r.status, r.header, r.body)
	}
	close(hold)
	if r := <-done; r.status != 200 {
		t.Errorf("held request: %d %s", r.status, r.body)
	}
	tl.s.afterAppend = nil
	if n := tl.size(); n != 2 {
		t.Errorf("tree size %d, want 2", n)
	}
}

func TestRefusesKeysThatDoNotVerifyTheCheckpoint(t *testing.T) {
	tl := newTestLog(t, nil)
	tl.postEvent(`{}`)
	waitForCheckpoint(t, tl, 1)
	tl.close()
	other, _, err := LoadKeys(t.TempDir(), nil, "test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	cfg := tl.cfg
	cfg.Keys = other
	if s, err := New(context.Background(), cfg); err == nil {
		s.Close(context.Background())
		t.Fatal("New started with a key that does not verify the existing checkpoint")
	} else if !strings.Contains(err.Error(), "none of the keys") {
		t.Errorf("error %v does not say what is wrong", err)
	}
	// Rotation: old and new keys (same origin) together start, and sign.
	both := Keys{Signers: append(other.Signers, tl.cfg.Keys.Signers...), VKeys: append(other.VKeys, tl.cfg.Keys.VKeys...)}
	tl.cfg.Keys = both
	tl.start()
	tl.postEvent(`{}`)
	waitForCheckpoint(t, tl, 2)
	cp := tl.get("/checkpoint")
	for _, vk := range both.VKeys {
		if _, _, err := checkpoint.Open(cp.body, mustVerifier(t, vk)); err != nil {
			t.Errorf("checkpoint during rotation does not verify with %s: %v", vk, err)
		}
	}
}

func TestCloseLosesNothing(t *testing.T) {
	tl := newTestLog(t, nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var maxIdx uint64
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				r := tl.postEvent(`{"w":1}`)
				mu.Lock()
				maxIdx = max(maxIdx, r.Index)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	tl.close()
	b, err := os.ReadFile(filepath.Join(tl.dir, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := checkpoint.Open(b, mustVerifier(t, tl.cfg.Keys.VKeys[0]))
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 160 || maxIdx != 159 {
		t.Errorf("after Close the checkpoint has size %d (largest index answered %d), want 160", c.Size, maxIdx)
	}
}

func TestManyKeysSurviveRestart(t *testing.T) {
	tl := newTestLog(t, nil)
	var body bytes.Buffer
	for i := 0; i < 1100; i++ { // more than one multi-row INSERT (1,024 rows on SQLite)
		fmt.Fprintf(&body, "{\"id\":\"many-%d\"}\n", i)
	}
	first := tl.post("/v1/events", "application/x-ndjson", body.Bytes())
	tl.close()
	tl.start()
	if got := tl.s.idempotency.Len(); got != 1100 {
		t.Errorf("index holds %d keys after a restart, want 1100", got)
	}
	again := tl.post("/v1/events", "application/x-ndjson", body.Bytes())
	var a, b struct{ Results []eventResult }
	json.Unmarshal(first.body, &a)
	json.Unmarshal(again.body, &b)
	if len(a.Results) != 1100 || len(b.Results) != 1100 {
		t.Fatalf("answers: %d and %d results", len(a.Results), len(b.Results))
	}
	for i := range a.Results {
		if b.Results[i].Index != a.Results[i].Index || !b.Results[i].Duplicate {
			t.Fatalf("event %d: %+v then %+v", i, a.Results[i], b.Results[i])
		}
	}
	if n := tl.size(); n != 1100 {
		t.Errorf("tree size %d, want 1100", n)
	}
}
