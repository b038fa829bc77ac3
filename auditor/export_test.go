package auditor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/checkpoint"
)

// exportLog is a log of every kind of leaf: commitment leaves (two of
// them erased, one deleted without an erasure when bad is set), event
// leaves, raw leaves and an erasure leaf. want are the indices a correct
// export holds.
func exportLog(t *testing.T, keys *testKeys) (l *testLog, ps *payloadStore, want []uint64) {
	t.Helper()
	l, ps = newCommitmentLog(t, keys, "a", 300)
	l.append(eventLeaves(t, "e", 20)...) // 300..319
	l.append([]byte("raw entry"))        // 320
	ps.appendEvents(t, eventLeaves(t, "b", 10))
	l.append(erasureLeaf(t, 7, 9)) // 331
	ps.erase(7, 9)
	for i := uint64(0); i < 331; i++ {
		if i != 7 && i != 8 && i != 320 {
			want = append(want, i)
		}
	}
	return l, ps, want
}

// readRecords parses NDJSON ExportRecords strictly: no unknown members.
func readRecords(t *testing.T, b []byte) []ExportRecord {
	t.Helper()
	var out []ExportRecord
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.DisallowUnknownFields()
		var r ExportRecord
		if err := d.Decode(&r); err != nil {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		out = append(out, r)
	}
	return out
}

// checkRecords checks that recs are exactly the verified events of l at
// the indices want, each re-deriving its leaf and carrying the checkpoint
// signed.
func checkRecords(t *testing.T, l *testLog, recs []ExportRecord, want []uint64, signed []byte) {
	t.Helper()
	var got []uint64
	for _, r := range recs {
		got = append(got, r.Index)
		rcv, err := time.Parse(checkpoint.ReceivedFormat, r.Received)
		if err != nil {
			t.Fatalf("record %d: received %q", r.Index, r.Received)
		}
		ev := checkpoint.AppendLeaf(nil, checkpoint.Leaf{Received: rcv, Source: r.Source, IdempotencyKey: r.IdempotencyKey, Event: r.Event})
		leaf := ev
		if r.Salt != nil {
			leaf = checkpoint.AppendCommitmentLeaf(nil, checkpoint.CommitmentLeaf{Received: rcv, Source: r.Source, Commitment: checkpoint.Commit(r.Salt, ev)})
		}
		if r.Index >= uint64(len(l.leaves)) || !bytes.Equal(leaf, l.leaves[r.Index]) {
			t.Fatalf("record %d does not re-derive its leaf:\n%s\n%s", r.Index, leaf, l.leaves[min(r.Index, uint64(len(l.leaves)-1))])
		}
		c := r.Checkpoint
		if c.Origin != l.keys.origin || c.Size != uint64(len(l.leaves)) || c.RootHash != base64.StdEncoding.EncodeToString(l.root(c.Size)) || c.Note != string(signed) {
			t.Fatalf("record %d: checkpoint %+v", r.Index, c)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("exported %d records %v\nwant %d %v", len(got), got, len(want), want)
	}
}

func TestExportHoldsExactlyTheVerifiedEvents(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, _, want := exportLog(t, keys)
	signed := honest(l)
	dest := filepath.Join(t.TempDir(), "events.ndjson")
	ex, err := NewExporter(ExportConfig{Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.Sink = ex }))
	wantExit(t, r, ExitVerified)
	b, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, l, readRecords(t, b), want, signed)
	if r.Full.Shipped != uint64(len(want)) {
		t.Fatalf("shipped %d", r.Full.Shipped)
	}
}

