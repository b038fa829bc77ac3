package log

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	logsv1 "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcev1 "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func TestEventsPerRequestBound(t *testing.T) {
	tl := newK8sTestLog(t)
	tl.close()
	tl.cfg.MaxEventsPerRequest = 3
	tl.start()
	auth := []string{"Authorization", "Bearer " + k8sToken}
	if r := tl.post("/v1/events", "application/x-ndjson", []byte("{}\n{}\n\n{}\n"), auth...); r.status != 200 {
		t.Fatalf("3 events, the bound: %d %s", r.status, r.body)
	}
	eventList := func(n int) []byte {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(`{"auditID":"id-%d","stage":"ResponseComplete"}`, i)
		}
		return []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`)
	}
	if r := tl.post("/v1/k8s/audit", "application/json", eventList(3), auth...); r.status != 200 {
		t.Fatalf("an EventList of 3: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		name, path, ctype string
		body              []byte
	}{
		{"ndjson", "/v1/events", "application/x-ndjson", []byte("{}\n{}\n{}\n{}")},
		{"json_array", "/v1/events", "application/json", []byte(`[{},{},{},{}]`)},
		{"k8s_eventlist", "/v1/k8s/audit", "application/json", eventList(4)},
		{"otlp_json", "/v1/logs", "application/json", []byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{},{}]},{"logRecords":[{}]}]},{"scope_logs":[{"log_records":[{}]}]}]}`)},
		{"otlp_protobuf", "/v1/logs", "application/x-protobuf", emptyLogRecords(4)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tl.post(tc.path, tc.ctype, tc.body, auth...)
			if r.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("4 events: %d %s, want 413", r.status, r.body)
			}
			if msg := errorMessage(t, tc.ctype, r); !strings.Contains(msg, "holds 4") || !strings.Contains(msg, "at most 3") || !strings.Contains(msg, "split") {
				t.Errorf("message %q: want the count, the limit and what to do", msg)
			}
		})
	}
	if n := tl.size(); n != 6 {
		t.Errorf("tree size %d, want 6", n)
	}
}

func TestOTLPValuesWeighInTheInFlightBound(t *testing.T) {
	tl := newK8sTestLog(t)
	tl.close()
	tl.cfg.MaxInFlight, tl.cfg.MaxEventsPerRequest = 20, 10
	tl.start()
	auth := []string{"Authorization", "Bearer " + k8sToken}
	// One record and 4 + 148 values (the ResourceLogs and ScopeLogs, the
	// body and its array, the array's elements): 1 + 152/8 = 20 events.
	if r := tl.post("/v1/logs", "application/x-protobuf", nestedValues(148), auth...); r.status != 200 {
		t.Fatalf("a request that weighs the whole bound: %d %s", r.status, r.body)
	}
	if n := tl.s.inflight.current(); n != 0 {
		t.Errorf("%d events still in flight after the answer", n)
	}
	r := tl.post("/v1/logs", "application/x-protobuf", nestedValues(160), auth...)
	if msg := errorMessage(t, "application/x-protobuf", r); r.status != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "164 values") || !strings.Contains(msg, "split") {
		t.Errorf("one record, 164 values: %d %q, want 413 counting the values", r.status, msg)
	}
	// While a request that weighs 14 events is in flight, one of 7 gets 503.
	hold, held := make(chan struct{}), make(chan struct{}, 1)
	tl.s.afterAppend = func() error {
		held <- struct{}{}
		<-hold
		return nil
	}
	done := make(chan response)
	go func() { done <- tl.post("/v1/logs", "application/x-protobuf", nestedValues(100), auth...) }()
	<-held
	if r := tl.post("/v1/logs", "application/x-protobuf", nestedValues(40), auth...); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("beyond the in-flight bound: %d %v", r.status, r.header)
	}
	close(hold)
	if r := <-done; r.status != 200 {
		t.Errorf("the held request: %d %s", r.status, r.body)
	}
	tl.s.afterAppend = nil
	if n := tl.size(); n != 2 {
		t.Errorf("tree size %d, want 2", n)
	}
}

