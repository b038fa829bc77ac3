package log

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testmount"

	"github.com/tidemark/tidemark/checkpoint"
	"github.com/transparency-dev/tessera"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	logsv1 "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcev1 "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

// Attacks found in the review of issue 9's hardening, each a regression
// test named for the attack.

// An OTLP request's resource and scope are written once on the wire and
// copied into the event of every log record under them. A large resource
// attribute (one value, so it weighs nothing in the in-flight bound) over
// many empty records (two bytes each) makes records × resource bytes of
// events from a small body: here 2,000 records under a 32 KiB resource are
// 37 KB of protobuf (about 1 KB gzipped) and 64 MiB of event JSON, plus
// the leaves built from it; at --max-body (8 MiB) with 10,000 records the
// same shape is 40 GB. The log must refuse it, or log it, without
// allocating in proportion to records × resource.
func TestOTLPSharedResourceCopiedIntoEveryRecordIsBounded(t *testing.T) {
	tl := newK8sTestLog(t)
	auth := []string{"Authorization", "Bearer " + k8sToken}
	const records, shared = 2000, 32 << 10
	big := strings.Repeat("r", shared)
	for _, tc := range []struct {
		name  string
		res   *resourcev1.Resource
		scope *commonv1.InstrumentationScope
		ok    bool // a Collector's batch, which must still be logged
	}{
		{"resource_attribute", &resourcev1.Resource{Attributes: []*commonv1.KeyValue{kv("service.name", str(big))}}, nil, false},
		{"scope_name", nil, &commonv1.InstrumentationScope{Name: big}, false},
		{"collector_batch", &resourcev1.Resource{Attributes: []*commonv1.KeyValue{kv("k8s.pod.name", str(strings.Repeat("p", 1000)))}}, &commonv1.InstrumentationScope{Name: "audit"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := make([]*logsv1.LogRecord, records)
			for i := range recs {
				recs[i] = &logsv1.LogRecord{}
			}
			body, err := proto.Marshal(&logsv1.LogsData{ResourceLogs: []*logsv1.ResourceLogs{{
				Resource:  tc.res,
				ScopeLogs: []*logsv1.ScopeLogs{{Scope: tc.scope, LogRecords: recs}},
			}}})
			if err != nil {
				t.Fatal(err)
			}
			before := tl.size()
			var r response
			allocated := allocatedBy(func() { r = tl.post("/v1/logs", "application/x-protobuf", body, auth...) })
			t.Logf("%d bytes of body: status %d, %.1f MiB allocated, %d entries appended", len(body), r.status, float64(allocated)/(1<<20), tl.size()-before)
			// What logging the records themselves needs is a few MiB; the
			// copies of the resource are records × 32 KiB = 64 MiB, twice.
			const bound = 48 << 20
			if !tc.ok && allocated > bound {
				t.Errorf("%d bytes of body (%d records under a %d-byte shared %s) allocated %d MiB, want at most %d MiB: the shared part is copied into every record's event before any bound applies",
					len(body), records, shared, tc.name, allocated>>20, bound>>20)
			}
			if tc.ok && r.status != http.StatusOK {
				t.Errorf("status %d (%s), want 200: %d records under a 1 KB resource are an ordinary batch", r.status, errorMessage(t, "application/x-protobuf", r), records)
			}
			if r.status == http.StatusOK && tl.size()-before != records {
				t.Errorf("answered 200 but appended %d entries, want %d", tl.size()-before, records)
			}
		})
	}
}