// A tree whose root does not match ships nothing, and neither does one
// whose contents cannot be read; a changed content is not exported.
func TestExportNothingWhenTheRootMismatches(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, _, _ := exportLog(t, keys)
	honest(l)
	// Rewrite an event leaf in the bundles, keeping the tiles and the
	// checkpoint.
	leaves := slices.Clone(l.leaves)
	leaves[305] = bytes.Replace(leaves[305], []byte("alice"), []byte("mallo"), 1)
	if bytes.Equal(leaves[305], l.leaves[305]) {
		t.Fatal("no alice in leaf 305")
	}
	var requests int
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { requests++ }))
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "events.ndjson")
	fileEx, _ := NewExporter(ExportConfig{Dest: dest})
	httpEx, _ := NewExporter(ExportConfig{Dest: srv.URL})
	for _, ex := range []*Exporter{fileEx, httpEx} {
		l.writeTree(leaves)
		r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.Sink = ex }))
		wantExit(t, r, ExitMisbehaviour)
		if has(r, KindRootMismatch) == nil && has(r, KindBadTiles) == nil {
			t.Fatalf("findings %v", kinds(r))
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) || requests != 0 {
			t.Fatalf("something was exported: %v, %d requests", err, requests)
		}
	}
}

// An interrupted check resumes its spool: the export holds every event
// once; a later check after the log grew exports only the new events.
func TestExportAcrossAnInterruption(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, ps, want := exportLog(t, keys)
	ps.appendEvents(t, eventLeaves(t, "c", 1200))
	for i := uint64(332); i < uint64(len(l.leaves)); i++ {
		want = append(want, i)
	}
	signed := honest(l)
	p := keys.policy(l.srv.URL, 1)
	state := t.TempDir()
	dest := filepath.Join(t.TempDir(), "events.ndjson")
	ex, _ := NewExporter(ExportConfig{Dest: dest})
	ctx, cancel := context.WithCancel(context.Background())
	a := newTestAuditor(t, p, func(c *Config) {
		c.StateDir, c.ProgressInterval, c.Workers, c.Sink = state, time.Nanosecond, 1, ex
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
	if _, err := os.Stat(dest); !os.IsNotExist(err) {
		t.Fatalf("exported before the root was checked: %v", err)
	}
	a = newTestAuditor(t, p, func(c *Config) { c.StateDir, c.Sink = state, ex })
	r := full(t, a)
	wantExit(t, r, ExitVerified)
	if r.Full.Resumed < 768 {
		t.Fatalf("not resumed: %+v", r.Full)
	}
	b, _ := os.ReadFile(dest)
	checkRecords(t, l, readRecords(t, b), want, signed)

	// The log grows: the next check appends only the new events.
	from := uint64(len(l.leaves))
	ps.appendEvents(t, eventLeaves(t, "d", 5))
	signed = honest(l)
	r = full(t, a)
	wantExit(t, r, ExitVerified)
	b2, _ := os.ReadFile(dest)
	recs := readRecords(t, b2[len(b):])
	checkRecords(t, l, recs, []uint64{from, from + 1, from + 2, from + 3, from + 4}, signed)
	// Nothing new: nothing exported.
	wantExit(t, full(t, a), ExitVerified)
	if b3, _ := os.ReadFile(dest); len(b3) != len(b2) {
		t.Fatalf("exported again")
	}
}

// hecServer is a strict Splunk HEC endpoint: it parses each request as a
// stream of HEC events and answers as Splunk does; fail, if set, chooses
// a reply for request n (from 1) instead.
type hecServer struct {
	t      *testing.T
	mu     sync.Mutex
	n      int
	events []hecEvent
	sizes  []int
	fail   func(n int) (int, string)
}

func (h *hecServer) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n++
	if r.Method != http.MethodPost || r.URL.Path != "/services/collector/event" || r.Header.Get("Authorization") != "Splunk hec-token" {
		rw.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(rw, `{"text":"Invalid authorization","code":3}`)
		return
	}
	if h.fail != nil {
		if code, body := h.fail(h.n); code != 0 {
			rw.WriteHeader(code)
			fmt.Fprint(rw, body)
			return
		}
	}
	body, _ := io.ReadAll(r.Body)
	h.sizes = append(h.sizes, len(body))
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	for d.More() {
		var e hecEvent
		if err := d.Decode(&e); err != nil {
			h.t.Errorf("HEC body: %v", err)
			rw.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(rw, `{"text":"Invalid data format","code":6}`)
			return
		}
		h.events = append(h.events, e)
	}
	fmt.Fprint(rw, `{"text":"Success","code":0}`)
}

func TestExportSplunkHEC(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, _, want := exportLog(t, keys)
	signed := honest(l)
	h := &hecServer{t: t, fail: func(n int) (int, string) {
		if n == 2 { // a busy indexer: retried
			return http.StatusServiceUnavailable, `{"text":"Server is busy","code":9}`
		}
		return 0, ""
	}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ex, err := NewExporter(ExportConfig{Dest: srv.URL + "/services/collector/event", Format: ExportSplunkHEC, Token: "hec-token", BatchBytes: 16 << 10, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.Sink = ex }))
	wantExit(t, r, ExitVerified)
	var recs []ExportRecord
	for _, e := range h.events {
		rec := *e.Event
		rcv, _ := time.Parse(checkpoint.ReceivedFormat, rec.Received)
		if string(e.Time) != fmt.Sprintf("%d.%06d", rcv.Unix(), rcv.Nanosecond()/1000) || e.Host != keys.origin || e.Source != "tidemark" || e.SourceType != "tidemark:event" {
			t.Fatalf("HEC event %+v", e)
		}
		recs = append(recs, rec)
	}
	checkRecords(t, l, recs, want, signed)
	if len(h.sizes) < 3 {
		t.Fatalf("%d batches, want several of at most 16 KiB", len(h.sizes))
	}
	for _, s := range h.sizes {
		if s > 16<<10 {
			t.Fatalf("a batch of %d bytes", s)
		}
	}

	// A reply with a code other than 0, or a 400, fails the export
	// without retrying; the check says so.
	for _, fail := range []func(int) (int, string){
		func(int) (int, string) { return http.StatusOK, `{"text":"Incorrect index","code":7}` },
		func(int) (int, string) { return http.StatusBadRequest, `{"text":"Invalid data format","code":6}` },
	} {
		h.n, h.fail = 0, fail
		r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.Sink = ex }))
		wantExit(t, r, ExitUnchecked)
		if f := has(r, KindUnavailable); f == nil || !strings.Contains(f.Message, "export") || h.n != 1 {
			t.Fatalf("%d requests, findings %+v", h.n, r.Findings)
		}
	}
}

