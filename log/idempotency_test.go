package log

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	logsv1 "go.opentelemetry.io/proto/otlp/logs/v1"
)

// An idempotency key answers a retry only when the event is the same one.
// The tests here are the attacks of issue 9 (holes 1, 2 and 4): a sender who
// reuses an ID someone else chose must not make the log drop an event, nor
// hand out the receipt of another event.

// k8sEvent is an audit event of the kube-apiserver with the given auditID,
// verb and secret name.
func k8sEvent(auditID, verb, name string) string {
	return fmt.Sprintf(`{"level":"Metadata","auditID":%q,"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/%s","verb":%q,`+
		`"user":{"username":"mallory"},"objectRef":{"resource":"secrets","namespace":"prod","name":%q,"apiVersion":"v1"},"responseStatus":{"code":200}}`,
		auditID, name, verb, name)
}

func eventList(items ...string) []byte {
	return []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`)
}

// eventOf returns the canonical event of the leaf at index.
func (tl *testLog) eventOf(index uint64) string {
	tl.t.Helper()
	leaves := tl.leaves()
	if index >= uint64(len(leaves)) {
		tl.t.Fatalf("no leaf %d (size %d)", index, len(leaves))
	}
	l, err := checkpoint.ParseLeaf(leaves[index])
	if err != nil {
		tl.t.Fatalf("leaf %d: %v", index, err)
	}
	return string(l.Event)
}

func canonical(t *testing.T, event string) string {
	t.Helper()
	ev, err := checkpoint.CanonicalEvent([]byte(event))
	if err != nil {
		t.Fatal(err)
	}
	return string(ev.Canonical)
}

func (tl *testLog) metric(name string) string {
	tl.t.Helper()
	m := tl.get("/metrics")
	for _, line := range strings.Split(string(m.body), "\n") {
		if strings.HasPrefix(line, name+" ") {
			return strings.TrimPrefix(line, name+" ")
		}
	}
	return ""
}

// Hole 1: the kube-apiserver takes auditID from the client's Audit-ID
// header, so any API user can give a destructive request the auditID of an
// earlier harmless one. Both must be logged.
func TestReusedK8sAuditIDWithOtherContentIsLogged(t *testing.T) {
	tl := newK8sTestLog(t)
	get := k8sEvent("0f6e-reused", "get", "prod-db-password")
	del := k8sEvent("0f6e-reused", "delete", "prod-db-password")
	first := tl.postAudit(eventList(get))
	second := tl.postAudit(eventList(del))
	if len(second) != 1 || second[0].Duplicate || second[0].Index == first[0].Index {
		t.Fatalf("delete under a reused auditID answered %+v (the get is %+v): it must be a new entry", second, first)
	}
	if got := tl.eventOf(second[0].Index); got != canonical(t, del) {
		t.Errorf("entry %d holds %s, want the delete", second[0].Index, got)
	}
	if got := tl.metric(`tidemark_log_reused_ids_total{endpoint="k8s"}`); got != "1" {
		t.Errorf("reused ids counted %q, want 1", got)
	}
	// The apiserver retries the delete's batch: that is a retry, one entry.
	again := tl.postAudit(eventList(del, get))
	if again[0].Index != second[0].Index || !again[0].Duplicate || again[1].Index != first[0].Index || !again[1].Duplicate {
		t.Errorf("redelivery of both: %+v, want %d and %d as duplicates", again, second[0].Index, first[0].Index)
	}
	// ... also after a restart and after a crash that lost the index rows:
	// the rows are rebuilt from the leaves, the reused one included.
	tl.close()
	tl.start()
	if res := tl.postAudit(eventList(del)); res[0].Index != second[0].Index || !res[0].Duplicate {
		t.Errorf("after a restart: %+v", res)
	}
	tl.kill()
	tl.start()
	if res := tl.postAudit(eventList(get, del)); res[0].Index != first[0].Index || res[1].Index != second[0].Index {
		t.Errorf("after a crash: %+v", res)
	}
	if n := tl.size(); n != 2 {
		t.Errorf("tree size %d, want 2", n)
	}
}

func TestReusedEventIDWithOtherContentIsLogged(t *testing.T) {
	tl := newTestLog(t, nil)
	a := tl.postEvent(`{"id":"evt-1","action":"secret.read"}`)
	b := tl.postEvent(`{"id":"evt-1","action":"secret.delete"}`)
	if b.Duplicate || b.Index == a.Index {
		t.Fatalf("a different event under a used id answered %+v: it must be logged", b)
	}
	// In one request too, and each is a retry of itself.
	r := tl.post("/v1/events", "application/x-ndjson", []byte("{\"id\":\"evt-1\",\"action\":\"secret.list\"}\n{\"id\":\"evt-1\",\"action\":\"secret.read\"}\n{\"id\":\"evt-1\",\"action\":\"secret.list\"}\n"))
	var got struct{ Results []eventResult }
	if err := json.Unmarshal(r.body, &got); err != nil || len(got.Results) != 3 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	list := got.Results[0]
	if list.Duplicate || list.Index == a.Index || list.Index == b.Index {
		t.Errorf("third event under the id: %+v", list)
	}
	if got.Results[1].Index != a.Index || !got.Results[1].Duplicate || got.Results[2].Index != list.Index || !got.Results[2].Duplicate {
		t.Errorf("retries in a batch: %s", r.body)
	}
	if n := tl.size(); n != 3 {
		t.Errorf("tree size %d, want 3", n)
	}
	if got := tl.metric(`tidemark_log_reused_ids_total{endpoint="events"}`); got != "2" {
		t.Errorf("reused ids counted %q, want 2", got)
	}
}

func TestReusedOTLPRecordUIDWithOtherContentIsLogged(t *testing.T) {
	tl := newK8sTestLog(t)
	auth := []string{"Authorization", "Bearer " + k8sToken}
	rec := func(body string) []byte {
		return otlpRequest(t, &logsv1.LogRecord{Body: str(body), Attributes: []*commonv1.KeyValue{kv("log.record.uid", str("uid-1"))}})
	}
	for _, body := range [][]byte{rec("read secret"), rec("delete secret"), rec("delete secret")} {
		if r := tl.post("/v1/logs", "application/x-protobuf", body, auth...); r.status != 200 || len(r.body) != 0 {
			t.Fatalf("%d %x", r.status, r.body)
		}
	}
	if n := tl.size(); n != 2 {
		t.Errorf("tree size %d, want 2: both records once", n)
	}
}

// With an explicit Idempotency-Key header the sender chose the key: a
// different event under it is a mistake, answered 422 (as
// draft-ietf-httpapi-idempotency-key-header says), and nothing is appended.
func TestIdempotencyKeyReusedForOtherEventIs422(t *testing.T) {
	tl := newTestLog(t, nil)
	a := tl.postEvent(`{"action":"x"}`, "Idempotency-Key", "key-1")
	r := tl.post("/v1/events", "application/json", []byte(`{"action":"y"}`), "Idempotency-Key", "key-1")
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "different event") {
		t.Errorf("other event under a used key: %d %s, want 422", r.status, r.body)
	}
	// A batch with one such event appends none of its events.
	tl.post("/v1/events", "application/x-ndjson", []byte("{\"n\":0}\n{\"n\":1}\n"), "Idempotency-Key", "b")
	r = tl.post("/v1/events", "application/x-ndjson", []byte("{\"n\":0}\n{\"n\":-1}\n{\"n\":2}\n"), "Idempotency-Key", "b")
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), "line 2") {
		t.Errorf("batch with a changed event: %d %s, want 422 naming line 2", r.status, r.body)
	}
	if n := tl.size(); n != 3 {
		t.Errorf("tree size %d, want 3", n)
	}
	if b := tl.postEvent(`{"action":"x"}`, "Idempotency-Key", "key-1"); b.Index != a.Index || !b.Duplicate {
		t.Errorf("the real retry: %+v, want index %d", b, a.Index)
	}
}

// Hole 2: {"id":1} and {"id":"1"} shared a key, so the second event was
// dropped and its sender got the first event's receipt.
func TestNumberAndStringIDsAreDifferentKeys(t *testing.T) {
	tl := newTestLog(t, nil)
	r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(`{"id":1,"action":"login"}`))
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	r = tl.post("/v1/events?wait=witnessed", "application/json", []byte(`{"id":"1","action":"login"}`))
	var a witnessedAnswer
	if r.status != 200 || json.Unmarshal(r.body, &a) != nil || a.Receipt == nil {
		t.Fatalf("%d %s", r.status, r.body)
	}
	l, err := checkpoint.ParseLeaf(a.Receipt.Leaf)
	if err != nil || string(l.Event) != `{"action":"login","id":"1"}` {
		t.Errorf("the receipt of {\"id\":\"1\"} holds %s (%v): not the sender's event", a.Receipt.Leaf, err)
	}
	if n := tl.size(); n != 2 {
		t.Errorf("tree size %d, want 2", n)
	}
	// A duplicate's receipt holds the sender's own event.
	r = tl.post("/v1/events?wait=witnessed", "application/json", []byte(` {"action":"login", "id":1} `))
	a = witnessedAnswer{}
	if r.status != 200 || json.Unmarshal(r.body, &a) != nil || a.Receipt == nil {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if l, err := checkpoint.ParseLeaf(a.Receipt.Leaf); err != nil || string(l.Event) != `{"action":"login","id":1}` || a.Index != 0 {
		t.Errorf("retry of {\"id\":1}: index %d, leaf %s (%v)", a.Index, a.Receipt.Leaf, err)
	}
}

// appendFaults makes Tessera fail every entry once a budget of entries is
// spent, as a disk that fills up in the middle of a request would.
type appendFaults struct {
	on     atomic.Bool
	budget atomic.Int64
	err    error // what a failed entry returns (default: a full disk)
}

func (f *appendFaults) failAfter(n int64) { f.budget.Store(n); f.on.Store(true) }
func (f *appendFaults) stop()             { f.on.Store(false) }

func (f *appendFaults) wrap(add tessera.AddFn) tessera.AddFn {
	return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
		if f.on.Load() && f.budget.Add(-1) < 0 {
			err := f.err
			if err == nil {
				err = fmt.Errorf("simulated: %w", syscall.ENOSPC)
			}
			return func() (tessera.Index, error) { return tessera.Index{}, err }
		}
		return add(ctx, e)
	}
}

// Hole 4: a request whose entries were partly written before the append
// failed must index what was written, so that its retry does not append
// those entries again.
func TestPartialAppendFailureIndexesWhatWasWritten(t *testing.T) {
	faults := &appendFaults{}
	tl := newTestLog(t, func(c *Config) { c.wrapAdd = faults.wrap })
	var body bytes.Buffer
	for i := range 10 {
		fmt.Fprintf(&body, "{\"n\":%d}\n", i)
	}
	faults.failAfter(4)
	r := tl.post("/v1/events", "application/x-ndjson", body.Bytes(), "Idempotency-Key", "partial")
	faults.stop()
	if r.status < 500 {
		t.Fatalf("failed append answered %d %s", r.status, r.body)
	}
	if n := tl.size(); n != 4 {
		t.Fatalf("tree size %d after the failure, want the 4 entries written", n)
	}
	r = tl.post("/v1/events", "application/x-ndjson", body.Bytes(), "Idempotency-Key", "partial")
	var got struct{ Results []eventResult }
	if r.status != 200 || json.Unmarshal(r.body, &got) != nil || len(got.Results) != 10 {
		t.Fatalf("retry: %d %s", r.status, r.body)
	}
	for i, res := range got.Results {
		if dup := i < 4; res.Duplicate != dup || res.Index != uint64(i) {
			t.Errorf("retry, event %d: %+v, want index %d duplicate=%v", i, res, i, dup)
		}
	}
	if n := tl.size(); n != 10 {
		t.Errorf("tree size %d, want 10: nothing twice", n)
	}
}

// An index file of an earlier layout (the in-memory index's rows, with a
// watermark) is dropped at start and the index is built from the leaves,
// so that retries still find their entries.
func TestOldIndexLayoutIsRebuiltFromTheLog(t *testing.T) {
	tl := newTestLog(t, nil)
	a := tl.postEvent(`{"id":"old-1"}`)
	b := tl.postEvent(`{"action":"x"}`, "Idempotency-Key", "old-2")
	tl.close()
	path := filepath.Join(tl.dir, stateDir, "idempotency.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE idempotency_keys (idx INTEGER PRIMARY KEY, h BLOB NOT NULL, ev BLOB NOT NULL)`,
		`CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)`,
		`INSERT INTO meta VALUES ('schema', 2), ('indexed_to', 2)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	tl.start()
	if got := tl.postEvent(`{"id":"old-1"}`); got.Index != a.Index || !got.Duplicate {
		t.Errorf("retry by id after the migration: %+v, want index %d", got, a.Index)
	}
	if got := tl.postEvent(`{"action":"x"}`, "Idempotency-Key", "old-2"); got.Index != b.Index || !got.Duplicate {
		t.Errorf("retry by key after the migration: %+v, want index %d", got, b.Index)
	}
	if n := tl.size(); n != 2 {
		t.Errorf("tree size %d, want 2", n)
	}
}

// After a rebuild the first entry under a key is the first in log order,
// which may be another event than the one first claimed live (two requests
// in flight together). An explicit retry of an event logged as the
// variant is still a retry, not a 422.
func TestExplicitRetryFindsItsEventUnderTheVariant(t *testing.T) {
	d := openTestIndex(t, filepath.Join(t.TempDir(), "idempotency.db"))
	defer d.Close()
	a, b := eventHash([]byte(`{"a":1}`)), eventHash([]byte(`{"b":1}`))
	rows := []indexRow{
		{id: keyOf(keyHash("src", "k:K")), idx: 4, ev: b},
		{id: variantOf(keyHash("src", "k:K"), a), idx: 5, ev: a},
	}
	if err := inTx(context.Background(), d.store, func(tx keyTx) error { return tx.insertComplete(context.Background(), rows) }); err != nil {
		t.Fatal(err)
	}
	bt, err := d.begin(context.Background(), "src", []keyedEvent{{key: "k:K", explicit: true, ev: a}})
	if err != nil {
		t.Fatalf("explicit retry of the variant's event refused: %v", err)
	}
	defer bt.finish(nil, nil)
	if st := bt.states[0]; !st.found || st.idx != 5 {
		t.Errorf("state %+v, want found at 5", st)
	}
	if _, err := d.begin(context.Background(), "src", []keyedEvent{{key: "k:K", explicit: true, ev: eventHash([]byte(`{"c":1}`))}}); err == nil {
		t.Errorf("a third event under the explicit key was not refused")
	}
}

// An index that cannot be opened for a reason of its own (a damaged file,
// a path the log cannot open) fails the start with an error that names it
// and says what to do, whatever the disk: only a disk that refuses writes
// makes the log start without its index (TestLogRestartedOnAFullDiskServesReads).
func TestIndexThatCannotBeOpenedFailsTheStart(t *testing.T) {
	for _, c := range []struct {
		name  string
		spoil func(t *testing.T, path string)
		want  []string
	}{
		{"damaged", func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("not an index "), 400), 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{"not a database", "move the file away and start again"}},
		{"a directory", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}, []string{"unable to open", "read and write"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tl := newTestLog(t, nil)
			first := tl.postEvent(`{"id":"e1"}`)
			tl.close()
			path := filepath.Join(tl.dir, stateDir, indexFile)
			c.spoil(t, path)
			s, err := New(context.Background(), tl.cfg)
			if err == nil {
				s.Close(context.Background())
				t.Fatal("the log started with an index it cannot open")
			}
			for _, want := range append([]string{"idempotency index", path}, c.want...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("New: %v\ndoes not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "disk") {
				t.Errorf("New: %v\nblames the disk", err)
			}
			// What the error says to do works: the index is rebuilt from
			// the log, and a retry is still answered with its first entry.
			if err := os.Rename(path, path+".moved"); err != nil {
				t.Fatal(err)
			}
			tl.start()
			if res := tl.postEvent(`{"id":"e1"}`); !res.Duplicate || res.Index != first.Index {
				t.Errorf("a retry after the index was moved away: %+v, want a duplicate of index %d", res, first.Index)
			}
		})
	}
}

// On a POSIX log the writer keeps completed rows in memory for up to a second
// (flushEvery) and writes many requests' rows in one transaction. That opens
// a window: rows answered to clients but not in the store. The attack: a
// watermark saved while rows wait must not pass them (it is committed with
// them, in one transaction), and a crash while rows wait above the watermark
// must not lose their keys (the next start writes them from the leaves). In
// both cases every retry after the crash gets its first index, and the log
// gets no second entry.
func TestKilledWhileRowsWaitKeepsEveryAnsweredIndex(t *testing.T) {
	tl := newTestLog(t, nil)
	batch := func(prefix string) []byte {
		var body bytes.Buffer
		for i := range 50 {
			fmt.Fprintf(&body, "{\"id\":\"%s-%d\"}\n", prefix, i)
		}
		return body.Bytes()
	}
	post := func(body []byte) []eventResult {
		t.Helper()
		r := tl.post("/v1/events", "application/x-ndjson", body)
		if r.status != http.StatusOK {
			t.Fatalf("POST: %d %s", r.status, r.body)
		}
		var res struct{ Results []eventResult }
		if err := json.Unmarshal(r.body, &res); err != nil {
			t.Fatal(err)
		}
		return res.Results
	}
	stored := func(prefix string) int {
		t.Helper()
		var hs [][16]byte
		for i := range 50 {
			hs = append(hs, keyHash(OpenSource, fmt.Sprintf("i:s:%s-%d", prefix, i)))
		}
		rows, err := lookupKeys(context.Background(), tl.s.idempotency.store, hs)
		if err != nil {
			t.Fatal(err)
		}
		return len(rows)
	}
	// a's rows wait in memory; the watermark saved now must take them along.
	a := post(batch("a"))
	if n := stored("a"); n != 0 {
		t.Logf("%d of a's 50 rows were written before the watermark (a flush came first); the test still checks the outcome", n)
	}
	if err := tl.s.idempotency.SaveWatermark(tl.s.integratedSize); err != nil {
		t.Fatal(err)
	}
	if n := stored("a"); n != 50 {
		t.Errorf("the watermark was committed with %d of a's 50 rows in the store: a crash now would lose the others", n)
	}
	// b's rows wait in memory, above the watermark, when the process dies.
	b := post(batch("b"))
	tl.kill()
	tl.start()
	size := tl.size()
	for _, c := range []struct {
		prefix string
		first  []eventResult
	}{{"a", a}, {"b", b}} {
		again := post(batch(c.prefix))
		for i := range again {
			if !again[i].Duplicate || again[i].Index != c.first[i].Index {
				t.Errorf("retry of %s-%d after the crash: %+v, first answered %+v", c.prefix, i, again[i], c.first[i])
			}
		}
	}
	if n := tl.size(); n != size {
		t.Errorf("the retries grew the log from %d to %d entries: keys logged twice", size, n)
	}
}

// A new SQLite index gets sqlitePageSize pages; one that exists keeps the
// page size it has (WAL mode fixes it) and opens as before.
func TestSQLiteIndexPageSize(t *testing.T) {
	pageSize := func(path string) int64 {
		t.Helper()
		d := openTestIndex(t, path)
		defer d.Close()
		var n int64
		if err := d.store.(*sqlKeys).db.QueryRow(`PRAGMA page_size`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	fresh := filepath.Join(t.TempDir(), indexFile)
	if n := pageSize(fresh); n != sqlitePageSize {
		t.Errorf("a new index has %d-byte pages, want %d", n, sqlitePageSize)
	}
	if n := pageSize(fresh); n != sqlitePageSize {
		t.Errorf("reopened, the index has %d-byte pages, want %d", n, sqlitePageSize)
	}
	old := filepath.Join(t.TempDir(), indexFile)
	db, err := sql.Open("sqlite", "file:"+old+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE tidemark_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if n := pageSize(old); n != 4096 {
		t.Errorf("an existing index has %d-byte pages after opening, want the 4096 it had", n)
	}
}