// A witness answers add-checkpoint with 409 and Content-Type
// text/x.tlog.size when the log's old size is not the one it cosigned; the
// body is a decimal size. Tessera v1.0.4 reads every witness answer whole
// (io.ReadAll) before looking at the status, and the witness observer
// bounds the bodies of 200s and of other errors but passed this one on as
// it came: a witness could make the log read (and hold) as much as it can
// send within the witness timeout, every checkpoint interval.
func TestWitnessFloodingASizeAnswerIsNotReadWhole(t *testing.T) {
	const flood = 128 << 20
	var flooding atomic.Bool
	written := make(chan int64, 1)
	fw := newFakeWitness(t, "flood", nil, 0)
	honest := fw.hs.Config.Handler
	fw.hs.Config.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if !flooding.Load() {
			honest.ServeHTTP(rw, r)
			return
		}
		if !flooding.CompareAndSwap(true, false) {
			return
		}
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		chunk := bytes.Repeat([]byte("0"), 64<<10)
		var n int64
		for n < flood {
			m, err := rw.Write(chunk)
			n += int64(m)
			if err != nil {
				break
			}
		}
		written <- n
	})
	tl := witnessedLog(t, 1, fw)
	flooding.Store(true)
	tl.postEvent(`{"action":"deploy"}`) // a new checkpoint to cosign
	n := <-written
	t.Logf("the witness wrote %d MiB of its size answer before the log stopped reading", n>>20)
	if n >= flood {
		t.Errorf("the log read all %d MiB of a witness's 409 size answer (a decimal number and a newline): want it bounded", n>>20)
	}
	// An honest 409 still works: the witness says it cosigned size 1 (the
	// log last saw it cosign 0), and the log retries from there.
	fw.mu.Lock()
	fw.size = 1
	fw.mu.Unlock()
	r := tl.post("/v1/events?wait=witnessed", "application/json", []byte(`{"action":"rollback"}`))
	if r.status != http.StatusOK {
		t.Fatalf("wait=witnessed after an honest 409: %d %s", r.status, r.body)
	}
	if m := tl.metric(`tidemark_log_witness_requests_total{outcome="size_mismatch",witness="flood"}`); m == "" || m == "0" {
		t.Errorf("no size_mismatch counted (%q): the honest 409 was not exercised", m)
	}
}

// The kube-apiserver logs a PATCH's body as the event's requestObject byte
// for byte (audit.LogRequestPatch keeps it as runtime.Unknown), at Request
// level and above: the example policy logs writes to workloads so. A patch
// is JSON that the apiserver's decoder takes with duplicate member names
// ({"a":"1","a":"2"}, last one wins) or integers a double cannot hold, and
// neither is I-JSON. The log refuses the whole EventList (400) for that one
// item, the apiserver resends it until its backoff runs out and then drops
// it: every event of the batch (up to 400, anyone's) is lost, among them
// the event the patching user wanted gone. An event must not be lost
// because another event of its batch is not I-JSON.
func TestK8sPatchThatIsNotIJSONDoesNotDropTheBatch(t *testing.T) {
	tl := newK8sTestLog(t)
	for i, patch := range []string{
		`{"metadata":{"labels":{"team":"a","team":"b"}}}`,
		`{"spec":{"replicas":9007199254740993}}`,
	} {
		deleted := k8sEvent("d-"+strconv.Itoa(i), "delete", "prod-db-password")
		poisoned := `{"level":"Request","auditID":"p-` + strconv.Itoa(i) + `","stage":"ResponseComplete","verb":"patch",` +
			`"requestURI":"/apis/apps/v1/namespaces/prod/deployments/web","user":{"username":"mallory"},` +
			`"objectRef":{"resource":"deployments","namespace":"prod","name":"web","apiGroup":"apps","apiVersion":"v1"},` +
			`"responseStatus":{"code":200},"requestObject":` + patch + `}`
		before := tl.size()
		r := tl.post("/v1/k8s/audit", "application/json", eventList(deleted, poisoned), "Authorization", "Bearer "+k8sToken)
		if r.status != http.StatusOK {
			t.Errorf("an EventList with a patch %s: %d %s; want 200 with both events logged, the apiserver drops a list it cannot deliver", patch, r.status, r.body)
			continue
		}
		if n := tl.size() - before; n != 2 {
			t.Errorf("patch %s: %d entries appended, want 2 (the delete and the patch)", patch, n)
		}
	}
}

// Tessera v1.0.4 writes the tree state last (a temporary file renamed into
// place, then an fsync of its directory): a batch whose fsync fails after
// the rename is in the tree, since the next batch reads the renamed state,
// and yet every entry of it gets the error. On btrfs or NFS that fsync can
// fail with ENOSPC, which Tessera flattens to text ("failed to write new
// tree state: ... failed to sync ...: no space left on device"); the log
// took that for a full disk and told the sender "nothing of this request
// was logged", and the sender's retry then logged it a second time (its
// key was never indexed). A failure after which the tree holds the
// request's entries must not be answered as nothing logged.
func TestStorageErrorAfterTheEntryIsInTheTreeIsNotNothingLogged(t *testing.T) {
	var lie atomic.Bool
	tl := newTestLog(t, func(c *Config) {
		c.wrapAdd = func(add tessera.AddFn) tessera.AddFn {
			return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
				f := add(ctx, e)
				if !lie.Load() {
					return f
				}
				return func() (tessera.Index, error) {
					if _, err := f(); err != nil {
						return tessera.Index{}, err
					}
					// Integrated: what Tessera says when the fsync after
					// the tree state's rename fails.
					return tessera.Index{}, fmt.Errorf("failed to write new tree state: %v",
						fmt.Errorf("failed to create/overwrite private tree state file: %w",
							fmt.Errorf("failed to sync %q: %w", filepath.Join(c.Dir, ".state"), syscall.ENOSPC)))
				}
			}
		}
	})
	lie.Store(true)
	r := tl.post("/v1/events", "application/json", []byte(`{"action":"secret.delete"}`), "Idempotency-Key", "k1")
	lie.Store(false)
	if r.status == http.StatusOK {
		t.Fatalf("the append failed but was answered %d %s", r.status, r.body)
	}
	if n := tl.size(); n != 1 {
		t.Fatalf("tree size %d, want 1: the failed batch is in the tree (the premise of this test)", n)
	}
	if msg := errorMessage(t, "application/json", r); strings.Contains(msg, "nothing of this request was logged") {
		t.Errorf("answered %d %q, but the event is in the log at index 0", r.status, msg)
	}
	// The answer said to retry with the same key. After a restart the
	// retry finds the entry (the watermark stayed below it), not a second
	// one.
	tl.close()
	tl.start()
	if got := tl.postEvent(`{"action":"secret.delete"}`, "Idempotency-Key", "k1"); !got.Duplicate || got.Index != 0 {
		t.Errorf("retry after a restart: %+v, want a duplicate of index 0", got)
	}
}