// esServer is a strict Elasticsearch bulk endpoint: action and source
// lines in pairs, each action an index with an _id.
type esServer struct {
	t     *testing.T
	mu    sync.Mutex
	n     int
	docs  map[string]ExportRecord
	order []string
	reply func(n int, ids []string) (int, string)
}

func (s *esServer) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if r.URL.Path != "/audit/_bulk" || r.Header.Get("Authorization") != "ApiKey es-key" || r.Header.Get("Content-Type") != "application/x-ndjson" {
		rw.WriteHeader(http.StatusUnauthorized)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if !bytes.HasSuffix(body, []byte("\n")) {
		s.t.Errorf("bulk body does not end in a newline")
	}
	lines := bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	if len(lines)%2 != 0 {
		s.t.Fatalf("bulk body of %d lines", len(lines))
	}
	var ids []string
	docs := map[string]ExportRecord{}
	for i := 0; i < len(lines); i += 2 {
		var action map[string]map[string]string
		d := json.NewDecoder(bytes.NewReader(lines[i]))
		d.DisallowUnknownFields()
		if err := d.Decode(&action); err != nil || len(action) != 1 || len(action["index"]) != 1 || action["index"]["_id"] == "" {
			s.t.Fatalf("bulk action %s: %v", lines[i], err)
		}
		var rec ExportRecord
		d = json.NewDecoder(bytes.NewReader(lines[i+1]))
		d.DisallowUnknownFields()
		if err := d.Decode(&rec); err != nil {
			s.t.Fatalf("bulk source %s: %v", lines[i+1], err)
		}
		id := action["index"]["_id"]
		if id != fmt.Sprintf("%s/%d", rec.Checkpoint.Origin, rec.Index) {
			s.t.Fatalf("_id %q for index %d", id, rec.Index)
		}
		ids = append(ids, id)
		docs[id] = rec
	}
	if s.reply != nil {
		if code, body := s.reply(s.n, ids); code != 0 {
			rw.WriteHeader(code)
			fmt.Fprint(rw, body)
			return
		}
	}
	var items []string
	for _, id := range ids {
		if _, ok := s.docs[id]; !ok {
			s.order = append(s.order, id)
		}
		s.docs[id] = docs[id]
		items = append(items, fmt.Sprintf(`{"index":{"_index":"audit","_id":%q,"status":201,"result":"created"}}`, id))
	}
	fmt.Fprintf(rw, `{"took":3,"errors":false,"items":[%s]}`, strings.Join(items, ","))
}