func TestBoundsThatCouldNeverAdmitAreRefused(t *testing.T) {
	keys, _, err := LoadKeys(t.TempDir(), nil, "test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{
		{MaxInFlight: 100, MaxEventsPerRequest: 101},
		{MaxBody: 8 << 20, MaxInFlightBytes: 4 << 20},
	} {
		cfg.Dir, cfg.Keys = t.TempDir(), keys
		if s, err := New(t.Context(), cfg); err == nil {
			s.Close(t.Context())
			t.Errorf("New(%+v) accepted bounds that refuse a request forever", cfg)
		} else if !strings.Contains(err.Error(), "raise") {
			t.Errorf("New: %v; want what to change", err)
		}
	}
}

// slowRequest is a request whose body is sent in parts, over a connection
// of its own.
type slowRequest struct {
	t    *testing.T
	conn net.Conn
}

// startSlowRequest sends the headers of a POST declaring contentLength (and
// header, name and value pairs) and the first bytes of its body, and leaves
// the request open.
func (tl *testLog) startSlowRequest(path, contentType string, contentLength int, first []byte, header ...string) *slowRequest {
	tl.t.Helper()
	conn, err := net.Dial("tcp", tl.hs.Listener.Addr().String())
	if err != nil {
		tl.t.Fatal(err)
	}
	tl.t.Cleanup(func() { conn.Close() })
	var extra strings.Builder
	for i := 0; i+1 < len(header); i += 2 {
		fmt.Fprintf(&extra, "%s: %s\r\n", header[i], header[i+1])
	}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: log\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n", path, contentType, contentLength, extra.String())
	if _, err := conn.Write(first); err != nil {
		tl.t.Fatal(err)
	}
	return &slowRequest{t: tl.t, conn: conn}
}

// finish sends the rest of the body and reads the answer.
func (sr *slowRequest) finish(rest []byte) response {
	sr.t.Helper()
	if _, err := sr.conn.Write(rest); err != nil {
		sr.t.Fatal(err)
	}
	return sr.answer()
}