// A log whose disk filled up keeps serving reads and answers writes 503
// (docs/http.md: /readyz stays 200, "reads still work"), and takes writes again
// when space returns. But restarted while the disk is full (a crash, an OOM
// kill, a node reboot, a routine restart by an operator unaware of the
// disk) it did not start at all: opening the idempotency index needs
// SQLite's shared-memory file, and New failed with "couldn't create
// idempotency index ...: disk I/O error (4874)", saying nothing of the
// disk. Witnesses and auditors then lose every read, and receipts stop.
// Restarted, it must serve reads, refuse writes until the index is open
// (a retry must find its first entry), and take them once space returns.
func TestLogRestartedOnAFullDiskServesReads(t *testing.T) {
	mnt := testmount.Tmpfs(t, 4096)
	dir := filepath.Join(mnt, "log")
	keys, _, err := LoadKeys(dir, nil, "test.example/log")
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLog{t: t, dir: dir, cfg: Config{Dir: dir, Keys: keys, BatchAge: 5 * time.Millisecond,
		CheckpointInterval: 100 * time.Millisecond, RepublishInterval: time.Second}}
	tl.start()
	var first eventResult
	for i := range 20 {
		res := tl.postEvent(fmt.Sprintf(`{"id":"e%d"}`, i))
		if i == 1 {
			first = res
		}
	}
	tl.close()
	filler := testmount.Fill(t, mnt)
	s, err := New(context.Background(), tl.cfg)
	if err != nil {
		t.Fatalf("restarted on a full disk, the log does not start: %v", err)
	}
	tl.s, tl.hs = s, httptest.NewServer(s.Handler(true))
	t.Cleanup(func() {
		if tl.s != nil {
			tl.close()
		}
	})

	// Reads: the checkpoint, tiles, receipts, the policy, the probes.
	for _, path := range []string{"/checkpoint", "/tile/entries/000.p/20", "/tile/0/000.p/20", "/v1/receipt/1", "/v1/policy", "/healthz"} {
		if r := tl.get(path); r.status != http.StatusOK {
			t.Errorf("GET %s on a full disk after a restart: %d %s", path, r.status, r.body)
		}
	}
	if r := tl.get("/readyz"); r.status != http.StatusOK || !strings.Contains(string(r.body), "not taking writes: the log's disk is full, so its idempotency index cannot be opened") {
		t.Errorf("/readyz on a full disk after a restart: %d %q, want 200 saying why writes are not taken", r.status, r.body)
	}
	if got := tl.metric("tidemark_log_idempotency_index_ready"); got != "0" {
		t.Errorf("tidemark_log_idempotency_index_ready = %q while the index cannot be opened, want 0", got)
	}

	// Writes: a retry gets its first answer or 503, and so does a new
	// event (or /add) until the index is open.
	retry := func() response {
		t.Helper()
		r := tl.post("/v1/events", "application/json", []byte(`{"id":"e1"}`))
		switch r.status {
		case http.StatusOK:
			var res eventResult
			if err := json.Unmarshal(r.body, &res); err != nil {
				t.Fatal(err)
			}
			if res.Index != first.Index || !res.Duplicate {
				t.Fatalf("a retry after a restart on a full disk: %s, want its first answer (index %d, a duplicate)", r.body, first.Index)
			}
		case http.StatusServiceUnavailable:
			wantDiskFull503(t, r)
		default:
			t.Fatalf("a retry after a restart on a full disk: %d %s, want its first answer or 503", r.status, r.body)
		}
		return r
	}
	retry()
	if r := tl.post("/v1/events", "application/json", []byte(`{"id":"new"}`)); r.status != http.StatusServiceUnavailable {
		t.Errorf("a new event on a full disk after a restart: %d %s, want 503", r.status, r.body)
	} else {
		wantDiskFull503(t, r)
	}
	if r := tl.post("/add", "text/plain", []byte("raw entry")); r.status != http.StatusServiceUnavailable {
		t.Errorf("/add on a full disk after a restart: %d %s, want 503", r.status, r.body)
	}

	// Space returns: the log opens the index by itself, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); retry().status != http.StatusOK; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("space returned, but 30 s later a retry is still refused")
		}
	}
	if res := tl.postEvent(`{"id":"new"}`); res.Duplicate || res.Index != 20 {
		t.Errorf("a new event once space returned: %+v, want logged at index 20", res)
	}
	if r := tl.get("/readyz"); r.status != http.StatusOK || string(r.body) != "ok\n" {
		t.Errorf("/readyz once space returned: %d %q, want ok", r.status, r.body)
	}
	if got := tl.metric("tidemark_log_idempotency_index_ready"); got != "1" {
		t.Errorf("tidemark_log_idempotency_index_ready = %q once the index is open, want 1", got)
	}
	seen := map[string]int{}
	for i, leaf := range tl.leaves() {
		l, err := checkpoint.ParseLeaf(leaf)
		if err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		seen[string(l.Event)]++
	}
	if len(seen) != 21 {
		t.Errorf("the log holds %d different events, want 21 (e0 to e19, and new)", len(seen))
	}
	for ev, n := range seen {
		if n != 1 {
			t.Errorf("event %s is logged %d times", ev, n)
		}
	}
}