func TestExportElasticsearchBulk(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, _, want := exportLog(t, keys)
	signed := honest(l)
	es := &esServer{t: t, docs: map[string]ExportRecord{}, reply: func(n int, ids []string) (int, string) {
		if n == 1 { // every item refused for load: the batch is sent again
			return http.StatusOK, fmt.Sprintf(`{"took":1,"errors":true,"items":[{"index":{"_id":%q,"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected"}}}]}`, ids[0])
		}
		if n == 3 {
			return http.StatusTooManyRequests, `{"error":"busy"}`
		}
		return 0, ""
	}}
	srv := httptest.NewServer(es)
	defer srv.Close()
	ex, err := NewExporter(ExportConfig{Dest: srv.URL + "/audit/_bulk", Format: ExportESBulk, Token: "es-key", BatchBytes: 32 << 10, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.Sink = ex }))
	wantExit(t, r, ExitVerified)
	var recs []ExportRecord
	for _, id := range es.order {
		recs = append(recs, es.docs[id])
	}
	checkRecords(t, l, recs, want, signed)

	// An item refused for another reason fails the export.
	es.n, es.reply = 0, func(n int, ids []string) (int, string) {
		return http.StatusOK, fmt.Sprintf(`{"took":1,"errors":true,"items":[{"index":{"_id":%q,"status":201}},{"index":{"_id":%q,"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [event.n]"}}}]}`, ids[0], ids[1])
	}
	r = full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.Sink = ex }))
	wantExit(t, r, ExitUnchecked)
	if f := has(r, KindUnavailable); f == nil || !strings.Contains(f.Message, "mapper_parsing_exception") || es.n != 1 {
		t.Fatalf("%d requests; findings %+v", es.n, r.Findings)
	}
}

func TestNewExporterSaysWhatIsWrong(t *testing.T) {
	for _, tc := range []struct {
		cfg  ExportConfig
		want string
	}{
		{ExportConfig{Dest: "out.ndjson", Format: ExportSplunkHEC}, "/services/collector/event"},
		{ExportConfig{Dest: "http://es:9200/audit", Format: ExportESBulk}, "/_bulk"},
		{ExportConfig{Dest: "x", Format: "csv"}, "ndjson, splunk-hec or es-bulk"},
		{ExportConfig{Format: ExportNDJSON}, "no destination"},
	} {
		if _, err := NewExporter(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// A Sink sees every verified leaf in index order: events, commitment
// leaves with the opening that proves their event, and erasure leaves.
func TestSinkSeesVerifiedLeaves(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, ps, want := exportLog(t, keys)
	signed := honest(l)
	var got []VerifiedLeaf
	var cp VerifiedCheckpoint
	sink := SinkFunc(func(ctx context.Context, c VerifiedCheckpoint, leaves *LeafReader) error {
		cp = c
		for {
			v, err := leaves.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			got = append(got, v)
		}
	})
	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.Sink = sink }))
	wantExit(t, r, ExitVerified)
	if string(cp.Note) != string(signed) || cp.Size != uint64(len(l.leaves)) {
		t.Fatalf("checkpoint %+v", cp)
	}
	want = append(want, 331) // the erasure leaf
	var idx []uint64
	for _, v := range got {
		idx = append(idx, v.Index)
		switch {
		case v.Index == 331:
			if v.Kind != checkpoint.KindErasure || v.Erasure == nil || !v.Erasure.Covers(7) || v.Erasure.Covers(9) {
				t.Fatalf("erasure %+v", v)
			}
		case v.Index < 300 || v.Index > 320:
			o := ps.get(v.Index)
			if v.Kind != checkpoint.KindCommitment || v.Opening == nil || !bytes.Equal(v.Opening.Salt, o.Salt) || !bytes.Equal(v.EventLeaf, o.Leaf) {
				t.Fatalf("commitment leaf %d: %+v", v.Index, v)
			}
		default:
			if v.Kind != checkpoint.KindEvent || v.Opening != nil || !bytes.Equal(v.EventLeaf, l.leaves[v.Index]) || !bytes.Equal(checkpoint.AppendLeaf(nil, v.Event), v.EventLeaf) {
				t.Fatalf("event leaf %d: %+v", v.Index, v)
			}
		}
	}
	if !slices.Equal(idx, want) {
		t.Fatalf("leaves %v", idx)
	}
}