// answer reads the answer, sending nothing more.
func (sr *slowRequest) answer() response {
	sr.t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(sr.conn), nil)
	if err != nil {
		sr.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// waitForBodyBytes waits until the requests being read hold want bytes of
// body buffers: they have read what was sent to them.
func (tl *testLog) waitForBodyBytes(want int64) {
	tl.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if tl.s.bodies.current() == want {
			return
		}
	}
	tl.t.Fatalf("body buffers hold %d bytes, want %d", tl.s.bodies.current(), want)
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func TestSlowClientHoldsOnlyWhatItSent(t *testing.T) {
	tl := newTestLog(t, nil)
	const clients, sent = 8, 10_000
	before := liveHeap()
	var reqs []*slowRequest
	for range clients {
		// Declares the largest body the log takes, sends 10 kB of it.
		reqs = append(reqs, tl.startSlowRequest("/v1/events", "application/x-ndjson", int(tl.s.cfg.MaxBody), bytes.Repeat([]byte("{}\n"), sent/3)))
	}
	// 10 kB fit the third buffer: 4 KiB, 8 KiB, 16 KiB.
	tl.waitForBodyBytes(clients * 16 << 10)
	if grew := int64(liveHeap()) - int64(before); grew > 4<<20 {
		t.Errorf("%d clients that declared %d MiB and sent %d bytes grew the live heap by %d KiB, want at most 4 MiB", clients, tl.s.cfg.MaxBody>>20, sent, grew>>10)
	}
	for _, sr := range reqs {
		sr.conn.Close()
	}
	tl.waitForBodyBytes(0)
}

// writerTokens makes a tokens file for writers: NAME's token is
// "NAME-token" (see asWriter).
func writerTokens(t *testing.T, names ...string) *Tokens {
	t.Helper()
	var lines strings.Builder
	for _, name := range names {
		lines.WriteString(TokenLine(name, name+"-token") + "\n")
	}
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

// asWriter is the header of a request from the writer of writerTokens.
func asWriter(name string) []string {
	return []string{"Authorization", "Bearer " + name + "-token"}
}

// holdAppends makes the first n requests to append wait after their append
// until the returned release is called; held receives once for each.
func (tl *testLog) holdAppends(n int32) (held <-chan struct{}, release func()) {
	var calls atomic.Int32
	h, hold := make(chan struct{}, n), make(chan struct{})
	tl.s.afterAppend = func() error {
		if calls.Add(1) <= n {
			h <- struct{}{}
			<-hold
		}
		return nil
	}
	return h, func() { close(hold) }
}

func TestBodyBudgetAnswers503(t *testing.T) {
	tl := newTestLog(t, func(c *Config) {
		c.MaxBody, c.MaxInFlightBytes = 1<<20, 2<<20
		c.Tokens = writerTokens(t, "alice", "bob", "carol")
	})
	// Two bodies of 1,000,000 bytes, each 600,000 bytes in: each buffer has
	// grown to 1 MiB (past 512 KiB), and together they hold the budget;
	// each is a writer's only request, and half the budget, its share.
	line := `{"pad":"` + strings.Repeat("x", 989) + "\"}\n" // 1,000 bytes
	body := []byte(strings.Repeat(line, 1000))
	if c := countLines(body); c != 1000 {
		t.Fatalf("the test body has %d lines", c)
	}
	var reqs []*slowRequest
	for _, writer := range []string{"alice", "bob"} {
		reqs = append(reqs, tl.startSlowRequest("/v1/events", "application/x-ndjson", len(body), body[:600_000], asWriter(writer)...))
	}
	tl.waitForBodyBytes(2 << 20)
	r := tl.post("/v1/events", "application/json", []byte(`{"action":"small"}`), asWriter("carol")...)
	if msg := errorMessage(t, "", r); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(msg, "the log is busy") || !strings.Contains(msg, "retry") {
		t.Fatalf("a request beyond the body budget: %d %v %s, want 503 with Retry-After, saying the log is busy", r.status, r.header, r.body)
	}
	for _, sr := range reqs {
		if r := sr.finish(body[600_000:]); r.status != 200 {
			t.Errorf("a body within the budget: %d %s", r.status, r.body)
		}
	}
	tl.waitForBodyBytes(0)
	tl.postEvent(`{"action":"small"}`, asWriter("carol")...) // the retry
	if n := tl.size(); n != 2001 {
		t.Errorf("tree size %d, want 2001", n)
	}
}

// One writer may hold up to half of each budget, its share, in as many
// requests as it likes, and one request alone up to the whole budget: a
// writer alone is refused only past its share, with a message that says
// so, and every request the log takes still gets through.
func TestOneWriterAloneUsesItsShare(t *testing.T) {
	const maxBody = 3 << 19 // 1.5 MiB, more than the share of bytes
	tl := newTestLog(t, func(c *Config) {
		c.MaxBody, c.MaxInFlightBytes = maxBody, 2<<20
		c.MaxInFlight, c.MaxEventsPerRequest = 20, 20
	})
	ndjson := func(n int) []byte { return bytes.Repeat([]byte("{}\n"), n) }
	// padded is an NDJSON body of size bytes: one event and blanks.
	padded := func(size int) []byte { return append([]byte("{}\n"), bytes.Repeat([]byte(" "), size-3)...) }
	wantShareSpent := func(what string, r response, share string) {
		t.Helper()
		msg := errorMessage(t, "", r)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" ||
			!strings.Contains(msg, "this writer ("+OpenSource+")") || !strings.Contains(msg, "at most "+share) || !strings.Contains(msg, "not the log's") {
			t.Errorf("%s: %d %v %q; want 503 with Retry-After saying this writer's share (%s) is spent", what, r.status, r.header, msg, share)
		}
	}

	t.Run("events", func(t *testing.T) {
		// One request alone may weigh the whole bound.
		if r := tl.post("/v1/events", "application/x-ndjson", ndjson(20)); r.status != http.StatusOK {
			t.Fatalf("20 events, the whole bound, from a writer holding nothing: %d %s", r.status, r.body)
		}
		// Two requests of 5 are its share, both in flight at once.
		held, release := tl.holdAppends(2)
		done := make(chan response, 2)
		for range 2 {
			go func() { done <- tl.post("/v1/events", "application/x-ndjson", ndjson(5)) }()
		}
		<-held
		<-held
		if got := tl.s.inflight.heldBy(OpenSource); got != 10 {
			t.Errorf("the writer holds %d events, want 10", got)
		}
		wantShareSpent("one more event past the share", tl.post("/v1/events", "application/json", []byte(`{}`)), "10 ")
		release()
		for range 2 {
			if r := <-done; r.status != http.StatusOK {
				t.Errorf("a request within the share: %d %s", r.status, r.body)
			}
		}
		tl.s.afterAppend = nil
	})

	t.Run("bytes", func(t *testing.T) {
		// One body alone may grow past the share (1 MiB) to MaxBody.
		big := padded(1_200_000)
		if r := tl.post("/v1/events", "application/x-ndjson", big); r.status != http.StatusOK {
			t.Fatalf("a body of %d bytes from a writer holding nothing else: %d %s", len(big), r.status, r.body)
		}
		// Two bodies 300,000 bytes in hold 512 KiB each: the share.
		body := padded(400_000)
		var reqs []*slowRequest
		for range 2 {
			reqs = append(reqs, tl.startSlowRequest("/v1/events", "application/x-ndjson", len(body), body[:300_000]))
		}
		tl.waitForBodyBytes(1 << 20)
		wantShareSpent("a body past the share", tl.post("/v1/events", "application/json", []byte(`{}`)), "1048576 ")
		for _, sr := range reqs {
			if r := sr.finish(body[300_000:]); r.status != http.StatusOK {
				t.Errorf("a body within the share: %d %s", r.status, r.body)
			}
		}
	})

	if got := tl.metric(`tidemark_log_rejected_total{cause="overloaded_writer"}`); got != "1" {
		t.Errorf("overloaded_writer refusals counted: %q, want 1", got)
	}
	if got := tl.metric(`tidemark_log_rejected_total{cause="overloaded_writer_bytes"}`); got != "1" {
		t.Errorf("overloaded_writer_bytes refusals counted: %q, want 1", got)
	}
	if n := tl.size(); n != 20+10+3 {
		t.Errorf("tree size %d, want %d", n, 20+10+3)
	}
}

// A writer whose requests hold its share of the events in flight (parked
// after their append, as a ?wait=witnessed request is parked for its
// witnesses) is refused more, and another writer is not.
func TestOneWriterHoldingEventsDoesNotStopOtherWriters(t *testing.T) {
	tl := newTestLog(t, func(c *Config) {
		c.MaxInFlight, c.MaxEventsPerRequest = 20, 10
		c.Tokens = writerTokens(t, "mallory", "alice")
	})
	batch := bytes.Repeat([]byte("{}\n"), 10)
	held, release := tl.holdAppends(1)
	parked := make(chan response, 1)
	go func() { parked <- tl.post("/v1/events", "application/x-ndjson", batch, asWriter("mallory")...) }()
	<-held
	r := tl.post("/v1/events", "application/json", []byte(`{"action":"more"}`), asWriter("mallory")...)
	if msg := errorMessage(t, "", r); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(msg, "this writer (mallory)") {
		t.Errorf("mallory past her share: %d %v %q; want 503 with Retry-After naming her share", r.status, r.header, msg)
	}
	if r := tl.post("/v1/events", "application/x-ndjson", batch, asWriter("alice")...); r.status != http.StatusOK {
		t.Errorf("alice's 10 events while mallory holds hers: %d %s; want them logged", r.status, r.body)
	}
	release()
	if r := <-parked; r.status != http.StatusOK {
		t.Errorf("mallory's parked request: %d %s", r.status, r.body)
	}
	tl.s.afterAppend = nil
	if n := tl.size(); n != 20 {
		t.Errorf("tree size %d, want 20", n)
	}
}

// An OTLP request's resource and scope copies are held with its body, so
// copies that fit the budget alone but not beside their body could never
// be taken: 503 on every retry, on an idle log. They are a 413.
func TestOTLPCopiesBesideTheirBodyOverTheBudgetAre413(t *testing.T) {
	tl := newTestLog(t, func(c *Config) { c.MaxBody, c.MaxInFlightBytes = 1<<20, 1<<20 })
	const records = 900
	recs := []*logsv1.LogRecord{{Body: str(strings.Repeat("b", 300_000))}} // the body's buffer is 512 KiB
	for range records - 1 {
		recs = append(recs, &logsv1.LogRecord{})
	}
	body, err := proto.Marshal(&logsv1.LogsData{ResourceLogs: []*logsv1.ResourceLogs{{
		Resource:  &resourcev1.Resource{Attributes: []*commonv1.KeyValue{kv("k8s.pod.name", str(strings.Repeat("p", 1000)))}},
		ScopeLogs: []*logsv1.ScopeLogs{{LogRecords: recs}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	var data logsv1.LogsData
	if err := proto.Unmarshal(body, &data); err != nil {
		t.Fatal(err)
	}
	if shared := otlpSharedBytes(&data); shared > 1<<20 || shared+512<<10 <= 1<<20 {
		t.Fatalf("%d bytes of copies: the test needs them within the budget alone and past it beside the body", shared)
	}
	r := tl.post("/v1/logs", "application/x-protobuf", body)
	if msg := errorMessage(t, "application/x-protobuf", r); r.status != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "split") {
		t.Errorf("a request alone on an idle log whose copies and body pass the budget: %d %q; want 413, a retry can never be taken", r.status, msg)
	}
}

func FuzzCountLines(f *testing.F) {
	for _, s := range []string{"", "{}\n", "{}\n\n \t\n{}", "\u00a0\n{}\r\n", "a\nb\nc"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, want := countLines(b), len(splitLines(b)); n != want {
			t.Fatalf("countLines = %d, splitLines made %d lines", n, want)
		}
	})
}

func FuzzCountJSONArray(f *testing.F) {
	for _, s := range []string{`[]`, `[{},{}]`, `[{"a":"],"},[1,[2]],null]`, `[1,`, ` [ 1 ] `, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := countJSONArray(b)
		items, splitErr := splitJSONArray(b)
		if (err == nil) != (splitErr == nil) || n != len(items) {
			t.Fatalf("countJSONArray = %d, %v; splitJSONArray made %d items, %v", n, err, len(items), splitErr)
		}
		var want []json.RawMessage
		if json.Unmarshal(b, &want) == nil && want != nil && err == nil && n != len(want) {
			t.Fatalf("countJSONArray = %d, encoding/json decodes %d elements", n, len(want))
		}
	})
}

func FuzzK8sItemCount(f *testing.F) {
	for _, s := range []string{
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"a","stage":"ResponseComplete"},{"auditID":"b","stage":"RequestReceived"}]}`,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":null}`,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","\u0069tems":[{"stage":"Panic","auditID":"x"}]}`,
		`{"items":[1,2],"items":[3]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := k8sEvents(b)
		if err != nil {
			return // a body k8sEvents refuses may be counted or refused
		}
		if n, err := k8sItemCount(b); err != nil || n != len(evs) {
			t.Fatalf("k8sItemCount = %d, %v; k8sEvents made %d events", n, err, len(evs))
		}
	})
}

// otlpDecodedCount counts the records of a decoded OTLP request, and its
// values as otlpCount defines them: every other message and every element
// of a repeated string field.
func otlpDecodedCount(data *logsv1.LogsData) otlpCount {
	var c otlpCount
	var anyValue func(*commonv1.AnyValue)
	keyValues := func(kvs []*commonv1.KeyValue) {
		for _, kv := range kvs {
			c.values++
			anyValue(kv.GetValue())
		}
	}
	anyValue = func(v *commonv1.AnyValue) {
		if v == nil {
			return
		}
		c.values++
		switch x := v.GetValue().(type) {
		case *commonv1.AnyValue_ArrayValue:
			if x.ArrayValue != nil {
				c.values++
				for _, e := range x.ArrayValue.GetValues() {
					anyValue(e)
				}
			}
		case *commonv1.AnyValue_KvlistValue:
			if x.KvlistValue != nil {
				c.values++
				keyValues(x.KvlistValue.GetValues())
			}
		}
	}
	for _, rl := range data.GetResourceLogs() {
		c.values++
		if r := rl.GetResource(); r != nil {
			c.values++
			keyValues(r.GetAttributes())
			for _, e := range r.GetEntityRefs() {
				c.values += 1 + len(e.GetIdKeys()) + len(e.GetDescriptionKeys())
			}
		}
		for _, sl := range rl.GetScopeLogs() {
			c.values++
			if sc := sl.GetScope(); sc != nil {
				c.values++
				keyValues(sc.GetAttributes())
			}
			for _, lr := range sl.GetLogRecords() {
				c.records++
				anyValue(lr.GetBody())
				keyValues(lr.GetAttributes())
			}
		}
	}
	return c
}

func FuzzOTLPProtoCount(f *testing.F) {
	f.Add(emptyLogRecords(3))
	f.Add([]byte{0x0a, 0x04, 0x12, 0x02, 0x12, 0x00})                   // one record
	f.Add([]byte{0x08, 0x01, 0x0a, 0x02, 0x12, 0x00, 0x0b, 0x0c})       // an unknown varint and group around an empty ScopeLogs
	f.Add([]byte{0x0d, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x02, 0x10, 0x02}) // resource_logs as fixed32; scope_logs as varint
	f.Add([]byte{0x0a, 0xff, 0x01})
	if b, err := proto.Marshal(otlpFuzzSeed()); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := otlpProtoCount(b)
		var data logsv1.LogsData
		if proto.Unmarshal(b, &data) != nil {
			return // a body the decoder refuses may be counted or refused
		}
		want := otlpDecodedCount(&data)
		if err != nil || c.records != want.records || c.values < want.values {
			t.Fatalf("otlpProtoCount = %+v, %v; proto.Unmarshal decoded %+v", c, err, want)
		}
		// Encoded canonically (each field once), the count is exact.
		canon, err := proto.MarshalOptions{Deterministic: true}.Marshal(&data)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := otlpProtoCount(canon); err != nil || c != want {
			t.Fatalf("canonical encoding: otlpProtoCount = %+v, %v; want %+v", c, err, want)
		}
	})
}

func FuzzOTLPJSONCount(f *testing.F) {
	for _, s := range []string{
		`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{},{"body":{"stringValue":"x"}}]}]}]}`,
		`{"resource_logs":[{"scope_logs":[{"log_records":[{"traceId":"5b8efff798038103d269b633813fc60c"}]},{"logRecords":null}]}]}`,
		`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}],"scopeLogs":[{"logRecords":[{},{}]}]}],"x":"race"}`,
		`{"resourceLogs":null,"unknown":{"logRecords":[{}]}}`,
		`{"resourceLogs":[{"resource":{"attributes":[{"key":"k","value":{"stringValue":"v"}}],"entityRefs":[{"type":"t","idKeys":["a","b"]}]},"scopeLogs":[{"scope":{"name":"s","attributes":[]},"logRecords":[{"body":{"kvlistValue":{"values":[{"key":"k","value":{"arrayValue":{"values":[{},{"intValue":"1"}]}}}]}}}]}]}]}`,
		`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"tr\u0061ceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174"}]}]}]}`,
	} {
		f.Add([]byte(s))
	}
	if b, err := protojson.Marshal(otlpFuzzSeed()); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := otlpJSONCount(b)
		var data logsv1.LogsData
		if unmarshalOTLPJSON(b, &data) != nil {
			return // a body the decoder refuses may be counted or refused
		}
		if want := otlpDecodedCount(&data); err != nil || c.records != want.records || c.values < want.values {
			t.Fatalf("otlpJSONCount = %+v, %v; unmarshalOTLPJSON decoded %+v", c, err, want)
		}
	})
}

// otlpFuzzSeed has every kind of value the counters follow.
func otlpFuzzSeed() *logsv1.LogsData {
	arr := &commonv1.AnyValue{Value: &commonv1.AnyValue_ArrayValue{ArrayValue: &commonv1.ArrayValue{Values: []*commonv1.AnyValue{str("a"), {}}}}}
	kvl := &commonv1.AnyValue{Value: &commonv1.AnyValue_KvlistValue{KvlistValue: &commonv1.KeyValueList{Values: []*commonv1.KeyValue{kv("k", arr)}}}}
	return &logsv1.LogsData{ResourceLogs: []*logsv1.ResourceLogs{{
		Resource: &resourcev1.Resource{Attributes: []*commonv1.KeyValue{kv("service.name", str("vault"))},
			EntityRefs: []*commonv1.EntityRef{{Type: "service", IdKeys: []string{"service.name"}}}},
		ScopeLogs: []*logsv1.ScopeLogs{
			{Scope: &commonv1.InstrumentationScope{Name: "audit", Attributes: []*commonv1.KeyValue{kv("a", str("b"))}},
				LogRecords: []*logsv1.LogRecord{{SeverityText: "INFO", Body: kvl, Attributes: []*commonv1.KeyValue{kv("x", nil)}}, {}}},
			{}},
	}, {}}}
}