// wantDiskFull503 checks that r is the answer to a write refused because
// the idempotency index waits for a full disk.
func wantDiskFull503(t *testing.T, r response) {
	t.Helper()
	msg := errorMessage(t, "application/json", r)
	if r.header.Get("Retry-After") != strconv.Itoa(storageRetryAfter) {
		t.Errorf("503 with Retry-After %q, want %d", r.header.Get("Retry-After"), storageRetryAfter)
	}
	for _, want := range []string{"the log's disk is full", "idempotency index", "cannot be opened", "nothing of this request was logged", "retry"} {
		if !strings.Contains(msg, want) {
			t.Errorf("503 %q does not say %q", msg, want)
		}
	}
}

// The body budget (--max-inflight-bytes, 32 MiB) is shared by all writers
// first come, first served, and a body holds its buffer until it is read
// whole or ReadTimeout (2 minutes) ends it. One writer that sends four
// bodies of a little over 4 MiB and then stalls holds all of it (each
// buffer grows to 8 MiB), and every other writer is answered 503 for two
// minutes, again and again: the slow client the issue names, one token,
// four connections. Here at a smaller scale: budget 2 MiB, bodies of at
// most 1 MiB. A writer must not be able to take every other writer's
// share: mallory's first stalled body takes her share (half the budget),
// her second is refused as soon as it starts, and alice is still logged.
func TestOneWriterStallingBodiesDoesNotStopOtherWriters(t *testing.T) {
	tl := newTestLog(t, func(c *Config) {
		c.Tokens, c.MaxBody, c.MaxInFlightBytes = writerTokens(t, "mallory", "alice"), 1<<20, 2<<20
	})
	// Declares 1,000,000 bytes, sends 600,000 (past 512 KiB, so the
	// buffer is 1 MiB), and stalls.
	tl.startSlowRequest("/v1/events", "application/x-ndjson", 1_000_000, bytes.Repeat([]byte(" "), 600_000), asWriter("mallory")...)
	tl.waitForBodyBytes(1 << 20)
	second := tl.startSlowRequest("/v1/events", "application/x-ndjson", 1_000_000, nil, asWriter("mallory")...)
	if r := second.answer(); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(errorMessage(t, "", r), "this writer's share") {
		t.Errorf("mallory's second stalled body: %d %v %s; want 503 with Retry-After saying her share is spent", r.status, r.header, r.body)
	}
	r := tl.post("/v1/events", "application/json", []byte(`{"action":"deploy"}`), asWriter("alice")...)
	if r.status != http.StatusOK {
		t.Errorf("alice's 19-byte event while mallory stalls her bodies: %d %s; want it logged", r.status, r.body)
	}
}