// NDJSON to a URL: batches of records POSTed with the bearer token; a 429
// with Retry-After is retried.
func TestExportNDJSONOverHTTP(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, _, want := exportLog(t, keys)
	signed := honest(l)
	var mu sync.Mutex
	var body []byte
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if r.Header.Get("Authorization") != "Bearer sink-token" || r.Header.Get("Content-Type") != "application/x-ndjson" {
			rw.WriteHeader(http.StatusUnauthorized)
			return
		}
		if n == 1 {
			rw.Header().Set("Retry-After", "0")
			rw.WriteHeader(http.StatusTooManyRequests)
			return
		}
		b, _ := io.ReadAll(r.Body)
		if len(b) > 8<<10 || !bytes.HasSuffix(b, []byte("\n")) {
			t.Errorf("a batch of %d bytes", len(b))
		}
		body = append(body, b...)
	}))
	defer srv.Close()
	ex, err := NewExporter(ExportConfig{Dest: srv.URL + "/ingest", Token: "sink-token", BatchBytes: 8 << 10, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.Sink = ex }))
	wantExit(t, r, ExitVerified)
	checkRecords(t, l, readRecords(t, body), want, signed)
}

// Attack: the endpoint redirects the POST. Go's client would follow a 302
// with a GET and no body, and take the 200 at the end for success: the
// events would be lost, and the check say they were exported. A redirect
// is a failure, whichever code (307 would resend the batch elsewhere).
func TestExportRefusesRedirects(t *testing.T) {
	keys := newTestKeys(t, 1)
	l, _, _ := exportLog(t, keys)
	honest(l)
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect} {
		var mu sync.Mutex
		var got []string
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			mu.Lock()
			got = append(got, r.Method+" "+r.URL.Path)
			mu.Unlock()
			if r.URL.Path == "/services/collector/event" {
				http.Redirect(rw, r, "/elsewhere", code)
				return
			}
			fmt.Fprint(rw, `{"text":"Success","code":0}`)
		}))
		ex, err := NewExporter(ExportConfig{Dest: srv.URL + "/services/collector/event", Format: ExportSplunkHEC, Token: "hec-token", Backoff: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		r := full(t, newTestAuditor(t, keys.policy(l.srv.URL, 1), func(c *Config) { c.Sink = ex }))
		srv.Close()
		wantExit(t, r, ExitUnchecked)
		// Nothing was exported, and the report must not say otherwise.
		if f := has(r, KindUnavailable); f == nil || !strings.Contains(f.Message, "export") || r.Full.Shipped != 0 {
			t.Fatalf("%d: requests %v, findings %+v, shipped %d", code, got, r.Findings, r.Full.Shipped)
		}
		if !slices.Equal(got, []string{"POST /services/collector/event"}) {
			t.Fatalf("%d: requests %v", code, got)
		}
	}
}
